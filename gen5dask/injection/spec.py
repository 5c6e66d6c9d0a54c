"""Typed, frozen specifications of an injection run, built once per stage (never per task).

:class:`InjectionModel` is the generative model of one lensed source -- the parameter laws
(:class:`gen5dask.injection.laws.Laws`), the source kind and how arcs are rendered.
:class:`InjectSpec` adds what a batch needs besides: geometry, seed, brightness target and
bounds, noise and what to store. Both are small, hashable and pickle cheaply to workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen5dask.injection.laws import Laws, TargetDistribution
from gen5dask.injection.sources import RealGalaxySource


@dataclass(frozen=True)
class InjectionModel:
    """Everything that decides the noise-free arc of an injection, but its amplitude."""

    laws: Laws
    source: RealGalaxySource | None
    """None: Sersic sources."""
    psf_beta: float
    """Moffat beta of the PSF (FWHM from the host's ``psfsize``)."""
    supersample: int
    """Sub-pixels per pixel side when rendering the lensed source."""

    @classmethod
    def from_config(cls, icfg) -> InjectionModel:
        """From an ``InjectConfig`` (reads its parameter laws, source and render keys)."""
        return cls(
            laws=Laws.from_config(icfg),
            source=RealGalaxySource.from_config(icfg),
            psf_beta=float(icfg.psf_beta),
            supersample=int(icfg.supersample),
        )


@dataclass(frozen=True)
class InjectSpec:
    """What :func:`gen5dask.injection.batch.inject_rows` needs for a batch."""

    model: InjectionModel
    seed: int
    pixscale: float
    """arcsec per pixel."""
    bands: tuple[str, ...]
    stamp_size: int
    target: TargetDistribution | None
    """Target arc_snr law of calibrated rows (None: no calibrated rows)."""
    calibrated_dmag_bounds: tuple[float, float]
    poisson: bool
    gain: float
    """Electrons per nanomaggy of the shot-noise term."""
    store_arc: bool

    @classmethod
    def from_config(
        cls, icfg, *, seed: int, pixscale: float, bands, stamp_size: int,
        target: TargetDistribution | None,
    ) -> InjectSpec:
        """From an ``InjectConfig`` plus the run's seed, geometry and calibration target."""
        return cls(
            model=InjectionModel.from_config(icfg),
            seed=int(seed),
            pixscale=float(pixscale),
            bands=tuple(bands),
            stamp_size=int(stamp_size),
            target=target,
            calibrated_dmag_bounds=tuple(float(v) for v in icfg.calibrated_dmag_bounds),
            poisson=bool(icfg.poisson),
            gain=float(icfg.gain),
            store_arc=bool(icfg.store_arc),
        )


__all__ = ["InjectSpec", "InjectionModel"]

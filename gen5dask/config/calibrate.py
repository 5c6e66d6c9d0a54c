"""Config section ``calibrate``: the target arc_snr distribution of calibrated injections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gen5dask.config.base import Section


class CalibrateConfig(Section):
    """Settings of the ``calibrate`` stage (writes ``OUTPUT_DIR/calibration.json``)."""

    target: Literal["plan", "anchors"] = "plan"
    """``plan``: the remediation plan's table (``bins``/``fractions``); ``anchors``: fractions
    implied by the anchors' visibility proxy through a proxy -> arc_snr relation fitted on a
    dry run of injections."""
    quantity: Literal["arc_snr", "arc_snr_peak"] = "arc_snr"
    """The calibrated arc S/N (r band, DESIGN §4): ``arc_snr`` (integrated over the pixels with
    a >= sigma) or ``arc_snr_peak`` (the per-pixel peak: what the earlier pipeline called
    "arc_snr" and what the remediation plan's table was written for). ``bins``, the dry run,
    the anchors' inversion and the achieved fractions all use it."""
    inversion: Literal["regression", "deconvolve"] = "regression"
    """``target: anchors`` only: how the anchors' proxy becomes arc S/N. ``regression``: the
    least-squares relation ``log s = a + b log proxy`` of the dry run applied per anchor
    (simple; shrinks toward the dry run's range when the proxy is noisy). ``deconvolve``: the
    maximum-likelihood bin fractions of a forward model of the proxy
    (:mod:`gen5dask.injection.deconvolve`; unbiased by the dry run's prior, noisier). In the
    mock survey ``calibration.json`` scores either against the anchors' true arc S/N
    (``recovery``)."""
    colours: Literal["prior", "anchors"] = "prior"
    """Source colours of calibrated injections: ``prior`` (uniform on ``inject.src_gr_range`` /
    ``src_rz_range``, as uncalibrated injections) or ``anchors`` (Gaussian with the median and
    intrinsic scatter of the arc colours measured in the anchors' annuli,
    :mod:`gen5dask.injection.arc_colours`; recorded in ``calibration.json`` ``colours``)."""
    colour_threshold_sigma: float = Field(2.0, gt=0.0)
    """``colours: anchors``: arc pixels have a (band-summed, 3x3-smoothed) detection map above
    this many of its noise sigmas."""
    colour_min_snr: float = Field(5.0, gt=0.0)
    """``colours: anchors``: an anchor's colours are used when its r-band arc flux has at least
    this S/N (and positive g and z fluxes)."""
    bins: list[float] = Field(default_factory=lambda: [0.8, 2.0, 8.0, 20.0, 100.0])
    """Edges of the bins of the calibrated quantity (``quantity``; dimensionless), increasing;
    the last edge caps the open "20+" bin. Targets are uniform within a bin."""
    fractions: list[float] = Field(default_factory=lambda: [0.40, 0.40, 0.15, 0.05])
    """Target fraction per bin (``target: plan``); must sum to 1."""
    anchors: str | None = None
    """Anchor store for ``target: anchors`` (default ``OUTPUT_DIR/anchors.zarr`` if it exists,
    else the survey's samples of kind ``anchor``)."""
    dry_run_n: int = Field(256, ge=8)
    """Calibrated injections in the dry run that records the implied src_dmag distribution."""
    proxy_dry_run_n: int = Field(2048, ge=8)
    """``target: anchors``: injections (one per host, at most the number of hosts) in the dry
    run that learns the proxy's response. Its noise enters every bin's response: on the mock
    survey the same anchors' recovered median arc S/N was 0.91 of the truth with 256 injections
    and 0.40 with 1,024 or 4,096 (another world: 0.40, 0.73, 0.70; README, calibration); ~6 s
    on one core."""
    bootstrap: int = Field(200, ge=0)
    """``inversion: deconvolve``: bootstrap resamples (anchors and dry run together) for the
    interval of each target fraction in ``calibration.json`` (0: none); ~1 ms per resample and
    100 anchors."""
    dry_run_snr_range: tuple[float, float] = (0.8, 100.0)
    """arc_snr range (log-uniform) of the dry-run injections used to fit the proxy relation."""
    visibility_model: Literal["azimuthal_median", "none"] = "azimuthal_median"
    """Lens-light model of the visibility proxy (``kernels.photometry.visibility_proxy``)."""
    visibility_annulus: tuple[float, float] = (4.0, 16.0)
    """Annulus (r_in, r_out) of the visibility proxy, pixels."""
    plot: bool = True
    """Write ``calibration/target_vs_achieved.png`` (and the proxy fit for ``anchors``)."""

    @model_validator(mode="after")
    def _check(self) -> CalibrateConfig:
        b = self.bins
        if len(b) < 2 or any(not (b[i] < b[i + 1]) for i in range(len(b) - 1)) or b[0] < 0:
            msg = f"calibrate.bins must be >= 2 increasing non-negative edges, got {b}"
            raise ValueError(msg)
        if len(self.fractions) != len(b) - 1:
            msg = (
                f"calibrate.fractions has {len(self.fractions)} values for {len(b) - 1} bins "
                f"(calibrate.bins={b})"
            )
            raise ValueError(msg)
        if any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            msg = f"calibrate.fractions must be >= 0 and sum to 1, got {self.fractions}"
            raise ValueError(msg)
        lo, hi = self.dry_run_snr_range
        if not 0 < lo < hi:
            msg = f"calibrate.dry_run_snr_range must satisfy 0 < lo < hi, got {(lo, hi)}"
            raise ValueError(msg)
        return self


__all__ = ["CalibrateConfig"]

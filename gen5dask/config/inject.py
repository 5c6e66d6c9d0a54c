"""Config section ``inject``: lensed-arc injection into host cutouts (``train.zarr``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gen5dask.config.base import Section

Range = tuple[float, float]


def _check_range(name: str, rng: Range, *, lo: float | None = None, hi: float | None = None):
    a, b = rng
    if not a <= b:
        msg = f"inject.{name}: lower bound {a} > upper bound {b}"
        raise ValueError(msg)
    if lo is not None and a < lo:
        msg = f"inject.{name}: lower bound {a} < allowed minimum {lo}"
        raise ValueError(msg)
    if hi is not None and b > hi:
        msg = f"inject.{name}: upper bound {b} > allowed maximum {hi}"
        raise ValueError(msg)


class InjectConfig(Section):
    """Settings of the ``inject`` stage (parameter laws are uniform on the given ranges)."""

    hosts: str | None = None
    """Host store path. Default: ``OUTPUT_DIR/hosts.zarr`` if it exists (ingested real hosts),
    else the mock survey ``OUTPUT_DIR/survey.zarr``. Only samples of kind ``host`` are used."""
    brightness: Literal["uncalibrated", "calibrated", "both"] = "both"
    """Source-brightness modes written (``inject_mode``); the ablation arms need ``both``."""
    replicates: int = Field(1, ge=1, le=31)
    """Injections per host and brightness mode (independent lens/source draws)."""
    controls: Literal["paired", "unpaired"] = "paired"
    """``paired``: every host also appears once unchanged as a control (label 0);
    ``unpaired``: a random half of the hosts (exactly floor(n/2), keyed by seed) are controls
    and only the other half receive injections."""
    n_null: int = Field(16, ge=0)
    """Hosts (chosen at random, keyed by seed) that also get a zero-flux null injection."""
    store_arc: bool = False
    """Store the noise-free injected arc (``arc`` variable, nanomaggies/pixel)."""
    source_mode: Literal["sersic", "real_galaxy"] = "sersic"
    """Source model. ``sersic``: elliptical Sersic (``src_n/reff/q/pa_range`` laws).
    ``real_galaxy``: a galaxy image from a GalSim RealGalaxy-format catalogue
    (``real_galaxy_catalog``, e.g. COSMOS F814W at 0.03"/pix), drawn uniformly over the
    catalogue rows (keyed; the row is stored as ``src_index``), background-subtracted (median
    of the 2-pixel border), thresholded (``real_galaxy_threshold_sigma``), optionally cropped
    (``real_galaxy_max_size``) and normalised to unit flux; the bilinear interpolant of its
    pixels is ray traced with surface brightness conserved and PSF-convolved with the host PSF
    exactly like a Sersic (the HST PSF, FWHM ~0.1", is negligible against the ~1.3" DR10 PSF
    and 0.262" pixels, so it is not deconvolved). Colours, brightness modes and amplitude
    solving are identical for both modes; ``src_n``, ``src_reff``, ``src_q`` are NaN."""
    real_galaxy_catalog: str | None = None
    """RealGalaxy catalogue FITS (table in HDU 1 with ``IDENT``, ``GAL_FILENAME``,
    ``GAL_HDU``, ``PIXEL_SCALE``); required when ``source_mode`` is ``real_galaxy``."""
    real_galaxy_image_dir: str | None = None
    """Directory of the image files named in ``GAL_FILENAME``; default: the catalogue's
    directory."""
    real_galaxy_max_size: int | None = Field(None, ge=4)
    """Crop each galaxy image to at most this many source pixels per side around its centre
    pixel ``(h//2, w//2)`` (after the background is measured on the full stamp); None keeps
    the full stamp. Light outside the crop is dropped. A task holds up to ``chunk_size``
    distinct source images (float64), so this also bounds worker memory for catalogues with
    large stamps (a 600 x 600 COSMOS stamp is 2.9 MB)."""
    real_galaxy_rotate: bool = True
    """Rotate each galaxy by a random angle ``src_pa`` ~ U[0, 2 pi) rad (keyed); False keeps
    the catalogue orientation (``src_pa`` = 0)."""
    real_galaxy_threshold_sigma: float = Field(2.0, ge=0.0)
    """After background subtraction, pixels below ``threshold * sigma`` are set to 0, sigma
    being the robust (1.4826 MAD) noise of the 2-pixel border; 0 clips negative pixels only.
    Clipping at 0 keeps the positive half of the HST noise as a faint pedestal: on the paltas
    COSMOS 23.5 sample it adds 10-55 % to the stamp flux (unit-flux normalisation then gives
    the galaxy itself that much less); 2 sigma keeps 0.7-1.04 of the background-subtracted
    flux."""
    theta_e_range: Range = (0.5, 2.5)
    """SIE Einstein radius theta_E, arcsec (uniform)."""
    lens_q_range: Range = (0.5, 1.0)
    """SIE axis ratio b/a (uniform)."""
    shear_sigma: float = Field(0.05, ge=0.0)
    """External shear: g1, g2 ~ N(0, shear_sigma) each (dimensionless)."""
    src_pos_max_frac: float = Field(1.0, gt=0.0)
    """Source position uniform in area within a disk of radius src_pos_max_frac * theta_E."""
    src_n_range: Range = (0.5, 4.0)
    """Source Sersic index (uniform; 0.5 <= n <= 8)."""
    src_reff_range: Range = (0.05, 0.5)
    """Source Sersic R_eff along the intermediate axis, arcsec (uniform)."""
    src_q_range: Range = (0.3, 1.0)
    """Source axis ratio (uniform)."""
    src_gr_range: Range = (0.0, 0.8)
    """Source colour g - r, mag (uniform; blue star-forming)."""
    src_rz_range: Range = (-0.2, 0.6)
    """Source colour r - z, mag (uniform)."""
    uncalibrated_dmag_range: Range = (4.0, 4.5)
    """``uncalibrated`` mode: src_dmag = source r mag - host r mag, mag (uniform): the earlier,
    too-bright injections. Tuned on 400 mock-survey hosts (LRGs r 17-20.5, 64-px stamps)
    towards the remediation plan's "Current" mix 5/35/40/20 % over arc_snr 0.8-2/2-8/8-20/20+:
    it gives ~2/18/28/52 % (median arc_snr ~19), with ~10 % of arcs below 0.8. The arc_snr
    scatter at fixed src_dmag (lens geometry, host brightness, depth) is ~0.75 dex (IQR), so no
    src_dmag law reproduces the column exactly; fainter laws trade the excess above 20 for many
    invisible (arc_snr < 0.8) arcs."""
    calibrated_dmag_bounds: Range = (-1.0, 9.0)
    """``calibrated`` mode: the solved src_dmag is clipped to these bounds, mag; clipped rows
    get quality ``bound_hit_bright`` / ``bound_hit_faint``. Near-threshold arcs (arc_snr ~ 1)
    behind r = 17-20 hosts need src_dmag up to ~8."""
    psf_beta: float = Field(3.5, gt=1.0)
    """Moffat beta of the PSF (FWHM from the host's ``psfsize``)."""
    supersample: int = Field(3, ge=1, le=9)
    """Sub-pixels per pixel side when rendering the lensed source."""
    poisson: bool = True
    """Add the photon (shot) noise of the injected light: exact Poisson counts of
    ``arc * gain`` electrons (``kernels.noise.add_noise`` with no sky term -- the host cutout
    already carries the sky noise, so none is added twice)."""
    gain: float = Field(3000.0, gt=0.0)
    """Electrons per nanomaggy of the coadd for the shot-noise term (order of magnitude of a
    DR10 grz coadd of a few DECam exposures)."""
    host_mag_aperture_pix: float = Field(8.0, gt=0.0)
    """When the host store has no ``host_mag_r``: host r flux = sum over r < R of (pixel -
    median of the annulus R <= r < R + 8), R in pixels; mag = 22.5 - 2.5 log10(flux)."""

    @model_validator(mode="after")
    def _ranges(self) -> InjectConfig:
        _check_range("theta_e_range", self.theta_e_range, lo=0.0)
        if self.theta_e_range[0] <= 0:
            msg = "inject.theta_e_range: theta_E must be > 0 arcsec"
            raise ValueError(msg)
        _check_range("lens_q_range", self.lens_q_range, lo=1e-3, hi=1.0)
        _check_range("src_n_range", self.src_n_range, lo=0.5, hi=8.0)
        _check_range("src_reff_range", self.src_reff_range, lo=1e-3)
        _check_range("src_q_range", self.src_q_range, lo=1e-3, hi=1.0)
        _check_range("src_gr_range", self.src_gr_range)
        _check_range("src_rz_range", self.src_rz_range)
        _check_range("uncalibrated_dmag_range", self.uncalibrated_dmag_range)
        _check_range("calibrated_dmag_bounds", self.calibrated_dmag_bounds)
        if self.source_mode == "real_galaxy" and not self.real_galaxy_catalog:
            msg = (
                "inject.real_galaxy_catalog: required when inject.source_mode is "
                "'real_galaxy' (path to a GalSim RealGalaxy catalogue FITS)"
            )
            raise ValueError(msg)
        return self

    @property
    def modes(self) -> tuple[str, ...]:
        """Brightness modes written, in output order."""
        if self.brightness == "both":
            return ("uncalibrated", "calibrated")
        return (self.brightness,)


__all__ = ["InjectConfig"]

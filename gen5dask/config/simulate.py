"""Config section ``simulate``: the mock DR10 survey (every population parameter, with units).

Ranges are ``[low, high]`` pairs; a draw "in a range" is uniform unless the field says
otherwise. Magnitudes are AB (zero point 22.5, ``m = 22.5 - 2.5 log10(flux_nmgy)``); lengths on
the sky are arcsec unless the name ends in ``_deg``; colours are ``g - r`` and ``r - z`` (mag).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gen5dask.config.base import Section
from gen5dask.config.lenspop import LensPopConfig

HARD_NEGATIVE_TYPES = ("ring_galaxy", "spiral", "merger", "edge_on")

Range = tuple[float, float]


class SimulateConfig(Section):
    """Settings of the ``simulate`` stage (writes ``OUTPUT_DIR/survey.zarr``)."""

    # --- population sizes ------------------------------------------------------------------
    n_hosts: int = Field(2400, ge=0)
    """Number of LRG training hosts (kind ``host``, subtype ``lrg``, label 0)."""
    n_anchors: int = Field(80, ge=0)
    """Number of anchor lenses (kind ``anchor``, label 1), off-target rows included."""
    n_stress: int = Field(40, ge=0)
    """Number of SLACS/BELLS-like stress lenses (kind ``stress``, tier ``stress``, label 1)."""
    n_hard_negatives: int = Field(100, ge=0)
    """Number of hard negatives *per type* in ``hard_negative_types`` (kind ``hard_negative``)."""
    hard_negative_types: list[Literal["ring_galaxy", "spiral", "merger", "edge_on"]] = Field(
        default_factory=lambda: list(HARD_NEGATIVE_TYPES)
    )
    """Hard-negative morphologies to simulate (each becomes a ``subtype``)."""
    n_rings: int = Field(100, ge=0)
    """Number of procedural rings: LRG host plus an unlensed thin blue ring (kind ``ring``)."""

    # --- footprint and observing conditions --------------------------------------------------
    footprint_center: Range = (150.0, 2.0)
    """Footprint centre ``(RA, Dec)``, degrees (ICRS)."""
    footprint_size: Range = (10.0, 6.0)
    """Footprint extent ``(RA, Dec)``, degrees of coordinate (the RA extent is in RA degrees,
    i.e. ``width * cos(Dec)`` on the sky). Positions are uniform on the sphere inside it."""
    psfsize_median: dict[str, float] = Field(
        default_factory=lambda: {"g": 1.5, "r": 1.3, "z": 1.2, "i": 1.25}
    )
    """Median PSF FWHM per band, arcsec (every band of ``cfg.bands`` must be a key)."""
    psfsize_scatter: float = Field(0.12, ge=0.0)
    """Standard deviation of the smooth seeing field, arcsec (shared by the bands, scaled by
    each band's median / r-band median)."""
    psfsize_range: Range = (0.75, 1.6)
    """PSF FWHM is clipped to this range in every band, arcsec."""
    psfdepth_r_range: Range = (23.6, 26.8)
    """Range of the r-band 5-sigma point-source depth, AB mag."""
    psfdepth_r_median: float = 24.0
    """Median r-band depth, AB mag; the depth field maps a uniform variate ``u`` to
    ``lo + (hi - lo) * u**p`` with ``p`` chosen so that ``u = 0.5`` gives this median (a long
    tail towards deep fields)."""
    psfdepth_offset: dict[str, float] = Field(
        default_factory=lambda: {"g": 0.5, "r": 0.0, "z": -0.9, "i": -0.4}
    )
    """Depth of each band minus the r-band depth, mag (every band of ``cfg.bands`` a key)."""
    psfdepth_band_scatter: float = Field(0.15, ge=0.0)
    """Std of an independent smooth field added to each band's depth offset, mag."""
    condition_scale_deg: float = Field(3.0, gt=0.0)
    """Typical correlation length of the observing-condition fields, degrees (the wavelengths
    of the Fourier modes are drawn in [scale, 3 * scale])."""
    condition_modes: int = Field(12, ge=1)
    """Number of random Fourier modes summed per condition field."""
    brick_depth_jitter: float = Field(0.05, ge=0.0)
    """Per-brick depth jitter (std, mag; number of exposures), keyed by the brick name."""
    brick_psf_jitter: float = Field(0.02, ge=0.0)
    """Per-brick relative PSF-size jitter (std, fraction), keyed by the brick name."""

    # --- LRG hosts ---------------------------------------------------------------------------
    host_mag_r: Range = (17.0, 20.5)
    """Host r magnitude range (AB); counts rise towards faint magnitudes as
    ``dN/dm ∝ 10**(host_mag_slope * m)``."""
    host_mag_slope: float = 0.3
    """Slope of the host number counts ``d log10 N / dm`` (0 = uniform in magnitude)."""
    host_gr: Range = (1.5, 1.9)
    """Host ``g - r`` colour range, mag."""
    host_rz: Range = (0.8, 1.1)
    """Host ``r - z`` colour range, mag."""
    host_reff: Range = (0.8, 3.0)
    """Host Sersic R_eff range (intermediate axis), arcsec; log-uniform."""
    host_n: Range = (3.0, 6.0)
    """Host Sersic index range."""
    host_q: Range = (0.5, 1.0)
    """Host axis-ratio range."""
    neighbour_rate: float = Field(0.3, ge=0.0)
    """Mean number of neighbours (small galaxies or stars) per stamp (Poisson)."""
    neighbour_star_fraction: float = Field(0.3, ge=0.0, le=1.0)
    """Fraction of neighbours that are stars (point sources)."""
    neighbour_mag_r: Range = (19.5, 23.5)
    """Neighbour r magnitude range, AB mag."""
    neighbour_min_dist: float = Field(3.0, ge=0.0)
    """Minimum distance of a neighbour from the stamp centre, arcsec."""

    # --- anchors -----------------------------------------------------------------------------
    anchor_model: Literal["physical", "plan_table", "injection"] = "physical"
    """Generative model of the anchors' lens and source. ``physical``: strong lenses from the
    physical population (velocity-dispersion function, faint-galaxy counts, real-lens arc
    colours) kept by the visual-selection model "visible arcs" (``simulate.lenspop``;
    docs/mock_populations.md); the arc brightness follows from the source magnitude,
    magnification and depth. ``plan_table`` (``survey`` is accepted as its old name): the
    earlier setup, the mock survey's own laws (``anchor_theta_e``, ``lens_q``, ``src_*``
    below; lens axis aligned with the deflector) with the arc S/N drawn from the plan's
    injection target table ``arc_snr_bins``/``arc_snr_fractions`` (faint arcs the plan's
    Tier-A definition excludes). ``injection``: exactly the model of the injections -- the
    ``inject`` section's parameter laws, source model (Sersic or real galaxy), colour law,
    renderer (Moffat ``inject.psf_beta`` from the stamp's psfsize, ``inject.supersample``) and
    amplitude policy -- with the target arc_snr drawn from ``anchor_arc_snr_bins``/
    ``anchor_arc_snr_fractions`` (default: ``arc_snr_bins``/``arc_snr_fractions``); draws
    keyed by (seed, "simulate.anchor_lens", sample id). Used by the closed-loop check, where
    anchors and calibrated injections must share one model (no realism gap)."""
    lenspop: LensPopConfig = Field(default_factory=LensPopConfig)
    """The physical lens population and visual selection (``anchor_model: physical``)."""
    anchor_positions: Literal["footprint", "lenscat"] = "footprint"
    """``footprint``: anchors uniform inside the footprint; ``lenscat``: sky positions of the
    DESI-native confident lenses of the packaged ``lenscat`` catalogue (falls back to the
    footprint with a warning when lenscat is not installed)."""
    lenscat_name_contains: str = "DESI-"
    """lenscat rows whose ``name`` contains this string are the DESI-native lenses."""
    lenscat_grading: str = "confident"
    """lenscat ``grading`` required of anchor positions."""
    anchor_tier_a_fraction: float = Field(0.7, ge=0.0, le=1.0)
    """Fraction of anchors in tier A (the rest tier B)."""
    anchor_core_ratio: float = Field(40.0, gt=0.0)
    """Median (over objects) of the host r-band core brightness (median of pixels at r < 8 px,
    noise-free deflector light) divided by that of the anchors: anchors' deflectors are made
    this much fainter (the plan measured 43.8x)."""
    anchor_reff_scale: float = Field(0.6, gt=0.0)
    """Anchor deflector R_eff relative to a host-like draw (higher redshift: smaller)."""
    anchor_theta_e: Range = (0.8, 2.5)
    """Anchor Einstein-radius range, arcsec (``anchor_model: plan_table``)."""
    arc_snr_bins: list[float] = Field(default_factory=lambda: [0.8, 2.0, 8.0, 20.0, 50.0])
    """Bin edges of the target ``arc_snr`` table (the last bin is ``[20, 50)``) of the
    procedural rings and, with ``anchor_model: plan_table`` (or ``injection`` without
    ``anchor_arc_snr_bins``), of the anchors."""
    arc_snr_fractions: list[float] = Field(default_factory=lambda: [0.40, 0.40, 0.15, 0.05])
    """Fraction per ``arc_snr_bins`` bin (sums to 1); targets are piecewise uniform."""
    anchor_arc_snr_bins: list[float] | None = None
    """Bin edges of the anchors' target integrated ``arc_snr`` with ``anchor_model: injection``
    (None: ``arc_snr_bins``, the plan's injection table). The closed loop sets the arc S/N
    distribution of the demo world's physical Tier-A anchors here, so that its anchors have
    visible arcs, as the plan defines Tier-A (``configs/closed_loop.yaml``)."""
    anchor_arc_snr_fractions: list[float] | None = None
    """Fraction per ``anchor_arc_snr_bins`` bin (sums to 1; set with it); piecewise uniform."""
    off_target_fraction: float = Field(0.05, ge=0.0, le=1.0)
    """Fraction of anchors whose hand-typed coordinates are wrong (subtype ``off_target``): their
    cutout shows empty sky at the typed position."""
    off_target_offset_arcmin: float = Field(3.0, gt=0.0)
    """Coordinate error of the off-target rows, arcmin (random direction)."""
    z_lens: Range = (0.3, 0.9)
    """Anchor deflector redshift range (recorded in the anchor list only; ``plan_table``; the
    physical population draws both redshifts)."""
    z_source: Range = (1.0, 3.0)
    """Anchor source redshift range (recorded in the anchor list only; ``plan_table``)."""

    # --- lens and source model (stress, and anchors with plan_table) --------------------------
    lens_q: Range = (0.5, 1.0)
    """SIE axis-ratio range."""
    shear_sigma: float = Field(0.05, ge=0.0)
    """Std of each external-shear component (g1, g2), clipped to +-3 sigma."""
    src_pos_max_frac: float = Field(0.5, gt=0.0)
    """Source offset is uniform in area within ``src_pos_max_frac * theta_e`` of the lens."""
    src_reff: Range = (0.1, 0.6)
    """Source Sersic R_eff range, arcsec."""
    src_n: Range = (0.5, 2.0)
    """Source Sersic index range."""
    src_q: Range = (0.4, 1.0)
    """Source axis-ratio range."""
    src_gr: Range = (0.0, 0.6)
    """Source ``g - r`` range, mag (blue star-forming sources)."""
    src_rz: Range = (0.0, 0.5)
    """Source ``r - z`` range, mag."""

    # --- stress (SLACS/BELLS-like) -----------------------------------------------------------
    stress_theta_e: Range = (0.8, 1.8)
    """Stress-lens Einstein-radius range, arcsec."""
    stress_mag_r: Range = (16.5, 18.5)
    """Stress deflector r magnitude range (bright), AB mag."""
    stress_arc_snr_bins: list[float] = Field(default_factory=lambda: [1.0, 5.0, 10.0])
    """Bin edges of the stress lenses' target ``arc_snr`` table (faint arcs)."""
    stress_arc_snr_fractions: list[float] = Field(default_factory=lambda: [0.85, 0.15])
    """Fraction of stress lenses per ``stress_arc_snr_bins`` bin (sums to 1)."""

    # --- hard negatives ----------------------------------------------------------------------
    hn_mag_r: Range = (17.5, 20.5)
    """Total r magnitude range of hard-negative galaxies, AB mag."""
    ring_galaxy_radius: Range = (1.0, 3.0)
    """Ring-galaxy ring radius, arcsec."""
    spiral_arms: tuple[int, int] = (2, 4)
    """Number of spiral arms (inclusive range)."""
    merger_separation: Range = (0.8, 2.5)
    """Separation of the two merger nuclei, arcsec."""
    edge_on_q: Range = (0.08, 0.25)
    """Axis ratio of edge-on discs."""

    # --- procedural rings --------------------------------------------------------------------
    ring_radius: Range = (1.0, 2.5)
    """Procedural ring radius, arcsec."""
    ring_width: Range = (0.08, 0.2)
    """Procedural ring Gaussian width (sigma), arcsec."""
    ring_gr: Range = (0.0, 0.5)
    """Procedural ring ``g - r`` colour, mag (blue, lens-arc-like)."""
    ring_rz: Range = (0.0, 0.4)
    """Procedural ring ``r - z`` colour, mag."""

    # --- masks (per-stamp rates, DR10-like) ---------------------------------------------------
    bright_star_rate: float = Field(0.02, ge=0.0, le=1.0)
    """Probability that a stamp lies in a bright-star halo (BRIGHT bit; saturated core, bleed
    trail and the star's light when the star falls in the stamp)."""
    medium_star_rate: float = Field(0.05, ge=0.0, le=1.0)
    """Probability of a medium-bright star mask (MEDIUM bit)."""
    bleed_probability: float = Field(0.6, ge=0.0, le=1.0)
    """Probability that a saturated star in the stamp has a bleed trail (SATUR + invvar 0)."""
    nprimary_rate: float = Field(0.06, ge=0.0, le=1.0)
    """Probability that a brick boundary crosses the stamp (NPRIMARY strip)."""
    ccd_gap_rate: float = Field(0.02, ge=0.0, le=1.0)
    """Probability of a CCD-edge strip with no data in one band (invvar 0, ALLMASK bit)."""
    allmask_rate: float = Field(0.04, ge=0.0, le=1.0)
    """Probability of small ALLMASK patches (bad columns / cosmic rays, invvar 0, one band)."""
    wise_rate: float = Field(0.08, ge=0.0, le=1.0)
    """Probability of a WISE bright-star mask (WISEM1, and WISEM2 in its core)."""
    bailout_rate: float = Field(0.002, ge=0.0, le=1.0)
    """Probability that the whole stamp carries the BAILOUT bit."""
    depth_step_rate: float = Field(0.1, ge=0.0, le=1.0)
    """Probability of an exposure-count step in the stamp (part of it shallower, one band)."""

    # --- rendering ---------------------------------------------------------------------------
    psf_beta: float = Field(3.5, gt=1.0)
    """Moffat PSF power index."""
    supersample: int = Field(3, ge=1, le=9)
    """Sub-pixels per pixel side used near the centre of compact light profiles."""
    poisson_noise: bool = False
    """Add source Poisson noise (besides the sky noise implied by invvar)."""
    gain: float = Field(5000.0, gt=0.0)
    """Effective gain for source Poisson noise, electrons per nanomaggy."""
    store_arc: bool = True
    """Store the noise-free arc (optional variable ``arc``) for lenses and rings."""

    @field_validator("anchor_model", mode="before")
    @classmethod
    def _old_model_name(cls, value):
        return "plan_table" if value == "survey" else value

    @field_validator(
        "psfsize_range",
        "psfdepth_r_range",
        "host_mag_r",
        "host_gr",
        "host_rz",
        "host_reff",
        "host_n",
        "host_q",
        "neighbour_mag_r",
        "anchor_theta_e",
        "z_lens",
        "z_source",
        "lens_q",
        "src_reff",
        "src_n",
        "src_q",
        "src_gr",
        "src_rz",
        "stress_theta_e",
        "stress_mag_r",
        "hn_mag_r",
        "ring_galaxy_radius",
        "spiral_arms",
        "merger_separation",
        "edge_on_q",
        "ring_radius",
        "ring_width",
        "ring_gr",
        "ring_rz",
    )
    @classmethod
    def _ordered(cls, value, info):
        lo, hi = value
        if not lo <= hi:
            msg = f"simulate.{info.field_name}: low {lo} must be <= high {hi}"
            raise ValueError(msg)
        return value

    def anchor_arc_snr_table(self) -> tuple[list[float], list[float]]:
        """``(bins, fractions)`` of the anchors' target ``arc_snr`` (``anchor_model:
        injection``): ``anchor_arc_snr_*`` where set, else ``arc_snr_*``."""
        if self.anchor_arc_snr_bins is None:
            return self.arc_snr_bins, self.arc_snr_fractions
        return self.anchor_arc_snr_bins, self.anchor_arc_snr_fractions

    @model_validator(mode="after")
    def _check(self):
        if (self.anchor_arc_snr_bins is None) != (self.anchor_arc_snr_fractions is None):
            msg = ("simulate.anchor_arc_snr_bins and anchor_arc_snr_fractions must be set "
                   "together (or both left unset)")
            raise ValueError(msg)
        for name in ("arc_snr", "stress_arc_snr", "anchor_arc_snr"):
            bins = getattr(self, f"{name}_bins")
            fracs = getattr(self, f"{name}_fractions")
            if bins is None:
                continue
            if len(bins) != len(fracs) + 1:
                msg = (
                    f"simulate.{name}_bins needs one more edge than {name}_fractions has "
                    f"entries, got {len(bins)} edges and {len(fracs)} fractions"
                )
                raise ValueError(msg)
            if any(b >= a for a, b in zip(bins[1:], bins[:-1], strict=True)) or bins[0] < 0:
                msg = f"simulate.{name}_bins must be non-negative and increasing, got {bins}"
                raise ValueError(msg)
            if any(f < 0 for f in fracs) or abs(sum(fracs) - 1.0) > 1e-6:
                msg = f"simulate.{name}_fractions must be >= 0 and sum to 1, got {fracs}"
                raise ValueError(msg)
        if min(self.footprint_size) <= 0:
            msg = f"simulate.footprint_size must be positive, got {list(self.footprint_size)}"
            raise ValueError(msg)
        lo, hi = self.psfdepth_r_range
        if not lo < self.psfdepth_r_median < hi:
            msg = (
                f"simulate.psfdepth_r_median={self.psfdepth_r_median} must lie inside "
                f"psfdepth_r_range {list(self.psfdepth_r_range)}"
            )
            raise ValueError(msg)
        if self.psfsize_range[0] <= 0:
            msg = f"simulate.psfsize_range must be positive, got {list(self.psfsize_range)}"
            raise ValueError(msg)
        if len(set(self.hard_negative_types)) != len(self.hard_negative_types):
            msg = f"simulate.hard_negative_types has duplicates: {self.hard_negative_types}"
            raise ValueError(msg)
        return self


__all__ = ["HARD_NEGATIVE_TYPES", "SimulateConfig"]

"""Config section ``simulate.lenspop``: the physical lens population of the mock Tier-A anchors.

Every default is a published measurement or physics, with its source beside it; the few
modelling assumptions (the softness of the visual selection, the tier-B threshold) say so.
:mod:`gen5dask.sim.lenspop` documents the model and ``docs/mock_populations.md`` every
parameter. Magnitudes are AB, lengths on the sky arcsec, physical lengths kpc, velocities km/s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gen5dask.config.base import Section

Range = tuple[float, float]


class LensPopConfig(Section):
    """The physical lens population and the visual-selection model of mock Tier-A anchors."""

    # --- cosmology ---------------------------------------------------------------------------
    cosmology: Literal["Planck18", "Planck15", "WMAP9"] = "Planck18"
    """astropy built-in flat cosmology (no download): Planck Collaboration 2020 (A&A 641, A6)
    Table 2 TT,TE,EE+lowE+lensing+BAO for Planck18."""
    z_max: float = Field(6.0, gt=0.5, le=10.0)
    """Upper end of the source redshift range (the number-count redshift law has negligible
    weight beyond it for the magnitudes that pass the selection)."""

    # --- deflectors: velocity-dispersion function -------------------------------------------
    vdf_sigma_star: float = Field(161.0, gt=0.0)
    """Modified-Schechter VDF of early-type galaxies, sigma_* (km/s): Choi, Park & Vogeley
    (2007, ApJ 658, 884), SDSS DR5 early types, 161 +- 5 km/s (the values LensPop uses,
    Collett 2015)."""
    vdf_alpha: float = Field(2.32, gt=0.0)
    """VDF faint-end index alpha: Choi, Park & Vogeley (2007), 2.32 +- 0.10."""
    vdf_beta: float = Field(2.67, gt=0.0)
    """VDF high-sigma cut-off index beta: Choi, Park & Vogeley (2007), 2.67 +- 0.07."""
    lens_e_mean: float = Field(0.3, ge=0.0, lt=1.0)
    """SIE ellipticity e = 1 - q: Gaussian mean, Oguri & Marshall (2010, MNRAS 405, 2579) (from the
    ellipticities of SDSS early types)."""
    lens_e_sigma: float = Field(0.16, gt=0.0)
    """SIE ellipticity Gaussian dispersion, Oguri & Marshall (2010)."""
    lens_e_max: float = Field(0.9, gt=0.0, lt=1.0)
    """SIE ellipticity truncation ``0 <= e <= e_max``, Oguri & Marshall (2010)."""
    shear_median: float = Field(0.05, gt=0.0, lt=0.5)
    """External-shear amplitude: log-normal median, Oguri & Marshall (2010) (after
    Holder & Schechter 2003); position angle uniform."""
    shear_sigma_dex: float = Field(0.2, ge=0.0)
    """External-shear log-normal dispersion, dex (Oguri & Marshall 2010)."""
    lens_pa_sigma: float = Field(0.17, ge=0.0)
    """Mass-light misalignment: Gaussian std of (SIE angle - deflector-light angle), radians;
    SLACS mass and light major axes agree to ~10 degrees (Koopmans et al. 2006, ApJ 649, 599)."""

    # --- sources: counts, redshifts, colours, sizes -------------------------------------------
    src_mag_r: Range = (20.0, 30.0)
    """Unlensed source r magnitude range of the number counts, AB (sources brighter than 20 at
    z > 0.5 are negligibly rare)."""
    src_mag_depth_margin: float = Field(3.0, gt=0.0)
    """Per anchor, the counts stop at ``psfdepth_r + margin`` mag (and at ``src_mag_r[1]``):
    a numerical bound on the rejection cost, set where the selection no longer reaches (with
    the counts extended further, the faintest selected sources lie well inside the margin;
    measured in docs/mock_populations.md)."""
    src_counts_slope: float = 0.33
    """Faint galaxy number counts ``d log10 N / dm`` in R/r for 22 < r < 27: ~0.3 (Hogg et al.
    1997, MNRAS 288, 404), 0.33 (Metcalfe et al. 2001, MNRAS 323, 795)."""
    src_z0_slope: float = 0.0417
    """Magnitude-dependent redshift law of faint galaxies, ``p(z|i) ∝ z^2 exp(-z / z0)`` with
    ``z0 = slope * i + offset``: LSST Science Book v2.0 (2009, arXiv:0912.0201) Sec. 3.7.2, from
    DEEP2 (valid for i < 25.3; extrapolated fainter). ``i = r - src_rz_mean / 2``."""
    src_z0_offset: float = -0.744
    """Offset of the ``z0(i)`` relation (LSST Science Book Sec. 3.7.2)."""
    src_gr_mean: float = 1.23
    """Arc ``g - r`` mean, mag: arcs of 388 DESI Tier-A lenses measured in their annuli
    (realism-gap study of DR10 lens finders, 2026; quoted in gen5dask issue #12)."""
    src_gr_sigma: float = Field(0.39, ge=0.0)
    """Arc ``g - r`` standard deviation, mag (same measurement)."""
    src_rz_mean: float = 0.95
    """Arc ``r - z`` mean, mag (same measurement)."""
    src_rz_sigma: float = Field(0.27, ge=0.0)
    """Arc ``r - z`` standard deviation, mag (same measurement)."""
    src_color_corr: float = Field(0.0, ge=-1.0, le=1.0)
    """Correlation of the two arc colours. Not published with the measurement: 0 is an
    assumption."""
    src_size_r0_kpc: float = Field(1.3, gt=0.0)
    """Star-forming galaxy half-light radius at z = 3 and L = L*_{z=3}, kpc: median size of
    (0.3-1) L*_{z=3} galaxies, Shibuya, Ouchi & Harikane (2015, ApJS 219, 15), read from their
    size-evolution fit (approximate reading)."""
    src_size_muv_star: float = -21.0
    """M*_UV of L*_{z=3} (Steidel et al. 1999, ApJ 519, 1), the luminosity unit of Shibuya+15."""
    src_size_alpha: float = Field(0.27, ge=0.0)
    """Size-luminosity slope ``r_e ∝ L^alpha`` of star-forming galaxies, no evolution over
    z = 0-8 (Shibuya+15)."""
    src_size_beta_z: float = -1.2
    """Size evolution ``r_e ∝ (1 + z)^beta_z`` at fixed luminosity (Shibuya+15: -1.0 to -1.3;
    Mosleh et al. 2012, ApJ 756, L12: -1.20 +- 0.11)."""
    src_size_sigma_ln: float = Field(0.6, ge=0.0)
    """Log-normal scatter of r_e at fixed L and z, ``sigma_ln r_e`` (Shibuya+15: 0.45-0.75,
    no evolution; the middle of that range)."""
    src_reff_range: Range = (0.03, 2.0)
    """Angular half-light radii are clipped to this range, arcsec (renderer limits)."""
    src_n_median: float = Field(1.5, gt=0.0)
    """Median Sersic index of star-forming galaxies, n ~ 1.5 at all z (Shibuya+15)."""
    src_n_sigma_ln: float = Field(0.3, ge=0.0)
    """Log-normal scatter of the source Sersic index (assumption: the width is not quoted)."""
    src_n_range: Range = (0.5, 4.0)
    """Source Sersic indices are clipped to this range."""
    src_q_range: Range = (0.2, 1.0)
    """Source axis ratio, uniform: projected axis ratios of z ~ 1-2.5 star-forming galaxies
    span ~0.2-1 with a broad distribution (Law et al. 2012, ApJ 745, 85; van der Wel et al.
    2014, ApJ 792, L6); uniform is an approximation."""
    src_beta_max_frac: float = Field(1.0, gt=0.0, le=1.5)
    """Source offset uniform in area within ``frac * theta_E`` of the lens axis: the SIS
    multiple-image region (cross-section ``pi theta_E^2`` that weights the population)."""

    # --- visual selection ("Tier-A = visible arcs") -------------------------------------------
    selection_snr_min: float = Field(20.0, gt=0.0)
    """Arc S/N threshold of a detectable lens: integrated arc S/N over the pixels with
    a >= sigma_pix greater than 20, LensPop's detectability criterion (Collett 2015, ApJ 811,
    20; there in the best band, here in r, the store's ``arc_snr``)."""
    selection_mu_min: float = Field(3.0, gt=0.0)
    """Total magnification threshold mu > 3 (Collett 2015), and ``mu r_s > FWHM / 2``."""
    selection_snr_width_dex: float = Field(0.1, ge=0.0)
    """Softness of the S/N threshold: P = Phi(log10(S/N / S/N_min) / width). Human graders are
    not a step function; 0.1 dex (10-90 % over a factor 1.9 in S/N) is a modelling assumption
    (0 reproduces Collett's hard cut)."""
    selection_geometry_width_dex: float = Field(0.0, ge=0.0)
    """Softness of the resolution (``theta_E^2 > r_s^2 + (FWHM/2)^2``) and magnification
    criteria, dex (0 = Collett's hard cuts)."""
    tier_b_snr_min: float = Field(10.0, gt=0.0)
    """S/N threshold of tier-B ("probable") anchors: half the tier-A threshold (assumption)."""
    max_candidates: int = Field(20000, ge=16)
    """Candidates drawn per anchor before giving up with an error naming the sample."""

    @model_validator(mode="after")
    def _check(self):
        for name in ("src_mag_r", "src_reff_range", "src_n_range", "src_q_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                msg = f"simulate.lenspop.{name}: low {lo} must be < high {hi}"
                raise ValueError(msg)
        if self.src_q_range[0] <= 0 or self.src_q_range[1] > 1:
            msg = f"simulate.lenspop.src_q_range must lie in (0, 1], got {self.src_q_range}"
            raise ValueError(msg)
        if self.src_n_range[0] < 0.3 or self.src_n_range[1] > 10:
            msg = f"simulate.lenspop.src_n_range must lie in [0.3, 10], got {self.src_n_range}"
            raise ValueError(msg)
        return self


__all__ = ["LensPopConfig"]

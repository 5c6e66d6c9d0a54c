"""The physical lens population of the mock Tier-A anchors and its visual-selection model.

A mock Tier-A anchor is a real-looking confirmed lens: a strong lens drawn from a physical
population and kept only if a visual inspector would see its arcs (the plan: "must have
visible arcs in DR10 cutouts"). Nothing here is tuned towards a recall or a verdict; every
default is a published measurement (sources in :class:`gen5dask.config.lenspop.LensPopConfig`
and ``docs/mock_populations.md``).

Population (the lensing-weighted joint distribution)
----------------------------------------------------
The number of strong lenses with a deflector of velocity dispersion ``sigma`` at ``z_l`` and a
source of r magnitude ``m`` at ``z_s`` is proportional to

``phi(sigma) dV_c/dz(z_l) * N(m) p(z_s | m) * pi theta_E^2``,   ``theta_E = 4 pi (sigma/c)^2
D_ls / D_s``

(the SIS multiple-image cross-section, in a flat cosmology with a non-evolving comoving
deflector density, as LensPop, Collett 2015, and Oguri & Marshall 2010 assume). In a flat
cosmology ``D_ls / D_s = 1 - x`` with ``x = D_C(z_l) / D_C(z_s)`` and ``dV_c = 4 pi D_C^2 dD_C``,
so the joint factorises exactly:

* ``sigma``: VDF times ``sigma^4``; for the modified Schechter VDF of Choi, Park & Vogeley
  (2007), ``phi ∝ (sigma/sigma_*)^alpha exp(-(sigma/sigma_*)^beta) / sigma``, the variable
  ``(sigma/sigma_*)^beta`` is Gamma((alpha + 4) / beta) distributed;
* ``x``: ``∝ x^2 (1 - x)^2`` on [0, 1], i.e. Beta(3, 3); ``z_l = D_C^-1(x D_C(z_s))``;
* ``z_s`` given ``m``: ``p(z_s | m) D_C(z_s)^3`` (the integral of the lens-plane weight),
  sampled from ``p(z | i) ∝ z^2 exp(-z / z0(i))`` (LSST Science Book; ``i = r - <r-z>/2``
  with the mean arc colour, so that colours stay independent of redshift and selection) by
  rejection with acceptance ``(D_C(z_s) / D_C(z_max))^3``;
* ``m``: faint-galaxy number counts ``dN/dm ∝ 10^(slope m)``; the rejection above re-weights
  each magnitude by the mean ``D_C^3`` of its redshift law, as the joint requires.

Sources: arc colours from the measured annuli of 388 DESI Tier-A lenses (bivariate normal),
half-light radius from the star-forming size-luminosity-redshift relation of Shibuya et al.
(2015) (``M_UV = m - DM(z) + 2.5 log10(1 + z)``, flat-f_nu K-correction), Sersic index
log-normal around their median n ~ 1.5, axis ratio uniform, offset uniform in area inside
``src_beta_max_frac * theta_E``. Deflector SIE: ellipticity and external shear of Oguri &
Marshall (2010); the SIE angle follows the deflector light to within ``lens_pa_sigma``.
The SIE uses the SIS ``theta_E`` (lenstronomy's intermediate-axis normalisation).

Visual selection ("Tier-A = visible arcs")
-----------------------------------------
Collett's (2015) detectability criteria, made soft with a documented width (an assumption):
with the integrated r-band arc S/N ``snr`` (:func:`gen5dask.kernels.photometry.arc_snr`, over
pixels with ``a >= sigma_pix``; Collett used the best band, see :func:`select_visible_lens`),
the r-band PSF FWHM ``s`` and the source half-light radius ``r_s``,

``P = S(snr / snr_min; w_snr) S(theta_E^2 / (r_s^2 + (s/2)^2); w_g) S(mu / mu_min; w_g)
S(mu r_s / (s/2); w_g)``,   ``S(x; w) = Phi(log10(x) / w)`` (a step at x = 1 when w = 0).

:func:`select_visible_lens` draws candidates from the population, renders each arc with the
anchor's own r-band PSF and pixel noise (clean sky: the inspector judges the lens, not our mask
realisation), and keeps the first candidate with ``u < P`` (rejection sampling; ``u`` is the
candidate's own uniform). Given the generator it is deterministic, so keyed per sample id
(``generator(seed, "simulate.lenspop", id)``) the anchors are bit-identical whatever the
chunking or worker count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
from scipy.special import ndtr, ndtri

from gen5dask import ZEROPOINT_AB

#: speed of light, km/s (exact, SI definition)
C_KM_S = 299_792.458
#: arcsec per radian
ARCSEC_PER_RAD = 180.0 * 3600.0 / np.pi
#: stage name of the keyed anchor-population streams
STAGE = "simulate.lenspop"
#: candidates drawn and rendered together per selection round
BATCH = 16
#: keys of :func:`draw_lens_population`'s result (float64 arrays)
POPULATION_KEYS = (
    "sigma_v", "z_lens", "z_source", "theta_e", "lens_q", "lens_dpa", "shear_g1", "shear_g2",
    "src_x", "src_y", "src_mag_r", "src_gr", "src_rz", "src_reff", "src_reff_kpc", "src_n",
    "src_q", "src_pa",
)


@dataclass(frozen=True)
class LensPopParams:
    """Frozen parameters of the lens population and the selection model.

    Same fields, units and sources as :class:`gen5dask.config.lenspop.LensPopConfig`; build it
    with :meth:`from_config`.
    """

    cosmology: str
    z_max: float
    vdf_sigma_star: float
    vdf_alpha: float
    vdf_beta: float
    lens_e_mean: float
    lens_e_sigma: float
    lens_e_max: float
    shear_median: float
    shear_sigma_dex: float
    lens_pa_sigma: float
    src_mag_r: tuple[float, float]
    src_mag_depth_margin: float
    src_counts_slope: float
    src_z0_slope: float
    src_z0_offset: float
    src_gr_mean: float
    src_gr_sigma: float
    src_rz_mean: float
    src_rz_sigma: float
    src_color_corr: float
    src_size_r0_kpc: float
    src_size_muv_star: float
    src_size_alpha: float
    src_size_beta_z: float
    src_size_sigma_ln: float
    src_reff_range: tuple[float, float]
    src_n_median: float
    src_n_sigma_ln: float
    src_n_range: tuple[float, float]
    src_q_range: tuple[float, float]
    src_beta_max_frac: float
    selection_snr_min: float
    selection_mu_min: float
    selection_snr_width_dex: float
    selection_geometry_width_dex: float
    tier_b_snr_min: float
    max_candidates: int

    @classmethod
    def from_config(cls, cfg) -> LensPopParams:
        """Parameters from any object with the field names as attributes (the config model)."""
        vals = {}
        for f in fields(cls):
            v = getattr(cfg, f.name)
            vals[f.name] = tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(**vals)


# ---------------------------------------------------------------------------------------------
# cosmology
# ---------------------------------------------------------------------------------------------

_NGRID = 4001


@functools.lru_cache(maxsize=4)
def _distance_table(cosmology: str, z_max: float) -> tuple[np.ndarray, np.ndarray]:
    from astropy import cosmology as _cosmo

    cosmo = getattr(_cosmo, cosmology)
    if abs(float(cosmo.Ok0)) > 1e-9:
        msg = f"simulate.lenspop.cosmology={cosmology!r} is not flat (Ok0={cosmo.Ok0})"
        raise ValueError(msg)
    z = np.linspace(0.0, float(z_max) * 1.02 + 0.1, _NGRID)
    dc = cosmo.comoving_distance(z).to_value("Mpc")
    return z, np.asarray(dc, dtype=np.float64)


def comoving_distance_mpc(z, cosmology: str = "Planck18", z_max: float = 6.0) -> np.ndarray:
    """Line-of-sight comoving distance (Mpc) of the astropy built-in ``cosmology``, tabulated
    on 4001 points up to ``1.02 z_max + 0.1`` and interpolated linearly."""
    zg, dc = _distance_table(cosmology, float(z_max))
    return np.interp(np.asarray(z, dtype=np.float64), zg, dc)


def redshift_of_comoving_distance(dc_mpc, cosmology: str = "Planck18",
                                  z_max: float = 6.0) -> np.ndarray:
    """Inverse of :func:`comoving_distance_mpc` (monotone table, linear interpolation)."""
    zg, dc = _distance_table(cosmology, float(z_max))
    return np.interp(np.asarray(dc_mpc, dtype=np.float64), dc, zg)


def einstein_radius_arcsec(sigma_kms, z_lens, z_source, cosmology: str = "Planck18",
                           z_max: float = 6.0) -> np.ndarray:
    """SIS Einstein radius ``4 pi (sigma / c)^2 D_ls / D_s`` in arcsec.

    Flat cosmology: ``D_ls / D_s = 1 - D_C(z_l) / D_C(z_s)``; 0 where ``z_l >= z_s``.
    """
    sig = np.asarray(sigma_kms, dtype=np.float64)
    dl = comoving_distance_mpc(z_lens, cosmology, z_max)
    ds = comoving_distance_mpc(z_source, cosmology, z_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ds > dl, 1.0 - dl / ds, 0.0)
    return 4.0 * np.pi * (sig / C_KM_S) ** 2 * ratio * ARCSEC_PER_RAD


# ---------------------------------------------------------------------------------------------
# population draws
# ---------------------------------------------------------------------------------------------


def velocity_dispersion_function(sigma_kms, params: LensPopParams) -> np.ndarray:
    """Unnormalised modified-Schechter VDF ``(s/s*)^alpha exp(-(s/s*)^beta) / s`` (per km/s)."""
    s = np.asarray(sigma_kms, dtype=np.float64) / params.vdf_sigma_star
    return s**params.vdf_alpha * np.exp(-(s**params.vdf_beta)) / np.asarray(sigma_kms)


def draw_velocity_dispersion(g: np.random.Generator, params: LensPopParams, n: int):
    """``n`` velocity dispersions (km/s) from the lensing-weighted VDF ``phi(sigma) sigma^4``."""
    t = g.gamma((params.vdf_alpha + 4.0) / params.vdf_beta, 1.0, size=n)
    return params.vdf_sigma_star * t ** (1.0 / params.vdf_beta)


def draw_counts_magnitudes(u, lo: float, hi: float, slope: float) -> np.ndarray:
    """Inverse CDF of ``dN/dm ∝ 10^(slope m)`` on ``[lo, hi]`` at uniforms ``u``."""
    u = np.asarray(u, dtype=np.float64)
    if slope == 0.0:
        return lo + u * (hi - lo)
    a = np.log(10.0) * slope
    return lo + np.log1p(u * np.expm1(a * (hi - lo))) / a


def source_redshift_scale(i_mag, params: LensPopParams) -> np.ndarray:
    """``z0(i)`` of the faint-galaxy redshift law ``p(z|i) ∝ z^2 exp(-z / z0)`` (>= 0.01)."""
    z0 = params.src_z0_slope * np.asarray(i_mag, dtype=np.float64) + params.src_z0_offset
    return np.maximum(z0, 0.01)


def draw_lens_redshift(g: np.random.Generator, z_source, params: LensPopParams) -> np.ndarray:
    """Deflector redshifts behind which ``z_source`` is lensed, weighted by
    ``dV_c/dz (D_ls / D_s)^2``: ``x = D_C(z_l) / D_C(z_s) ~ Beta(3, 3)`` (flat cosmology)."""
    zs = np.asarray(z_source, dtype=np.float64)
    x = g.beta(3.0, 3.0, size=zs.shape)
    dcs = comoving_distance_mpc(zs, params.cosmology, params.z_max)
    return redshift_of_comoving_distance(x * dcs, params.cosmology, params.z_max)


def _truncated_normal(u, mean, sigma, lo, hi):
    a, b = ndtr((lo - mean) / sigma), ndtr((hi - mean) / sigma)
    return mean + sigma * ndtri(a + u * (b - a))


def source_size_kpc(mag_r, z_source, params: LensPopParams, *, gauss=0.0) -> np.ndarray:
    """Half-light radius (kpc) of a star-forming source of r magnitude ``mag_r`` at ``z``.

    ``r_e = r0 (L / L*)^alpha ((1 + z) / 4)^beta_z exp(sigma_ln * gauss)`` with
    ``M_UV = m - DM(z) + 2.5 log10(1 + z)`` (flat f_nu) and ``L / L* = 10^(-0.4 (M_UV - M*))``.
    """
    z = np.asarray(z_source, dtype=np.float64)
    dl_pc = comoving_distance_mpc(z, params.cosmology, params.z_max) * (1.0 + z) * 1e6
    muv = np.asarray(mag_r) - 5.0 * np.log10(dl_pc / 10.0) + 2.5 * np.log10(1.0 + z)
    lum = 10.0 ** (-0.4 * (muv - params.src_size_muv_star))
    return (params.src_size_r0_kpc * lum**params.src_size_alpha
            * ((1.0 + z) / 4.0) ** params.src_size_beta_z
            * np.exp(params.src_size_sigma_ln * np.asarray(gauss)))


def _draw_sources(g, params: LensPopParams, n: int, mag_faint: float | None):
    """Magnitude, colours and redshift of ``n`` lensing-weighted sources (rejection in z)."""
    lo, hi = params.src_mag_r
    hi = hi if mag_faint is None else min(hi, float(mag_faint))
    dc_max = comoving_distance_mpc(params.z_max, params.cosmology, params.z_max)
    cov_off = params.src_color_corr * params.src_gr_sigma * params.src_rz_sigma
    cov = [[params.src_gr_sigma**2, cov_off], [cov_off, params.src_rz_sigma**2]]
    out = {k: np.empty(0) for k in ("src_mag_r", "src_gr", "src_rz", "z_source")}
    while out["z_source"].size < n:
        m = max(4 * (n - out["z_source"].size), 32)
        mag = draw_counts_magnitudes(g.uniform(size=m), lo, hi, params.src_counts_slope)
        col = g.multivariate_normal([params.src_gr_mean, params.src_rz_mean], cov, size=m,
                                    method="cholesky")
        # i from the mean colour, so each source's colour stays independent of its redshift
        # and of the lensing weight (the selected arcs keep the published colours)
        i_mag = mag - 0.5 * params.src_rz_mean
        z = g.gamma(3.0, 1.0, size=m) * source_redshift_scale(i_mag, params)
        u = g.uniform(size=m)
        dc = comoving_distance_mpc(np.minimum(z, params.z_max), params.cosmology, params.z_max)
        ok = (z < params.z_max) & (u < (dc / dc_max) ** 3)
        for k, v in (("src_mag_r", mag), ("src_gr", col[:, 0]), ("src_rz", col[:, 1]),
                     ("z_source", z)):
            out[k] = np.concatenate([out[k], v[ok]])
    return {k: v[:n] for k, v in out.items()}


def draw_lens_population(g: np.random.Generator, params: LensPopParams, n: int, *,
                         mag_faint: float | None = None) -> dict:
    """``n`` strong lenses from the physical, lensing-weighted population (no selection).

    ``mag_faint`` (optional) lowers the faint end of the source counts below
    ``params.src_mag_r[1]`` (:func:`select_visible_lens` uses the anchor's depth plus
    ``src_mag_depth_margin``).

    Returns a dict of float64 ``(n,)`` arrays (:data:`POPULATION_KEYS`): ``sigma_v`` (km/s),
    ``z_lens``, ``z_source``, ``theta_e`` ("), ``lens_q``, ``lens_dpa`` (SIE angle minus the
    deflector-light angle, rad), ``shear_g1/g2``, ``src_x/y`` ("), ``src_mag_r`` (unlensed r,
    AB), ``src_gr``, ``src_rz`` (mag), ``src_reff`` ("), ``src_reff_kpc``, ``src_n``, ``src_q``,
    ``src_pa`` (rad). Deterministic given the generator state and ``n``.
    """
    n = int(n)
    src = _draw_sources(g, params, n, mag_faint)
    sigma = draw_velocity_dispersion(g, params, n)
    zs = src["z_source"]
    zl = draw_lens_redshift(g, zs, params)
    theta_e = einstein_radius_arcsec(sigma, zl, zs, params.cosmology, params.z_max)
    dcs = comoving_distance_mpc(zs, params.cosmology, params.z_max)
    e = _truncated_normal(g.uniform(size=n), params.lens_e_mean, params.lens_e_sigma, 0.0,
                          params.lens_e_max)
    gam = np.minimum(params.shear_median * 10.0 ** (params.shear_sigma_dex * g.normal(size=n)),
                     0.5)
    phi_g = g.uniform(0.0, np.pi, size=n)
    dpa = g.normal(0.0, 1.0, size=n) * params.lens_pa_sigma
    rad = params.src_beta_max_frac * theta_e * np.sqrt(g.uniform(size=n))
    phi = g.uniform(0.0, 2.0 * np.pi, size=n)
    reff_kpc = source_size_kpc(src["src_mag_r"], zs, params, gauss=g.normal(size=n))
    da_kpc = dcs / (1.0 + zs) * 1e3
    reff = np.clip(reff_kpc / da_kpc * ARCSEC_PER_RAD, *params.src_reff_range)
    n_s = np.clip(params.src_n_median * np.exp(params.src_n_sigma_ln * g.normal(size=n)),
                  *params.src_n_range)
    q_s = g.uniform(*params.src_q_range, size=n)
    pa_s = g.uniform(0.0, np.pi, size=n)
    return {
        "sigma_v": sigma, "z_lens": zl, "z_source": zs, "theta_e": theta_e, "lens_q": 1.0 - e,
        "lens_dpa": dpa, "shear_g1": gam * np.cos(2.0 * phi_g),
        "shear_g2": gam * np.sin(2.0 * phi_g), "src_x": rad * np.cos(phi),
        "src_y": rad * np.sin(phi), "src_mag_r": src["src_mag_r"], "src_gr": src["src_gr"],
        "src_rz": src["src_rz"], "src_reff": reff, "src_reff_kpc": reff_kpc, "src_n": n_s,
        "src_q": q_s, "src_pa": pa_s,
    }


# ---------------------------------------------------------------------------------------------
# visual selection
# ---------------------------------------------------------------------------------------------


def soft_step(ratio, width_dex: float) -> np.ndarray:
    """``Phi(log10(ratio) / width)``; a step (1 where ``ratio > 1``) when ``width == 0``.

    Non-finite or non-positive ratios give 0.
    """
    r = np.nan_to_num(np.asarray(ratio, dtype=np.float64), nan=0.0, posinf=np.inf)
    if width_dex == 0.0:
        return (r > 1.0).astype(np.float64)
    with np.errstate(divide="ignore"):
        return ndtr(np.log10(np.maximum(r, 0.0)) / width_dex)


def resolution_probability(theta_e, src_reff, psf_fwhm, params: LensPopParams) -> np.ndarray:
    """Collett's resolution criterion ``theta_E^2 > r_s^2 + (FWHM / 2)^2`` (soft)."""
    te, rs, s = (np.asarray(a, dtype=np.float64) for a in (theta_e, src_reff, psf_fwhm))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = te**2 / (rs**2 + 0.25 * s**2)
    return soft_step(ratio, params.selection_geometry_width_dex)


def visual_selection_probability(arc_snr, theta_e, src_reff, magnification, psf_fwhm,
                                 params: LensPopParams, *, snr_min: float | None = None):
    """Probability that a visual inspector grades a lens as showing its arcs.

    Parameters
    ----------
    arc_snr : array_like
        Integrated r-band arc S/N (:func:`gen5dask.kernels.photometry.arc_snr`).
    theta_e, src_reff : array_like
        Einstein radius and source half-light radius, arcsec.
    magnification : array_like
        Total magnification of the source.
    psf_fwhm : array_like
        r-band PSF FWHM, arcsec.
    params : LensPopParams
        Thresholds and softness (``selection_*``).
    snr_min : float, optional
        S/N threshold (default ``params.selection_snr_min``; tier B uses ``tier_b_snr_min``).

    Returns
    -------
    numpy.ndarray
        float64 probabilities in [0, 1]; non-decreasing in ``arc_snr``, ``theta_e`` and
        ``magnification``, non-increasing in ``psf_fwhm``.
    """
    snr_min = params.selection_snr_min if snr_min is None else float(snr_min)
    w = params.selection_geometry_width_dex
    mu = np.asarray(magnification, dtype=np.float64)
    rs = np.asarray(src_reff, dtype=np.float64)
    half = 0.5 * np.asarray(psf_fwhm, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tangential = soft_step(mu * rs / half, w)
    return (soft_step(np.asarray(arc_snr, dtype=np.float64) / snr_min,
                      params.selection_snr_width_dex)
            * resolution_probability(theta_e, rs, psf_fwhm, params)
            * soft_step(mu / params.selection_mu_min, w) * tangential)


def band_fluxes_nmgy(mag_r, gr, rz, bands) -> np.ndarray:
    """``(n, nband)`` fluxes (nanomaggies) with ``g = r + gr``, ``z = r - rz``, ``i = r - rz/2``
    (DESIGN §4)."""
    mag_r, gr, rz = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (mag_r, gr, rz))
    mags = {"g": mag_r + gr, "r": mag_r, "z": mag_r - rz, "i": mag_r - 0.5 * rz}
    unknown = [b for b in bands if b not in mags]
    if unknown:
        msg = f"simulate.lenspop: no colour model for bands {unknown}; supported {sorted(mags)}"
        raise ValueError(msg)
    return np.stack([10.0 ** ((ZEROPOINT_AB - mags[b]) / 2.5) for b in bands], axis=1)


@dataclass(frozen=True)
class Selected:
    """One visually selected lens: its parameters and how it was selected."""

    lens: dict
    """Scalar floats of :data:`POPULATION_KEYS` plus ``lens_pa`` and ``magnification``."""
    arc_snr: float
    """Integrated r-band arc S/N of the rendered arc (clean sky)."""
    p_select: float
    """Selection probability of the accepted candidate."""
    n_candidates: int
    """Candidates drawn up to and including the accepted one."""


def select_visible_lens(g: np.random.Generator, params: LensPopParams, *, psf_kernel_r,
                        psf_fwhm_r: float, pixel_sigma_r: float, psfdepth_r: float,
                        stamp_size: int, pixscale: float, deflector_pa: float = 0.0,
                        supersample: int = 3,
                        snr_min: float | None = None, label: str = "anchor") -> Selected:
    """Draw candidates from the population until one passes the visual selection.

    Each round draws :data:`BATCH` candidates and one uniform ``u`` per candidate; a candidate
    whose resolution factor is ``<= u`` is rejected unrendered, the others are rendered in r
    (noise-free, PSF-convolved; clean sky of ``pixel_sigma_r``) and accepted when ``u < P``;
    the first accepted candidate in draw order wins. Deterministic given the generator.

    The S/N is the r band's (the store's ``arc_snr``): the arc colours then leave the selection
    untouched, so the selected anchors keep the published colour distribution, which was
    measured on visually selected lenses (Collett 2015 used the best band).

    Parameters
    ----------
    psf_kernel_r : numpy.ndarray
        ``(K, K)`` r-band PSF image of the anchor (odd ``K``).
    psf_fwhm_r, pixel_sigma_r : float
        r-band PSF FWHM (arcsec) and sky noise per pixel (nanomaggies).
    psfdepth_r : float
        r-band 5-sigma point-source depth (AB): the source counts reach
        ``min(src_mag_r[1], psfdepth_r + src_mag_depth_margin)`` (fainter sources are not
        selected: docs/mock_populations.md measures the margin).
    stamp_size, pixscale, supersample :
        The stamp the arc is rendered on (as the survey renders it).
    deflector_pa : float
        Major-axis angle of the deflector light, rad; the SIE angle is
        ``(deflector_pa + lens_dpa) mod pi`` (``lens_pa`` in the result).
    snr_min : float, optional
        S/N threshold (default ``params.selection_snr_min``).
    label : str
        Names the sample in the error raised when ``params.max_candidates`` candidates fail.
    """
    from gen5dask.kernels.photometry import arc_snr
    from gen5dask.kernels.render import render_lensed_sersic

    fwhm, sig = float(psf_fwhm_r), float(pixel_sigma_r)
    if not (fwhm > 0 and sig > 0 and np.isfinite(fwhm) and np.isfinite(sig)):
        msg = f"simulate.lenspop: {label}: PSF FWHM {fwhm} and sky sigma {sig} must be > 0"
        raise ValueError(msg)
    kern = np.asarray(psf_kernel_r, dtype=np.float64)[None, None]
    H = int(stamp_size)
    ivar = np.full((BATCH, H, H), 1.0 / sig**2, dtype=np.float32)
    drawn = 0
    while drawn < params.max_candidates:
        cand = draw_lens_population(g, params, BATCH,
                                    mag_faint=float(psfdepth_r) + params.src_mag_depth_margin)
        cand["lens_pa"] = np.mod(float(deflector_pa) + cand["lens_dpa"], np.pi)
        u = g.uniform(size=BATCH)
        drawn += BATCH
        p_res = resolution_probability(cand["theta_e"], cand["src_reff"], fwhm, params)
        idx = np.flatnonzero(u < p_res)
        if idx.size == 0:
            continue
        arcs, mu = render_lensed_sersic(
            stamp_size=H, pixscale=pixscale,
            **{k: cand[k][idx] for k in ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2",
                                         "src_x", "src_y", "src_reff", "src_n", "src_q",
                                         "src_pa")},
            src_flux_bands=band_fluxes_nmgy(cand["src_mag_r"][idx], 0.0, 0.0, ("r",)),
            psf_kernels=np.broadcast_to(kern, (idx.size, 1, *kern.shape[2:])),
            supersample=supersample, bands=("r",),
        )
        snr = arc_snr(arcs[:, 0], ivar[: idx.size]).arc_snr
        p = visual_selection_probability(snr, cand["theta_e"][idx], cand["src_reff"][idx], mu,
                                         fwhm, params, snr_min=snr_min)
        ok = np.flatnonzero(u[idx] < p)
        if ok.size:
            j = int(ok[0])
            i = int(idx[j])
            lens = {k: float(cand[k][i]) for k in (*POPULATION_KEYS, "lens_pa")}
            lens["magnification"] = float(mu[j])
            return Selected(lens, float(snr[j]), float(p[j]), drawn - BATCH + i + 1)
    msg = (
        f"simulate.lenspop: no visible lens for {label} in {params.max_candidates} candidates "
        f"(r PSF FWHM {fwhm:.3f} arcsec, sky sigma {sig:.3g} nmgy/pixel); lower "
        "simulate.lenspop.selection_snr_min or raise max_candidates"
    )
    raise ValueError(msg)


__all__ = [
    "ARCSEC_PER_RAD",
    "BATCH",
    "C_KM_S",
    "POPULATION_KEYS",
    "STAGE",
    "LensPopParams",
    "Selected",
    "band_fluxes_nmgy",
    "comoving_distance_mpc",
    "draw_counts_magnitudes",
    "draw_lens_population",
    "draw_lens_redshift",
    "draw_velocity_dispersion",
    "einstein_radius_arcsec",
    "redshift_of_comoving_distance",
    "resolution_probability",
    "select_visible_lens",
    "soft_step",
    "source_redshift_scale",
    "source_size_kpc",
    "velocity_dispersion_function",
]

"""Footprint, DR10 bricks and observing conditions of the mock survey.

* Positions are uniform on the sphere inside an RA/Dec box (``simulate.footprint_*``).
* Bricks follow the Legacy Surveys scheme of :func:`gen5dask.store.schema.brickname_for`
  (0.25-deg Dec rows, ~0.25-deg RA columns); :func:`brick_bounds` gives the box of the brick
  containing a position, which decides the NPRIMARY pixels of a stamp.
* Observing conditions (PSF FWHM and 5-sigma PSF depth per band) are smooth random fields on the
  sphere -- sums of ``condition_modes`` plane waves ``cos(k . n + phi)`` of the unit vector
  ``n``, wavelengths in ``[scale, 3 scale]`` -- plus a small per-brick jitter. Field parameters
  are drawn from ``generator(seed, "simulate.sky", field)``, brick jitter from
  ``generator(seed, "simulate.brick", brickcode)``, so conditions are a deterministic function
  of (seed, position): nearby objects see similar conditions (region-disjoint splits matter).
* Pixel noise follows the Tractor depth convention: a PSF-weighted point-source flux has
  inverse variance ``psfdepth_ivar = 1 / (sigma_pix^2 NEA)`` with the noise-equivalent area
  ``NEA = 1 / sum(psf^2)`` (pixels) and ``m5 = -2.5 (log10(5 / sqrt(psfdepth_ivar)) - 9)``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from scipy import special

from gen5dask import ZEROPOINT_AB
from gen5dask.kernels import rng
from gen5dask.store.schema import brickname_for, encode_brickname

BRICK_SIZE_DEG = 0.25
SKY_STAGE = "simulate.sky"
BRICK_STAGE = "simulate.brick"

#: Field indices of the condition fields (the band-offset fields follow from index 2).
FIELD_SEEING = 0
FIELD_DEPTH = 1
FIELD_BAND0 = 2


# ---------------------------------------------------------------------------------------------
# positions and bricks
# ---------------------------------------------------------------------------------------------


def footprint_box(center: tuple[float, float], size: tuple[float, float]) -> tuple[float, ...]:
    """``(ra_lo, ra_hi, dec_lo, dec_hi)`` in degrees of a footprint centre and size.

    Raises ``ValueError`` when the box leaves ``-90 <= Dec <= 90`` or is wider than 360 deg.
    """
    ra0, dec0 = center
    w, h = size
    dec_lo, dec_hi = dec0 - h / 2.0, dec0 + h / 2.0
    if dec_lo < -90.0 or dec_hi > 90.0 or w > 360.0 or w <= 0 or h <= 0:
        msg = f"simulate.footprint: centre {center} size {size} is not a valid RA/Dec box"
        raise ValueError(msg)
    return ra0 - w / 2.0, ra0 + w / 2.0, dec_lo, dec_hi


def position_in_box(u_ra: float, u_dec: float, box: tuple[float, ...]) -> tuple[float, float]:
    """Map two uniform variates to a position uniform on the sphere inside ``box`` (deg)."""
    ra_lo, ra_hi, dec_lo, dec_hi = box
    ra = (ra_lo + u_ra * (ra_hi - ra_lo)) % 360.0
    s_lo, s_hi = np.sin(np.deg2rad(dec_lo)), np.sin(np.deg2rad(dec_hi))
    dec = float(np.rad2deg(np.arcsin(s_lo + u_dec * (s_hi - s_lo))))
    return float(ra), dec


def offset_position(ra: float, dec: float, dx_arcsec: float, dy_arcsec: float):
    """Position offset by ``dx`` (towards +RA, east) and ``dy`` (towards +Dec, north), arcsec.

    Uses the gnomonic (tangent-plane) projection, exact for any offset below ~90 deg.
    """
    xi, eta = np.deg2rad(dx_arcsec / 3600.0), np.deg2rad(dy_arcsec / 3600.0)
    a0, d0 = np.deg2rad(ra), np.deg2rad(dec)
    den = np.cos(d0) - eta * np.sin(d0)
    a = a0 + np.arctan2(xi, den)
    d = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, den))
    return float(np.rad2deg(a) % 360.0), float(np.rad2deg(d))


def brick_bounds(ra, dec) -> tuple[np.ndarray, ...]:
    """``(ra_lo, ra_hi, dec_lo, dec_hi)`` (deg) of the DR10-style brick holding each position.

    Consistent with :func:`gen5dask.store.schema.brickname_for`: Dec rows of 0.25 deg, and in
    each row ``round(360 cos(dec_centre) / 0.25)`` equal RA columns.
    """
    ra = np.asarray(ra, dtype=np.float64) % 360.0
    dec = np.asarray(dec, dtype=np.float64)
    row = np.floor((dec + 90.0) / BRICK_SIZE_DEG)
    dec_lo = -90.0 + row * BRICK_SIZE_DEG
    dec_c = dec_lo + BRICK_SIZE_DEG / 2.0
    ncol = np.maximum(1, np.round(360.0 * np.cos(np.deg2rad(dec_c)) / BRICK_SIZE_DEG))
    col = np.floor(ra / 360.0 * ncol)
    return col * 360.0 / ncol, (col + 1) * 360.0 / ncol, dec_lo, dec_lo + BRICK_SIZE_DEG


def bricknames(ra, dec) -> np.ndarray:
    """DR10-style brick names (``RRRRpDDD``) of positions (deg)."""
    return brickname_for(ra, dec)


def nprimary_mask(ra: float, dec: float, stamp_size: int, pixscale: float) -> np.ndarray:
    """Boolean ``(H, W)``: stamp pixels outside the brick of the stamp centre (NPRIMARY).

    Stamps follow the FITS cutout convention, north up and east left: row ``i`` lies at
    ``Dec = dec + (i - c) * pixscale`` and column ``j`` at ``RA = ra - (j - c) * pixscale /
    cos(dec)`` (``c = H // 2``; small-field approximation, ``pixscale`` in arcsec).
    """
    c = stamp_size // 2
    ra_lo, ra_hi, dec_lo, dec_hi = (float(v) for v in brick_bounds(ra, dec))
    off = (np.arange(stamp_size) - c) * pixscale / 3600.0
    dec_pix = dec + off
    dra = -off / max(np.cos(np.deg2rad(dec)), 1e-6)
    ra_pix = ra + dra
    # unwrap RA relative to the brick
    ra_pix = np.where(ra_pix - ra_lo < -180.0, ra_pix + 360.0, ra_pix)
    ra_pix = np.where(ra_pix - ra_lo > 180.0, ra_pix - 360.0, ra_pix)
    out_row = (dec_pix < dec_lo) | (dec_pix >= dec_hi)
    out_col = (ra_pix < ra_lo) | (ra_pix >= ra_hi)
    return out_row[:, None] | out_col[None, :]


# ---------------------------------------------------------------------------------------------
# smooth fields
# ---------------------------------------------------------------------------------------------


def unit_vectors(ra, dec) -> np.ndarray:
    """``(n, 3)`` unit vectors of positions in degrees."""
    a = np.deg2rad(np.asarray(ra, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec, dtype=np.float64))
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


@functools.lru_cache(maxsize=64)
def _field_modes(seed: int, field: int, n_modes: int, scale_deg: float):
    g = rng.generator(seed, SKY_STAGE, field)
    direc = g.normal(size=(n_modes, 3))
    direc /= np.linalg.norm(direc, axis=1, keepdims=True)
    lam = np.deg2rad(scale_deg * g.uniform(1.0, 3.0, n_modes))
    k = direc * (2.0 * np.pi / lam)[:, None]
    phase = g.uniform(0.0, 2.0 * np.pi, n_modes)
    return k, phase


def smooth_field(ra, dec, *, seed: int, field: int, n_modes: int, scale_deg: float) -> np.ndarray:
    """Zero-mean, unit-variance (over random phases) smooth random field on the sphere.

    ``f(n) = sqrt(2 / K) sum_k cos(k_k . n + phi_k)`` with ``K = n_modes`` plane waves of
    wavelength ``scale_deg * U[1, 3]`` degrees in random 3-D directions. A pure function of
    ``(seed, field, n_modes, scale_deg)`` and the position.
    """
    k, phase = _field_modes(int(seed), int(field), int(n_modes), float(scale_deg))
    nvec = unit_vectors(ra, dec)
    arg = nvec @ k.T + phase
    return np.sqrt(2.0 / n_modes) * np.cos(arg).sum(axis=-1)


def brick_jitter(codes: np.ndarray, *, seed: int, counter: int) -> np.ndarray:
    """Standard-normal value per brick code (int), keyed by ``(seed, "simulate.brick", code)``."""
    codes = np.asarray(codes, dtype=np.int64)
    keys = rng.keys_for(np.int64(seed), np.int64(rng.stage_id(BRICK_STAGE)), codes, 0, 0)
    return np.array([rng.normal(k, counter) for k in keys], dtype=np.float64)


class Conditions(NamedTuple):
    """Observing conditions at a set of positions."""

    psfsize: np.ndarray
    """``(n, nband)`` PSF FWHM, arcsec."""
    psfdepth: np.ndarray
    """``(n, nband)`` 5-sigma point-source depth, AB mag."""


def depth_power(depth_range: tuple[float, float], median: float) -> float:
    """Exponent ``p`` with ``lo + (hi - lo) * 0.5**p == median``."""
    lo, hi = depth_range
    return float(np.log((median - lo) / (hi - lo)) / np.log(0.5))


def observing_conditions(ra, dec, *, sim, seed: int, bands) -> Conditions:
    """PSF size and depth per band at positions (deg), from the smooth fields of ``sim``.

    Parameters
    ----------
    ra, dec : array_like
        Positions, degrees.
    sim : SimulateConfig
        Supplies ``psfsize_*``, ``psfdepth_*``, ``condition_*`` and ``brick_*`` settings.
    seed : int
        Run seed.
    bands : sequence of str
        Bands; each must be a key of ``sim.psfsize_median`` and ``sim.psfdepth_offset``.
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    for b in bands:
        for name in ("psfsize_median", "psfdepth_offset"):
            if b not in getattr(sim, name):
                msg = f"simulate.{name} has no entry for band {b!r} (bands {list(bands)})"
                raise ValueError(msg)
    kw = {"seed": seed, "n_modes": sim.condition_modes, "scale_deg": sim.condition_scale_deg}
    f_see = smooth_field(ra, dec, field=FIELD_SEEING, **kw)
    f_dep = smooth_field(ra, dec, field=FIELD_DEPTH, **kw)
    codes = encode_brickname(bricknames(ra, dec)).astype(np.int64)
    j_see = brick_jitter(codes, seed=seed, counter=0)
    j_dep = brick_jitter(codes, seed=seed, counter=1)
    med_r = sim.psfsize_median.get("r", np.median(list(sim.psfsize_median.values())))
    rel = (1.0 + sim.psfsize_scatter / med_r * f_see) * (1.0 + sim.brick_psf_jitter * j_see)
    lo_d, hi_d = sim.psfdepth_r_range
    p = depth_power(sim.psfdepth_r_range, sim.psfdepth_r_median)
    u = special.ndtr(f_dep)
    depth_r = lo_d + (hi_d - lo_d) * u**p + sim.brick_depth_jitter * j_dep
    depth_r = np.clip(depth_r, lo_d, hi_d)
    n, nb = ra.size, len(bands)
    psfsize = np.empty((n, nb), dtype=np.float64)
    psfdepth = np.empty((n, nb), dtype=np.float64)
    for j, b in enumerate(bands):
        psfsize[:, j] = np.clip(sim.psfsize_median[b] * rel, *sim.psfsize_range)
        f_b = smooth_field(ra, dec, field=FIELD_BAND0 + j, **kw)
        psfdepth[:, j] = depth_r + sim.psfdepth_offset[b]
        if b != "r":  # r is the reference band: its range is psfdepth_r_range exactly
            psfdepth[:, j] += sim.psfdepth_band_scatter * f_b
    return Conditions(psfsize, psfdepth)


# ---------------------------------------------------------------------------------------------
# depth <-> pixel noise
# ---------------------------------------------------------------------------------------------


def nea_moffat(fwhm_pix, beta: float = 3.5) -> np.ndarray:
    """Noise-equivalent area (pixels) of a continuous Moffat: ``pi alpha^2 (2b - 1) / (b - 1)^2``.

    ``alpha = FWHM / (2 sqrt(2^(1/b) - 1))`` (pixels). For comparison with the pixelised kernel
    actually used, :func:`nea_of_kernel`.
    """
    alpha = np.asarray(fwhm_pix, dtype=np.float64) / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return np.pi * alpha**2 * (2.0 * beta - 1.0) / (beta - 1.0) ** 2


def nea_gaussian(fwhm_pix) -> np.ndarray:
    """Noise-equivalent area (pixels) of a Gaussian PSF: ``4 pi sigma^2``."""
    sigma = np.asarray(fwhm_pix, dtype=np.float64) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return 4.0 * np.pi * sigma**2


def nea_of_kernel(kernels: np.ndarray) -> np.ndarray:
    """``1 / sum(k^2)`` (pixels) of unit-sum kernels ``(..., K, K)``."""
    k = np.asarray(kernels, dtype=np.float64)
    return 1.0 / np.sum(k * k, axis=(-2, -1))


def psfdepth_to_ivar(psfdepth_mag) -> np.ndarray:
    """Point-source flux inverse variance (nanomaggies^-2) of a 5-sigma depth (AB mag)."""
    flux5 = 10.0 ** ((ZEROPOINT_AB - np.asarray(psfdepth_mag, dtype=np.float64)) / 2.5)
    return (5.0 / flux5) ** 2


def ivar_to_psfdepth(psfdepth_ivar) -> np.ndarray:
    """``-2.5 (log10(5 / sqrt(ivar)) - 9)``: 5-sigma depth (AB mag) of a flux inverse variance."""
    return -2.5 * (np.log10(5.0 / np.sqrt(np.asarray(psfdepth_ivar, dtype=np.float64))) - 9.0)


def pixel_sigma(psfdepth_mag, nea_pix) -> np.ndarray:
    """Per-pixel noise sigma (nanomaggies) giving a depth (mag) for a PSF of NEA (pixels)."""
    return 1.0 / np.sqrt(psfdepth_to_ivar(psfdepth_mag) * np.asarray(nea_pix, dtype=np.float64))


def psfdepth_from_sigma(sigma_pix, nea_pix) -> np.ndarray:
    """Inverse of :func:`pixel_sigma`: depth (AB mag) of pixel noise ``sigma_pix`` (nmgy)."""
    s = np.asarray(sigma_pix, dtype=np.float64)
    return ivar_to_psfdepth(1.0 / (s * s * np.asarray(nea_pix, dtype=np.float64)))


__all__ = [
    "BRICK_SIZE_DEG",
    "Conditions",
    "brick_bounds",
    "brick_jitter",
    "bricknames",
    "depth_power",
    "footprint_box",
    "ivar_to_psfdepth",
    "nea_gaussian",
    "nea_moffat",
    "nea_of_kernel",
    "nprimary_mask",
    "observing_conditions",
    "offset_position",
    "pixel_sigma",
    "position_in_box",
    "psfdepth_from_sigma",
    "psfdepth_to_ivar",
    "smooth_field",
    "unit_vectors",
]

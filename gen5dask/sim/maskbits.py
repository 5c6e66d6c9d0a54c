"""DR10-like MASKBITS and bad-pixel patterns of mock stamps (with their image/invvar effects).

One stamp's mask layout is drawn from a numpy ``Generator`` (the sample's own stream, see
:mod:`gen5dask.sim.survey`) at the rates of ``simulate.*_rate``; the same process is applied to
every population, so mask statistics carry no class information. Patterns (bits from
:data:`gen5dask.kernels.photometry.MASKBITS`):

* **NPRIMARY** (0): stamp pixels outside the brick of the stamp centre (exact, from the brick
  geometry: :func:`gen5dask.sim.sky.nprimary_mask`); the data there are good.
* **BRIGHT** (1) / **MEDIUM** (11): a Gaia-like star of ``G`` in [9, 13] (bright) or [13, 16]
  (medium) whose mask disc, of radius ``1630" x 1.396**-G`` (Legacy Surveys DR9/DR10
  bright-star mask), covers the stamp centre. The star sits at a random position in the disc,
  at least ``max(4", 0.3 R)`` from the centre; its light (Moffat PSF, sampled at pixel centres,
  untruncated) is added to the image in every band.
* **SATUR_G/R/Z** (2-4): pixels where the star's light exceeds :data:`SATURATION_NMGY` per
  pixel, plus (probability ``bleed_probability``) a vertical bleed trail 1-3 px wide through
  the saturated core; these pixels have ``invvar = 0`` and the image is the noise-free
  value (at least the saturation level).
* **ALLMASK_G/R/Z** (5-7): in one band, small patches (bad-column segments, cosmic-ray blobs)
  and CCD-edge strips without data; ``invvar = 0`` and ``image = 0`` there.
* **WISEM1/WISEM2** (8, 9): a WISE bright-star disc (WISEM2 on its inner 60 %).
* **BAILOUT** (10): the whole stamp, rarely.
* Exposure-count steps (no bit): in one band, a half-plane of the stamp with shallower depth
  (``invvar`` times 0.3-0.7).

Bits for bands other than g/r/z (e.g. ``i``) do not exist in DR10 MASKBITS: such bands get the
invvar effects without a band bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gen5dask.kernels.photometry import MASKBITS

#: Per-pixel flux (nanomaggies) above which a star's pixel is saturated (~ a G = 15 star's peak
#: in 1.3" seeing).
SATURATION_NMGY = 30.0
#: Bright-star mask radius law: ``R = MASK_R0 * MASK_BASE**(-G)`` arcsec.
MASK_R0 = 1630.0
MASK_BASE = 1.396


class StampMasks(NamedTuple):
    """Mask layout of one stamp."""

    maskbits: np.ndarray
    """``(H, W)`` int32 DR10 MASKBITS."""
    ivar_factor: np.ndarray
    """``(nband, H, W)`` float64 multiplier of the nominal invvar (0 = no data)."""
    zero_image: np.ndarray
    """``(nband, H, W)`` bool: no-data pixels whose image is set to 0."""
    star_light: np.ndarray
    """``(nband, H, W)`` float64 star light to add to the noise-free image, nanomaggies."""
    saturated: np.ndarray
    """``(nband, H, W)`` bool: saturated pixels (invvar 0, image kept noise-free)."""


def mask_radius_arcsec(g_mag) -> np.ndarray:
    """Legacy Surveys bright-star mask radius, arcsec: ``1630 * 1.396**(-G)``."""
    return MASK_R0 * MASK_BASE ** (-np.asarray(g_mag, dtype=np.float64))


def moffat_image(
    flux: float, x0: float, y0: float, fwhm_pix: float, beta: float, shape: tuple[int, int]
) -> np.ndarray:
    """Continuous-normalised Moffat point source sampled at pixel centres (nanomaggies/pixel).

    ``(x0, y0)`` are pixel coordinates (column, row) of the source; it may lie off the stamp.
    """
    alpha = fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    yy = np.arange(shape[0], dtype=np.float64)[:, None] - y0
    xx = np.arange(shape[1], dtype=np.float64)[None, :] - x0
    amp = flux * (beta - 1.0) / (np.pi * alpha * alpha)
    return amp * (1.0 + (xx * xx + yy * yy) / (alpha * alpha)) ** (-beta)


def _band_bit(prefix: str, band: str) -> int:
    name = f"{prefix}_{band.upper()}"
    return (1 << MASKBITS[name]) if name in MASKBITS else 0


def _disc(shape, x0, y0, r):
    yy = np.arange(shape[0])[:, None] - y0
    xx = np.arange(shape[1])[None, :] - x0
    return xx * xx + yy * yy < r * r


def _axis_band(g: np.random.Generator, shape, *, width: int | None):
    """Pixels with ``lo <= coordinate < hi`` along a random axis (bool ``(H, W)``).

    ``width=None``: a half-plane cut at a random position (random side); otherwise a strip of
    ``width`` pixels at a random position inside the stamp.
    """
    h, w = shape
    axis = int(g.integers(2))
    size = h if axis == 0 else w
    pos = int(g.integers(1, size))
    upper = bool(g.integers(2))
    idx = np.arange(size)
    if width is None:
        sel = idx >= pos if upper else idx < pos
    else:
        sel = (idx >= pos - width // 2) & (idx < pos - width // 2 + width)
    return np.broadcast_to(sel[:, None] if axis == 0 else sel[None, :], shape).copy()


def draw_stamp_masks(
    g: np.random.Generator,
    *,
    sim,
    bands,
    stamp_size: int,
    pixscale: float,
    fwhm_pix: np.ndarray,
    nprimary: np.ndarray | None = None,
) -> StampMasks:
    """Draw the mask layout of one stamp.

    Parameters
    ----------
    g : numpy.random.Generator
        The stamp's mask stream (every draw of this function comes from it).
    sim : SimulateConfig
        Rates (``*_rate``), ``bleed_probability`` and ``psf_beta``.
    bands : sequence of str
        Band names.
    stamp_size : int
        Stamp side, pixels.
    pixscale : float
        Arcsec per pixel.
    fwhm_pix : numpy.ndarray
        ``(nband,)`` PSF FWHM per band, pixels (for the star light).
    nprimary : numpy.ndarray, optional
        ``(H, W)`` bool NPRIMARY pixels (:func:`gen5dask.sim.sky.nprimary_mask`).

    Returns
    -------
    StampMasks
    """
    nb, shape = len(bands), (stamp_size, stamp_size)
    c = stamp_size // 2
    bits = np.zeros(shape, dtype=np.int32)
    ivf = np.ones((nb, *shape), dtype=np.float64)
    zero = np.zeros((nb, *shape), dtype=bool)
    light = np.zeros((nb, *shape), dtype=np.float64)
    sat = np.zeros((nb, *shape), dtype=bool)
    if nprimary is not None:
        bits[nprimary] |= 1 << MASKBITS["NPRIMARY"]
    # every draw below happens unconditionally (fixed stream layout per stamp)
    u = g.uniform(size=8)
    for kind, rate, g_range, bit in (
        ("bright", sim.bright_star_rate, (9.0, 13.0), "BRIGHT"),
        ("medium", sim.medium_star_rate, (13.0, 16.0), "MEDIUM"),
    ):
        gmag = g.uniform(*g_range)
        rr, phi = g.uniform(size=2)
        colors = g.uniform([0.3, 0.1], [1.2, 0.6])
        bleed_u, bleed_w, bleed_l = g.uniform(size=3)
        if u[0 if kind == "bright" else 1] >= rate:
            continue
        radius = mask_radius_arcsec(gmag) / pixscale
        rmin = min(max(4.0 / pixscale, 0.3 * radius), 0.95 * radius)
        dist = np.sqrt(rmin**2 + rr * (radius**2 - rmin**2))
        x0, y0 = c + dist * np.cos(2 * np.pi * phi), c + dist * np.sin(2 * np.pi * phi)
        bits[_disc(shape, x0, y0, radius)] |= 1 << MASKBITS[bit]
        gr, rz = colors
        for j, band in enumerate(bands):
            m_b = {"g": gmag + gr, "z": gmag - rz, "i": gmag - 0.5 * rz}.get(band, gmag)
            flux = 10.0 ** ((22.5 - m_b) / 2.5)
            light[j] += moffat_image(flux, x0, y0, fwhm_pix[j], sim.psf_beta, shape)
            s = light[j] > SATURATION_NMGY
            sat[j] |= s
        if sat.any() and bleed_u < sim.bleed_probability:
            half_w = int(bleed_w * 3) // 2
            length = 5 + bleed_l * 25
            xi = int(np.clip(np.round(x0), -stamp_size, 2 * stamp_size))
            rows = np.arange(stamp_size)[:, None]
            cols = np.arange(stamp_size)[None, :]
            trail = (np.abs(cols - xi) <= half_w) & (np.abs(rows - y0) <= length)
            for j in range(nb):
                if sat[j].any():
                    sat[j] |= trail
    for j, band in enumerate(bands):
        if sat[j].any():
            bits[sat[j]] |= _band_bit("SATUR", band)
            ivf[j][sat[j]] = 0.0
            light[j][sat[j]] = np.maximum(light[j][sat[j]], SATURATION_NMGY)
    # CCD-edge strip without data in one band
    b_gap = int(g.integers(nb))
    w_gap = int(g.integers(3, 13))
    strip = _axis_band(g, shape, width=w_gap)
    if u[2] < sim.ccd_gap_rate:
        ivf[b_gap][strip] = 0.0
        zero[b_gap] |= strip
        bits[strip] |= _band_bit("ALLMASK", bands[b_gap])
    # ALLMASK patches in one band
    b_all = int(g.integers(nb))
    n_patch = int(g.integers(1, 4))
    patches = g.uniform(size=(3, 4))
    if u[3] < sim.allmask_rate:
        for k in range(n_patch):
            px, py, a, kind = patches[k]
            x0, y0 = px * stamp_size, py * stamp_size
            if kind < 0.5:  # bad-column segment
                rows = np.arange(stamp_size)[:, None]
                cols = np.arange(stamp_size)[None, :]
                patch = (cols == int(x0)) & (np.abs(rows - y0) <= 2.5 + 10 * a)
            else:  # cosmic-ray blob
                patch = _disc(shape, x0, y0, 1.0 + 1.5 * a)
            ivf[b_all][patch] = 0.0
            zero[b_all] |= patch
            bits[patch] |= _band_bit("ALLMASK", bands[b_all])
    # WISE bright-star disc
    wx, wy, wr = g.uniform(size=3)
    if u[4] < sim.wise_rate:
        x0, y0 = c + (wx - 0.5) * 60.0, c + (wy - 0.5) * 60.0
        r = 8.0 + 22.0 * wr
        bits[_disc(shape, x0, y0, r)] |= 1 << MASKBITS["WISEM1"]
        bits[_disc(shape, x0, y0, 0.6 * r)] |= 1 << MASKBITS["WISEM2"]
    # exposure-count step in one band
    b_step = int(g.integers(nb))
    f_step = g.uniform(0.3, 0.7)
    step = _axis_band(g, shape, width=None)
    if u[5] < sim.depth_step_rate:
        ivf[b_step][step] *= f_step
    if u[6] < sim.bailout_rate:
        bits |= 1 << MASKBITS["BAILOUT"]
    return StampMasks(bits, ivf, zero & ~sat, light, sat)


__all__ = [
    "MASK_BASE",
    "MASK_R0",
    "SATURATION_NMGY",
    "StampMasks",
    "draw_stamp_masks",
    "mask_radius_arcsec",
    "moffat_image",
]

"""Lensed-source rendering for whole chunks: SIE + shear, Sersic or pixelated source, PSF.

Pipeline per sample (one ray trace per sample; bands differ only by amplitude and PSF), one
module per concern:

1. **Where to integrate.** The image plane is covered by the *magnification grid*, a square of
   ``magnification_grid`` x the stamp side (default 3x), enlarged when needed so that it holds
   every image of the (truncated) source: images lie within
   ``(|beta_src| + R_src + max|alpha_SIE|) / (1 - |gamma|)`` of the lens, where ``R_src`` bounds
   the source (``R_trunc / sqrt(q_src)`` for a Sersic, the half-diagonal for an image). The
   enlargement is capped at ``max_grid`` x the stamp side; beyond that cap (only for huge
   sources) the magnification is a slight underestimate (:func:`grid_half_size`).
2. **Ray tracing** (:mod:`gen5dask.kernels.raytrace`): a per-sample direction table of the SIE
   deflection, interpolated per ray, with the lens-map Jacobian from the same interpolant.
3. **Source models** (:mod:`gen5dask.kernels.sources`): elliptical Sersic truncated at the
   radius enclosing 99.9 % of its flux, or a bilinearly interpolated image.
4. **Cubature** (:mod:`gen5dask.kernels.cubature`): blocks and pixels whose (rigorously
   bounded) source-plane footprint misses the source are skipped; the others get the lowest
   Gauss-Legendre order their footprint allows, or are split recursively (Sersic cusps,
   compact sources down to R_eff = 0.05"). Surface brightness is conserved: pixel values are
   fluxes and their sum over the grid is the lensed flux.
5. **PSF** (:mod:`gen5dask.kernels.psfstack`, :func:`gen5dask.kernels.psf.convolve_bands`):
   the unconvolved image on the stamp plus a ``K // 2`` margin is convolved with each band's
   kernel by zero-padded FFTs (exactly linear) and cropped to the stamp.

Inputs are validated by :mod:`gen5dask.kernels.render_checks` (errors name the argument and
sample index); :func:`reference_render_lensed_sersic` (:mod:`gen5dask.kernels.render_reference`)
is the slow numpy reference the tests compare against.

``magnification`` = lensed flux on the grid / unlensed flux of the same truncated source
(``(1 - 1e-3) F`` for a Sersic; ``F`` for an image source), noise-free, before the stamp cut.

Coordinates (DESIGN §4): pixel ``(i, j)`` of an ``H x H`` stamp is centred at
``x = (j - H//2) * pixscale``, ``y = (i - H//2) * pixscale`` (arcsec); angles are radians CCW
from ``+x``; this frame is passed unchanged to lenstronomy as its ``(x, y)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gen5dask.kernels.cubature import (
    BLOCK,
    CUSP_FLUX_FLOOR,
    GL_NODES,
    GL_WEIGHTS,
    MAX_ORDER,
    SERSIC_TOLS,
    WORK_COUNTERS,
    render_chunk,
)
from gen5dask.kernels.profiles import N_MAX, N_MIN
from gen5dask.kernels.psfstack import convolve_to_stamps, psf_kernel_stack
from gen5dask.kernels.raytrace import lens_tuples
from gen5dask.kernels.render_checks import (
    as_vec,
    check_flux,
    check_render_options,
    check_tol_scale,
    range_check,
    work_array,
)
from gen5dask.kernels.render_reference import reference_render_lensed_sersic
from gen5dask.kernels.sources import (
    KIND_IMAGE,
    KIND_SERSIC,
    P_RTRUNC,
    image_params,
    sersic_params,
)

#: flux fraction of a Sersic source beyond its truncation radius.
SERSIC_LOST_FRACTION = 1e-3


def grid_half_size(
    extent_arcsec, stamp_size, pixscale, margin, magnification_grid, max_grid
) -> np.ndarray:
    """Per-sample half-size (pixels) of the magnification grid (see the module docstring)."""
    base = max(stamp_size // 2 + margin, int(np.ceil(0.5 * magnification_grid * stamp_size)))
    cap = max(base, int(np.ceil(0.5 * max_grid * stamp_size)))
    need = np.ceil(extent_arcsec / pixscale).astype(np.int64) + 2
    return np.clip(need, base, cap).astype(np.int64)


def render_lensed_sersic(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_reff,
    src_n,
    src_q,
    src_pa,
    src_flux_bands,
    psf_fwhm_arcsec=None,
    psf_beta: float = 3.5,
    supersample: int = 3,
    psf_kernels=None,
    bands: Sequence[str] | None = None,
    tol_scale: float = 1.0,
    max_depth: int = 12,
    magnification_grid: float = 3.0,
    max_grid: float = 8.0,
    fft_workers: int = 1,
    work: np.ndarray | None = None,
):
    """Render noise-free, lensed, PSF-convolved Sersic arcs for a chunk of samples.

    Parameters
    ----------
    stamp_size : int
        Stamp side ``H = W`` in pixels; the lens sits at pixel ``(H//2, H//2)``.
    pixscale : float
        Pixel scale, arcsec/pixel (0.262 for DR10).
    theta_e, lens_q, lens_pa : array_like, shape (n,)
        SIE Einstein radius (arcsec, lenstronomy convention, >= 0), axis ratio (0, 1] and
        major-axis angle (radians CCW from +x).
    shear_g1, shear_g2 : array_like, shape (n,)
        External shear (lenstronomy ``SHEAR``), ``|g| < 0.9``.
    src_x, src_y : array_like, shape (n,)
        Unlensed source centre, arcsec in the stamp frame.
    src_reff : array_like, shape (n,)
        Sersic half-light radius along the intermediate axis, arcsec (> 0).
    src_n, src_q, src_pa : array_like, shape (n,)
        Sersic index (0.3..10), axis ratio (0, 1], major-axis angle (radians CCW from +x).
    src_flux_bands : array_like, shape (n, nband)
        Total unlensed source flux per band, nanomaggies.
    psf_fwhm_arcsec : array_like, shape (n, nband)
        Moffat FWHM per sample and band, arcsec (finite, > 0). Ignored if ``psf_kernels``.
    psf_beta : float, optional
        Moffat beta (default 3.5).
    supersample : int, optional
        Base sub-sampling factor of pixels where the source varies (default 3).
    psf_kernels : array_like, shape (n, nband, K, K), optional
        Supplied PSF images (odd ``K``); normalised with :func:`psf.normalise_psf_image`.
    bands : sequence of str, optional
        Band names for error messages.
    tol_scale : float, optional
        Multiplies every accuracy limit (smaller is more accurate and slower; default 1).
    max_depth : int, optional
        Maximum number of 2x2 refinements below the ``supersample`` level.
    magnification_grid, max_grid : float, optional
        Magnification grid side in stamp sides (default 3) and the cap of its enlargement.
    fft_workers : int, optional
        scipy.fft worker threads (default 1).
    work : numpy.ndarray, optional
        int64 array of ``len(WORK_COUNTERS)`` that the numba core increments (diagnostics).

    Returns
    -------
    arc : numpy.ndarray
        float32 ``(n, nband, H, H)``, nanomaggies per pixel.
    magnification : numpy.ndarray
        float64 ``(n,)``, total lensed / total unlensed flux (see module docstring).

    Raises
    ------
    ValueError
        On any non-finite or out-of-range input, naming the argument and sample index (and
        band for PSF FWHMs).
    """
    check_render_options(stamp_size, pixscale, supersample, max_depth, max_order=MAX_ORDER)
    work = work_array(work, len(WORK_COUNTERS))
    stamp_size = int(stamp_size)
    theta_e = as_vec("theta_e", theta_e, None)
    n = theta_e.shape[0]
    vec = {
        name: as_vec(name, val, n)
        for name, val in (
            ("lens_q", lens_q), ("lens_pa", lens_pa), ("shear_g1", shear_g1),
            ("shear_g2", shear_g2), ("src_x", src_x), ("src_y", src_y),
            ("src_reff", src_reff), ("src_n", src_n), ("src_q", src_q), ("src_pa", src_pa),
        )
    }
    reff, sn, sq = vec["src_reff"], vec["src_n"], vec["src_q"]
    range_check("src_reff", reff, reff <= 0, "> 0 arcsec")
    range_check("src_n", sn, (sn < N_MIN) | (sn > N_MAX), f"in [{N_MIN}, {N_MAX}]")
    range_check("src_q", sq, (sq <= 0) | (sq > 1), "in (0, 1]")
    flux = check_flux(src_flux_bands, n)
    nband = flux.shape[1]
    lens, amax, gamma = lens_tuples(
        theta_e, vec["lens_q"], vec["lens_pa"], vec["shear_g1"], vec["shear_g2"]
    )
    kernels = psf_kernel_stack(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels)
    margin = kernels.shape[-1] // 2

    sp, funit = sersic_params(
        vec["src_x"], vec["src_y"], reff, sn, sq, vec["src_pa"],
        lost_fraction=SERSIC_LOST_FRACTION,
    )
    rt = sp[:, P_RTRUNC]
    extent = (np.hypot(vec["src_x"], vec["src_y"]) + rt / np.sqrt(sq) + amax) / (1.0 - gamma)
    half = grid_half_size(extent, stamp_size, pixscale, margin, magnification_grid, max_grid)
    p = stamp_size + 2 * margin
    region = np.zeros((n, p, p))
    totals = np.zeros(n)
    dummy = np.zeros((1, 1, 1))
    render_chunk(
        lens, KIND_SERSIC, sp, dummy, np.zeros(n, dtype=np.int64), float(pixscale), half,
        -(stamp_size // 2) - margin, region, GL_NODES, GL_WEIGHTS,
        SERSIC_TOLS * check_tol_scale(tol_scale), int(supersample), int(max_depth),
        CUSP_FLUX_FLOOR * check_tol_scale(tol_scale), totals, work,
    )
    amps = flux / funit[:, None]
    arc = convolve_to_stamps(region, kernels, amps, stamp_size, workers=fft_workers)
    return arc, totals / (funit * (1.0 - SERSIC_LOST_FRACTION))


def render_lensed_image(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_image,
    src_pixscale,
    src_flux_bands,
    psf_fwhm_arcsec=None,
    psf_beta: float = 3.5,
    supersample: int = 3,
    src_pa=None,
    psf_kernels=None,
    bands: Sequence[str] | None = None,
    tol_scale: float = 1.0,
    max_depth: int = 4,
    magnification_grid: float = 3.0,
    max_grid: float = 8.0,
    fft_workers: int = 1,
    work: np.ndarray | None = None,
):
    """Render lensed, PSF-convolved images of a pixelated source (e.g. a COSMOS galaxy).

    The source surface brightness is the bilinear interpolant of ``src_image`` (zero outside),
    placed with its pixel ``(h//2, w//2)`` at ``(src_x, src_y)``, its columns along ``+x``
    rotated by ``src_pa``, and scaled so that its total flux (``sum(src_image) *
    src_pixscale**2`` before scaling; the interpolant integrates to exactly that) equals
    ``src_flux_bands``. Surface brightness is conserved along rays; image-plane cells are
    refined until their source-plane footprint is below ``refine_tol`` source pixels.

    Parameters
    ----------
    stamp_size, pixscale, theta_e, lens_q, lens_pa, shear_g1, shear_g2, src_x, src_y
        As :func:`render_lensed_sersic`.
    src_image : array_like
        ``(h, w)`` shared by all samples, or ``(n, h, w)`` one per sample (surface brightness,
        any units; only its shape matters after normalisation). Sum must be positive.
    src_pixscale : float or array_like, shape (n,)
        Source pixel scale, arcsec/pixel (e.g. 0.03 for COSMOS F814W).
    src_flux_bands : array_like, shape (n, nband)
        Total unlensed source flux per band, nanomaggies.
    psf_fwhm_arcsec, psf_beta, supersample, psf_kernels, bands, magnification_grid, max_grid,
    fft_workers
        As :func:`render_lensed_sersic`.
    src_pa : array_like, shape (n,), optional
        Source rotation, radians CCW (default 0).
    tol_scale : float, optional
        Source pixels per Gauss-Legendre node spacing allowed across a cell footprint
        (default 1: one sample per source pixel).
    max_depth : int, optional
        Maximum 2x2 refinements below the ``supersample`` level (default 4).

    Returns
    -------
    arc : numpy.ndarray
        float32 ``(n, nband, H, H)``, nanomaggies per pixel.
    magnification : numpy.ndarray
        float64 ``(n,)``, lensed flux on the grid / unlensed flux.
    """
    check_render_options(stamp_size, pixscale, supersample, max_depth, max_order=MAX_ORDER)
    work = work_array(work, len(WORK_COUNTERS))
    stamp_size = int(stamp_size)
    theta_e = as_vec("theta_e", theta_e, None)
    n = theta_e.shape[0]
    vec = {
        name: as_vec(name, val, n)
        for name, val in (
            ("lens_q", lens_q), ("lens_pa", lens_pa), ("shear_g1", shear_g1),
            ("shear_g2", shear_g2), ("src_x", src_x), ("src_y", src_y),
        )
    }
    pa = np.zeros(n) if src_pa is None else as_vec("src_pa", src_pa, n)
    spix = as_vec("src_pixscale", np.broadcast_to(np.asarray(src_pixscale, float), (n,)), n)
    range_check("src_pixscale", spix, spix <= 0, "> 0 arcsec/pixel")
    imgs = np.asarray(src_image, dtype=np.float64)
    if imgs.ndim == 2:
        imgs = imgs[None]
        index = np.zeros(n, dtype=np.int64)
    elif imgs.ndim == 3 and imgs.shape[0] == n:
        index = np.arange(n, dtype=np.int64)
    else:
        msg = f"src_image must have shape (h, w) or ({n}, h, w), got {imgs.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(imgs)):
        msg = "src_image has non-finite values"
        raise ValueError(msg)
    sums = imgs.reshape(imgs.shape[0], -1).sum(axis=1)
    if np.any(sums <= 0):
        k = int(np.flatnonzero(sums <= 0)[0])
        msg = f"src_image[{k}] sum {sums[k]!r} must be positive"
        raise ValueError(msg)
    imgs = np.ascontiguousarray(imgs)
    flux = check_flux(src_flux_bands, n)
    nband = flux.shape[1]
    lens, amax, gamma = lens_tuples(
        theta_e, vec["lens_q"], vec["lens_pa"], vec["shear_g1"], vec["shear_g2"]
    )
    kernels = psf_kernel_stack(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels)
    margin = kernels.shape[-1] // 2

    sp = image_params(vec["src_x"], vec["src_y"], pa, spix, sums[index])
    rsrc = 0.5 * np.hypot(imgs.shape[1] + 2, imgs.shape[2] + 2) * spix
    extent = (np.hypot(vec["src_x"], vec["src_y"]) + rsrc + amax) / (1.0 - gamma)
    half = grid_half_size(extent, stamp_size, pixscale, margin, magnification_grid, max_grid)
    p = stamp_size + 2 * margin
    region = np.zeros((n, p, p))
    totals = np.zeros(n)
    render_chunk(
        lens, KIND_IMAGE, sp, imgs, index, float(pixscale), half, -(stamp_size // 2) - margin,
        region, GL_NODES, GL_WEIGHTS, np.full(MAX_ORDER + 1, check_tol_scale(tol_scale)),
        int(supersample), int(max_depth), CUSP_FLUX_FLOOR, totals, work,
    )
    arc = convolve_to_stamps(region, kernels, flux, stamp_size, workers=fft_workers)
    return arc, totals


__all__ = [
    "BLOCK",
    "MAX_ORDER",
    "SERSIC_LOST_FRACTION",
    "WORK_COUNTERS",
    "grid_half_size",
    "reference_render_lensed_sersic",
    "render_lensed_image",
    "render_lensed_sersic",
]

"""Centre-mask augmentation (DESIGN §4 "Centre mask"; training only).

Pixels with ``r < r_mask`` (pixels from the stamp centre ``(H//2, W//2)``) are replaced, per band,
by values drawn with replacement from that band's pixels outside the mask, or from an annulus
``r_in <= r < r_out`` outside the mask. Draws come from the counter-based generator
(:mod:`gen5dask.kernels.rng`), so the result is a pure function of the image, the radius and the
key ``keys_for(seed, stage_id("center_mask"), ids, replicate, epoch)``: bit-identical for any
worker count, chunking or order.

Random-number layout for one key (one sample): the fill value of the ``k``-th masked pixel of band
``b`` (masked pixels taken in :func:`gen5dask.kernels.geometry.radial_order` order) uses
``uniform(key, b * H * W + k)``; the mask radius of :func:`draw_mask_radius` uses
``uniform(key, MASK_RADIUS_COUNTER)`` with ``MASK_RADIUS_COUNTER = 2**63``, which no fill draw
can reach, so the same key can drive both.

Speed: masked pixels form a prefix and the candidates a contiguous slice of the radius-sorted
pixel order (cached per stamp shape), so the kernel touches only the masked pixels, with no
allocation; with ``out=None`` the cost is one copy of the chunk plus ~``nband * n_masked`` draws.
"""

from __future__ import annotations

import numpy as np

from gen5dask import PIXSCALE_ARCSEC
from gen5dask.kernels._jit import jit
from gen5dask.kernels.geometry import count_inside_many, radial_order
from gen5dask.kernels.rng import uniform

#: Counter of the mask-radius draw (fill draws use counters ``< nband * H * W < 2**63``).
MASK_RADIUS_COUNTER = 2**63

MASK_RADIUS_LAWS = ("uniform", "psf")


def _as_keys(keys: np.ndarray, n: int) -> np.ndarray:
    keys = np.asarray(keys)
    if keys.shape != (n,):
        msg = f"keys must have shape ({n},) (one per sample), got {keys.shape}"
        raise ValueError(msg)
    if not np.issubdtype(keys.dtype, np.integer):
        msg = f"keys must be an integer (uint64) array, got dtype {keys.dtype}"
        raise ValueError(msg)
    return np.ascontiguousarray(keys.astype(np.uint64, copy=False))


@jit
def _fill_kernel(src, dst, copy, order, n_mask, cand_lo, cand_hi, keys):
    """Per sample and band: copy ``src`` to ``dst`` if ``copy``, then fill the masked prefix.

    ``src``/``dst`` are (n, nband, H*W) views; the copy is done band by band so the fill reads
    candidates from cache rather than making a second pass over the chunk.
    """
    n = dst.shape[0]
    nb = dst.shape[1]
    npix = dst.shape[2]
    touch = np.float32(0.0)
    for i in range(n):
        m = n_mask[i]
        lo = cand_lo[i]
        ncand = cand_hi[i] - lo
        key = keys[i]
        for b in range(nb):
            band = dst[i, b]
            if copy:
                sband = src[i, b]
                for p in range(npix):
                    band[p] = sband[p]
            elif m > 0:
                # in place: stream the band into cache (one read per 64-byte line) so the random
                # candidate reads below hit cache instead of waiting on memory one by one
                for p in range(0, npix, 16):
                    touch += band[p]
            base = np.uint64(b * npix)
            for k in range(m):
                u = uniform(key, base + np.uint64(k))
                j = int(u * ncand)
                if j >= ncand:  # guard against rounding of u * ncand up to ncand
                    j = ncand - 1
                band[order[k]] = band[order[lo + j]]
    return touch


def center_mask(
    images: np.ndarray,
    radius_pix: np.ndarray,
    keys: np.ndarray,
    *,
    annulus: tuple[float, float] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Replace the centre of each stamp by pixels drawn from outside it (per band).

    Parameters
    ----------
    images : numpy.ndarray
        float32 ``(n, nband, H, W)``, flux in nanomaggies (any units: values are only copied).
    radius_pix : numpy.ndarray
        float64 ``(n,)``, mask radius in pixels; pixels with ``r < radius_pix[i]`` are replaced.
        Must be finite and ``>= 0`` (0 masks nothing).
    keys : numpy.ndarray
        uint64 ``(n,)``, one counter-RNG key per sample, from
        ``keys_for(seed, stage_id("center_mask"), ids, replicate, epoch)``.
    annulus : tuple of float, optional
        ``(r_in, r_out)`` in pixels: draw fill values only from pixels with
        ``r_in <= r < r_out`` *and* ``r >= radius_pix[i]`` (the mask is never a source of fill
        values). Default: every pixel outside the mask.
    out : numpy.ndarray, optional
        float32 C-contiguous ``(n, nband, H, W)`` output; may be ``images`` itself (in place,
        fastest). Default: a new array.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)``: ``out``. Pixels with ``r >= radius_pix[i]`` equal the
        input; each masked pixel holds the value of a candidate pixel of the same sample and band.

    Raises
    ------
    ValueError
        On wrong shapes or dtypes, a negative or non-finite radius, an invalid annulus, or a
        sample whose candidate set is empty (mask covers the stamp or the annulus); the message
        names the first offending row.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        msg = f"images must be (n, nband, H, W), got shape {images.shape}"
        raise ValueError(msg)
    if images.dtype != np.float32:
        msg = f"images must be float32, got dtype {images.dtype}"
        raise ValueError(msg)
    n, nb, H, W = images.shape
    radius = np.asarray(radius_pix, dtype=np.float64)
    if radius.shape != (n,):
        msg = f"radius_pix must have shape ({n},), got {radius.shape}"
        raise ValueError(msg)
    bad = ~(np.isfinite(radius) & (radius >= 0.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = f"radius_pix must be finite and >= 0; row {i} has {float(radius[i])!r}"
        raise ValueError(msg)
    keys = _as_keys(keys, n)

    order, r_sorted = radial_order(H, W)
    npix = H * W
    n_mask = count_inside_many(r_sorted, radius)
    if annulus is None:
        cand_lo = n_mask
        cand_hi = np.full(n, npix, dtype=np.int64)
    else:
        r_in, r_out = (float(v) for v in annulus)
        if not (np.isfinite(r_in) and np.isfinite(r_out) and 0.0 <= r_in < r_out):
            msg = f"annulus must be (r_in, r_out) with 0 <= r_in < r_out, got {annulus!r}"
            raise ValueError(msg)
        a_lo, a_hi = count_inside_many(r_sorted, np.array([r_in, r_out]))
        cand_lo = np.maximum(n_mask, a_lo)
        cand_hi = np.full(n, a_hi, dtype=np.int64)
    empty = (cand_hi <= cand_lo) & (n_mask > 0)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        where = "outside the mask"
        if annulus is not None:
            where = f"in annulus {annulus!r} outside the mask"
        msg = (
            f"center_mask: row {i} (radius_pix={float(radius[i])!r}) has no pixel {where} to "
            f"draw from in a {H}x{W} stamp"
        )
        raise ValueError(msg)

    copy = False
    if out is None:
        out = np.empty(images.shape, dtype=np.float32)
        copy = True
    else:
        if not isinstance(out, np.ndarray) or out.shape != images.shape:
            msg = f"out must be an ndarray of shape {images.shape}"
            raise ValueError(msg)
        if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
            msg = "out must be a writeable, C-contiguous float32 array"
            raise ValueError(msg)
        same = (
            out.__array_interface__["data"][0] == images.__array_interface__["data"][0]
            and out.strides == images.strides
        )
        if not same and np.shares_memory(out, images):
            msg = "out overlaps images without being the same array"
            raise ValueError(msg)
        if not same:
            copy = True
    if n == 0 or npix == 0:
        return out
    src = np.ascontiguousarray(images).reshape(n, nb, npix) if copy else out.reshape(n, nb, npix)
    _fill_kernel(src, out.reshape(n, nb, npix), copy, order, n_mask, cand_lo, cand_hi, keys)
    return out


@jit
def _uniform_radius_kernel(keys, rmin, rmax, counter, out):
    width = rmax - rmin
    for i in range(keys.shape[0]):
        out[i] = rmin + width * uniform(keys[i], counter)


def draw_mask_radius(
    keys: np.ndarray,
    *,
    law: str = "uniform",
    rmin: float = 3.0,
    rmax: float = 7.0,
    psfsize_r_arcsec: np.ndarray | None = None,
    pixscale: float = PIXSCALE_ARCSEC,
) -> np.ndarray:
    """Centre-mask radius per sample, in pixels.

    Parameters
    ----------
    keys : numpy.ndarray
        uint64 ``(n,)`` counter-RNG keys (the same keys as :func:`center_mask`; the radius uses
        counter ``MASK_RADIUS_COUNTER``, disjoint from the fill draws).
    law : {"uniform", "psf"}
        ``"uniform"``: ``r ~ U[rmin, rmax)`` from the key. ``"psf"``:
        ``r = 0.5 * psfsize_r_arcsec / pixscale`` (deterministic; keys only fix ``n``).
    rmin, rmax : float
        Bounds of the uniform law, pixels; ``0 <= rmin <= rmax``.
    psfsize_r_arcsec : numpy.ndarray, optional
        float ``(n,)``, r-band PSF FWHM in arcsec; required for ``law="psf"``, finite and > 0.
    pixscale : float
        Pixel scale, arcsec per pixel (DR10: 0.262).

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``, mask radius in pixels.
    """
    keys = np.asarray(keys)
    if keys.ndim != 1:
        msg = f"keys must be 1-D, got shape {keys.shape}"
        raise ValueError(msg)
    n = keys.shape[0]
    keys = _as_keys(keys, n)
    if law == "uniform":
        rmin, rmax = float(rmin), float(rmax)
        if not (np.isfinite(rmin) and np.isfinite(rmax) and 0.0 <= rmin <= rmax):
            msg = f"need 0 <= rmin <= rmax (pixels), got rmin={rmin!r}, rmax={rmax!r}"
            raise ValueError(msg)
        out = np.empty(n, dtype=np.float64)
        _uniform_radius_kernel(keys, rmin, rmax, np.uint64(MASK_RADIUS_COUNTER), out)
        return out
    if law == "psf":
        if psfsize_r_arcsec is None:
            msg = "law='psf' needs psfsize_r_arcsec (r-band PSF FWHM, arcsec, one per sample)"
            raise ValueError(msg)
        psf = np.asarray(psfsize_r_arcsec, dtype=np.float64)
        if psf.shape != (n,):
            msg = f"psfsize_r_arcsec must have shape ({n},), got {psf.shape}"
            raise ValueError(msg)
        pixscale = float(pixscale)
        if not (np.isfinite(pixscale) and pixscale > 0.0):
            msg = f"pixscale must be finite and > 0 (arcsec/pixel), got {pixscale!r}"
            raise ValueError(msg)
        bad = ~(np.isfinite(psf) & (psf > 0.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            msg = f"psfsize_r_arcsec must be finite and > 0; row {i} has {float(psf[i])!r}"
            raise ValueError(msg)
        return 0.5 * psf / pixscale
    msg = f"law must be one of {MASK_RADIUS_LAWS}, got {law!r}"
    raise ValueError(msg)


__all__ = ["MASK_RADIUS_COUNTER", "MASK_RADIUS_LAWS", "center_mask", "draw_mask_radius"]

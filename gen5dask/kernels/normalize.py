"""The one stamp normalisation shared by training and scoring (DESIGN §4).

Per sample and band: subtract the median and divide by ``1.4826 * MAD`` of the pixels with
``r >= r_outer`` (pixels from the centre ``(H//2, W//2)``), then clip to ``[-clip, +clip]``.
Training (:mod:`gen5dask.train`) and scoring both call :func:`normalize_stamps`; never
re-implement it elsewhere, or the network sees differently scaled inputs at scoring time.

Degenerate cases never produce NaN or inf:

* scale: ``1.4826 * MAD`` if it is finite and > 0, else the standard deviation of the same pixels,
  else 1 (a constant or empty outer region);
* statistics pixels: the finite pixels with ``r >= r_outer``; if none is finite, all finite
  pixels of the plane; if none at all, location 0 and scale 1;
* non-finite input pixels are written as 0 (the background level) in the output. Stores should
  not contain them (audit gate 5 checks); this only keeps one bad pixel from poisoning a batch.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.geometry import (
    count_inside,
    gather_finite,
    radial_order,
    robust_loc_scale,
    stack_2d,
)


@jit
def _normalize_kernel(flat, order, o_lo, clip, buf, out):
    npix = flat.shape[1]
    for i in range(flat.shape[0]):
        img = flat[i]
        nf = gather_finite(img, order, o_lo, npix, buf)
        if nf == 0:
            nf = gather_finite(img, order, 0, npix, buf)
        loc = 0.0
        scale = 1.0
        if nf > 0:
            loc, mad_sigma, std = robust_loc_scale(buf, nf)
            if mad_sigma > 0.0 and np.isfinite(mad_sigma):
                scale = mad_sigma
            elif std > 0.0 and np.isfinite(std):
                scale = std
        inv = 1.0 / scale
        dst = out[i]
        for p in range(npix):
            v = np.float64(img[p])
            if np.isfinite(v):
                z = (v - loc) * inv
                if z > clip:
                    z = clip
                elif z < -clip:
                    z = -clip
                dst[p] = z
            else:
                dst[p] = 0.0


def normalize_stamps(
    images: np.ndarray,
    *,
    r_outer: float = 16.0,
    clip: float | None = 10.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Robustly standardise every stamp plane by its outer-region median and MAD.

    Parameters
    ----------
    images : numpy.ndarray
        ``(..., H, W)`` real array, usually ``(n, nband, H, W)`` flux in nanomaggies; each
        ``(H, W)`` plane (one sample, one band) is normalised on its own.
    r_outer : float
        Inner radius of the statistics region, pixels: median and MAD use pixels with
        ``r >= r_outer``. Must leave at least one pixel in the stamp.
    clip : float or None
        Output is clipped to ``[-clip, +clip]`` (dimensionless, > 0; ``inf`` or None: no clip).
    out : numpy.ndarray, optional
        float32 C-contiguous array of the same shape for the result.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``: ``clip((x - median) / (1.4826 * MAD))``, in units of
        the outer-region noise. Finite everywhere (see the module docstring for degenerate
        cases). Invariant under ``x -> a * x + b`` for ``a > 0`` (to float rounding).
    """
    x = np.asarray(images)
    stack_2d("images", x)  # validates shape (..., H, W) and a real dtype
    r_outer = float(r_outer)
    if not (np.isfinite(r_outer) and r_outer >= 0.0):
        msg = f"r_outer must be finite and >= 0 (pixels), got {r_outer!r}"
        raise ValueError(msg)
    clip_v = np.inf if clip is None else float(clip)
    if not clip_v > 0.0:  # also rejects NaN
        msg = f"clip must be > 0 (or None for no clipping), got {clip!r}"
        raise ValueError(msg)
    H, W = x.shape[-2:]
    order, r_sorted = radial_order(H, W)
    o_lo = count_inside(r_sorted, r_outer)
    if o_lo >= H * W:
        msg = f"normalize_stamps: no pixel with r >= r_outer={r_outer} in a {H}x{W} stamp"
        raise ValueError(msg)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    elif (
        not isinstance(out, np.ndarray)
        or out.shape != x.shape
        or out.dtype != np.float32
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        msg = f"out must be a writeable C-contiguous float32 array of shape {x.shape}"
        raise ValueError(msg)
    npix = H * W
    flat = np.ascontiguousarray(x).reshape(-1, npix)
    if flat.shape[0] == 0 or npix == 0:
        return out
    buf = np.empty(npix, dtype=np.float64)
    _normalize_kernel(flat, order, o_lo, clip_v, buf, out.reshape(-1, npix))
    return out


__all__ = ["normalize_stamps"]

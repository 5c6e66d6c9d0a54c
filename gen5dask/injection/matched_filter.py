"""The matched-filter S/N of a known arc: ``snr_opt = sqrt(sum_bands sum_pixels a^2 invvar)``.

A detector that knows the noise-free arc ``a`` exactly, in Gaussian noise of inverse variance
``invvar``, reaches this S/N (good pixels only: ``invvar > 0``); at a false-positive rate FPR
its recall is ``Phi(snr_opt - Phi^-1(1 - FPR))``. Stored per sample (``snr_opt``) wherever an
arc is rendered, so the physical limit never needs stored pixels.
"""

from __future__ import annotations

import math

import numpy as np

from gen5dask.kernels._jit import jit


@jit
def _snr_opt_kernel(arc, invvar, out):
    n, nb, h, w = arc.shape
    for i in range(n):
        acc = 0.0
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    iv = np.float64(invvar[i, b, y, x])
                    if iv > 0.0:
                        a = np.float64(arc[i, b, y, x])
                        acc += a * a * iv
        out[i] = math.sqrt(acc)


def snr_opt(arc: np.ndarray, invvar: np.ndarray) -> np.ndarray:
    """Matched-filter S/N per sample of ``(n, nband, H, W)`` arcs (nanomaggies) and invvar
    (nanomaggies^-2); float64 ``(n,)``. Pixels with ``invvar <= 0`` (or NaN) are left out."""
    arc = np.ascontiguousarray(arc)
    invvar = np.ascontiguousarray(invvar)
    if arc.ndim != 4 or arc.shape != invvar.shape:
        msg = f"snr_opt: arc and invvar must be equal (n, band, H, W) arrays, got {arc.shape}, "
        msg += f"{invvar.shape}"
        raise ValueError(msg)
    out = np.empty(arc.shape[0], dtype=np.float64)
    _snr_opt_kernel(arc, invvar, out)
    return out


def snr_opt_reference(arc: np.ndarray, invvar: np.ndarray) -> np.ndarray:
    """Plain-numpy reference of :func:`snr_opt` (tests)."""
    a = np.asarray(arc, dtype=np.float64)
    iv = np.asarray(invvar, dtype=np.float64)
    good = iv > 0
    return np.sqrt(np.where(good, a * a * np.where(good, iv, 0.0), 0.0).sum(axis=(1, 2, 3)))


__all__ = ["snr_opt", "snr_opt_reference"]

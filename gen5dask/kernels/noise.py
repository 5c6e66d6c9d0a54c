"""Deterministic noise for injected light, keyed per sample (DESIGN §5).

For sample ``i`` with key ``keys[i]`` and pixel flat index ``c`` (over ``band, y, x``):

* Gaussian read/sky-like term ``sigma * normal(keys[i], c)`` with ``sigma = 1 / sqrt(invvar)``
  (``sky=False`` leaves it out: injected light on a real cutout that already has sky noise);
* optional Poisson term for the added flux: ``(Poisson(lam) - lam) / gain`` with
  ``lam = max(arc, 0) * gain`` electrons (``gain`` in electrons per nanomaggy), drawn by
  inversion from ``uniform(key_p, c)`` for ``lam < 30`` and as ``sqrt(lam) * normal(key_p, c)``
  otherwise, on the independent stream ``key_p = splitmix64(keys[i] ^ POISSON_SALT)``.

Pixels with ``invvar == 0`` (no data) are returned unchanged. The result depends only on the
inputs and the keys, never on chunking, order or worker count.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.rng import normal, splitmix64, uniform

#: salt separating the Poisson stream from the Gaussian one.
POISSON_SALT = np.uint64(0x5D1CE5A17F00D5EE)
_POISSON_GAUSS_LAMBDA = 30.0


@jit
def _poisson_inv(lam, u):
    """Poisson(lam) by inversion of the CDF at uniform ``u`` (small ``lam``)."""
    p = np.exp(-lam)
    cdf = p
    k = 0
    while u > cdf and k < 1000:
        k += 1
        p *= lam / k
        cdf += p
    return k


@jit
def _add_noise(arc, invvar, keys, sky, poisson, gain, out):
    n, nb, h, w = arc.shape
    for i in range(n):
        key = keys[i]
        key_p = splitmix64(key ^ POISSON_SALT)
        for b in range(nb):
            g = gain[i, b]
            for y in range(h):
                for x in range(w):
                    v = arc[i, b, y, x]
                    iv = invvar[i, b, y, x]
                    if not iv > 0.0:
                        out[i, b, y, x] = v
                        continue
                    c = np.uint64((b * h + y) * w + x)
                    val = v
                    if sky:
                        val += normal(key, c) / np.sqrt(iv)
                    if poisson:
                        lam = max(v, 0.0) * g
                        if lam > 0.0:
                            if lam < _POISSON_GAUSS_LAMBDA:
                                k = _poisson_inv(lam, uniform(key_p, c))
                                val += (k - lam) / g
                            else:
                                val += np.sqrt(lam) * normal(key_p, c) / g
                    out[i, b, y, x] = val


def add_noise(arc, invvar, keys, *, poisson=False, gain=None, sky=True):
    """Add Gaussian (and optionally Poisson) noise to injected light, deterministically.

    Parameters
    ----------
    arc : array_like
        ``(n, nband, H, W)`` noise-free flux, nanomaggies per pixel.
    invvar : array_like
        Inverse variance, nanomaggies^-2, same shape; ``0`` marks pixels left unchanged.
        Negative or NaN values are an error.
    keys : array_like of uint64
        ``(n,)`` per-sample keys from :func:`gen5dask.kernels.rng.keys_for`.
    poisson : bool, optional
        Also add the shot noise of the added flux (keyword only).
    gain : float or array_like, optional
        Electrons per nanomaggy, scalar or broadcastable to ``(n, nband)``; required (> 0)
        when ``poisson`` is true.
    sky : bool, optional
        Add the Gaussian term ``N(0, 1/invvar)`` (default). ``False`` adds only the shot noise
        of the added light: for injections into real cutouts, whose pixels already carry the
        sky noise (keyword only).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)``.

    Raises
    ------
    ValueError
        On shape mismatches, negative/NaN invvar (naming the sample and band) or a missing
        or non-positive gain.
    """
    a = np.asarray(arc, dtype=np.float64)
    iv = np.asarray(invvar, dtype=np.float64)
    if a.ndim != 4:
        msg = f"arc must have shape (n, nband, H, W), got {a.shape}"
        raise ValueError(msg)
    if iv.shape != a.shape:
        msg = f"invvar shape {iv.shape} does not match arc shape {a.shape}"
        raise ValueError(msg)
    k = np.asarray(keys)
    if k.shape != (a.shape[0],):
        msg = f"keys must have shape ({a.shape[0]},), got {k.shape}"
        raise ValueError(msg)
    k = k.astype(np.uint64)
    bad = ~(iv >= 0)
    if np.any(bad):
        i, b = (int(v) for v in np.argwhere(bad)[0][:2])
        msg = f"invvar has negative or NaN values (sample index {i}, band index {b})"
        raise ValueError(msg)
    if not np.all(np.isfinite(a)):
        i, b = (int(v) for v in np.argwhere(~np.isfinite(a))[0][:2])
        msg = f"arc has non-finite values (sample index {i}, band index {b})"
        raise ValueError(msg)
    if poisson:
        if gain is None:
            msg = "gain (electrons per nanomaggy) is required when poisson=True"
            raise ValueError(msg)
        g = np.broadcast_to(np.asarray(gain, dtype=np.float64), a.shape[:2]).copy()
        if not np.all(np.isfinite(g) & (g > 0)):
            msg = f"gain must be finite and > 0, got {gain!r}"
            raise ValueError(msg)
    else:
        g = np.ones(a.shape[:2])
    out = np.empty(a.shape, dtype=np.float32)
    _add_noise(a, iv, k, bool(sky), bool(poisson), g, out)
    return out


__all__ = ["POISSON_SALT", "add_noise"]

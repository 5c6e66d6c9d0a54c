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
def _k0_bound(lam):
    """A lower bound of the computed ``exp(-lam)`` for ``lam > 0``: ``(1 - lam)(1 - 1e-15)``.

    ``1 - lam < exp(-lam)``; the two roundings here and the factor keep the bound below
    ``exp(-lam) (1 - 7e-16)``, under any ``exp`` accurate to 1 ulp (2.2e-16 relative), so
    ``u <= _k0_bound(lam)`` implies ``u <= exp(-lam)``: the inversion's ``k = 0``.
    """
    return (1.0 - lam) * (1.0 - 1e-15)


@jit
def _shot(lam, gain, key_p, c):
    """Shot-noise term, nanomaggies, of ``lam > 0`` electrons at ``gain`` electrons per
    nanomaggy, for pixel counter ``c`` on the Poisson stream ``key_p``: inversion below
    ``_POISSON_GAUSS_LAMBDA``, Gaussian above."""
    if lam < _POISSON_GAUSS_LAMBDA:
        u = uniform(key_p, c)
        # u below a rigorous lower bound of fl(exp(-lam)): the inversion returns 0 without
        # evaluating exp (same k)
        k = 0 if u <= _k0_bound(lam) else _poisson_inv(lam, u)
        return (k - lam) / gain
    return np.sqrt(lam) * normal(key_p, c) / gain


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
                            val += _shot(lam, g, key_p, c)
                    out[i, b, y, x] = val


@jit
def _first_bad(arc, invvar, rows):
    """``(sample, band, code)`` of the first bad pixel (code 1: invvar < 0 or NaN; 2: arc not
    finite), or ``(-1, -1, 0)``; ``invvar`` is indexed by ``rows[i]``."""
    n, nb, h, w = arc.shape
    for i in range(n):
        r = rows[i]
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    if not invvar[r, b, y, x] >= 0.0:
                        return i, b, 1
                    if not np.isfinite(arc[i, b, y, x]):
                        return i, b, 2
    return -1, -1, 0


@jit
def _add_light_into(image, rows, arc, invvar, keys, poisson, gain):
    n, nb, h, w = arc.shape
    for i in range(n):
        r = rows[i]
        key_p = splitmix64(keys[i] ^ POISSON_SALT)
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    v = np.float64(arc[i, b, y, x])
                    val = v
                    if poisson and invvar[r, b, y, x] > 0.0:
                        lam = max(v, 0.0) * gain
                        if lam > 0.0:
                            val += _shot(lam, gain, key_p, np.uint64((b * h + y) * w + x))
                    light = np.float32(val)
                    if light != 0.0:
                        image[r, b, y, x] = image[r, b, y, x] + light


def add_light_into(image, rows, arc, invvar, keys, *, poisson, gain):
    """Add injected light, with its shot noise, into host images in place (no sky term).

    For output row ``rows[i]``: ``image[rows[i]] += float32(noisy)`` wherever the float32
    noisy light is non-zero, with ``noisy = arc[i]`` plus (``poisson``) the shot noise of
    :func:`add_noise` with ``sky=False`` and the same keys, counters and gain -- so the result
    is bit for bit ``image[rows] + add_noise(arc, invvar[rows], keys, poisson=poisson,
    gain=gain, sky=False)`` where that is non-zero, and zero light leaves a host untouched.
    One pass over the pixels, no temporaries (the stage's hot path).

    Parameters
    ----------
    image : numpy.ndarray
        float32 ``(N, nband, H, W)`` host images, nanomaggies; modified in place.
    rows : array_like of int
        ``(n,)`` row of ``image`` / ``invvar`` for each arc.
    arc : numpy.ndarray
        float32 ``(n, nband, H, W)`` noise-free injected flux, nanomaggies per pixel.
    invvar : numpy.ndarray
        float32 ``(N, nband, H, W)`` inverse variance, nanomaggies^-2; pixels with ``0`` get
        the arc noise-free. Negative or NaN values are an error.
    keys : array_like of uint64
        ``(n,)`` per-arc keys (the Poisson stream is derived as in :func:`add_noise`).
    poisson : bool
        Add the shot noise of the injected light.
    gain : float
        Electrons per nanomaggy (> 0; used when ``poisson``).

    Raises
    ------
    ValueError
        On shape or dtype mismatches, negative/NaN invvar or non-finite arc values (naming the
        arc index and band) or a non-positive gain.
    """
    rows = np.asarray(rows, dtype=np.int64)
    k = np.asarray(keys).astype(np.uint64)
    for name, a in (("image", image), ("arc", arc), ("invvar", invvar)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 4):
            msg = f"{name} must be a float32 array of shape (n, nband, H, W)"
            raise ValueError(msg)
    if invvar.shape != image.shape or arc.shape[1:] != image.shape[1:]:
        msg = f"shapes do not match: image {image.shape}, invvar {invvar.shape}, arc {arc.shape}"
        raise ValueError(msg)
    if rows.shape != (arc.shape[0],) or k.shape != rows.shape:
        msg = f"rows and keys must have shape ({arc.shape[0]},), got {rows.shape}, {k.shape}"
        raise ValueError(msg)
    if rows.size and (rows.min() < 0 or rows.max() >= image.shape[0]):
        msg = f"rows must lie in [0, {image.shape[0]})"
        raise ValueError(msg)
    g = float(gain) if gain is not None else 1.0
    if poisson and not (np.isfinite(g) and g > 0):
        msg = f"gain must be finite and > 0, got {gain!r}"
        raise ValueError(msg)
    i, b, code = _first_bad(arc, invvar, rows)
    if code:
        what = "invvar has negative or NaN values" if code == 1 else "arc has non-finite values"
        msg = f"{what} (sample index {i}, band index {b})"
        raise ValueError(msg)
    _add_light_into(image, rows, arc, invvar, k, bool(poisson), g)


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


__all__ = ["POISSON_SALT", "add_light_into", "add_noise"]

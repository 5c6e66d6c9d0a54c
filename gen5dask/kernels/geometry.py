"""Stamp geometry and small shared numba helpers for the pixel kernels.

Conventions (DESIGN §4): the object centre is pixel ``(H // 2, W // 2)``; the radius of pixel
``(y, x)`` is ``r = sqrt((y - H//2)**2 + (x - W//2)**2)`` in pixels, computed in float64. Every
"inside radius R" set in gen5dask is ``r < R`` and every annulus is ``r_in <= r < r_out``.

The kernels share one trick: sort the flat pixel indices of an ``(H, W)`` stamp by radius once
(:func:`radial_order`, cached per shape). Then a disk ``r < R`` is a *prefix* of that order, the
outside ``r >= R`` a suffix and an annulus a contiguous slice, so per-sample work needs no masks,
no index lists and no allocation: only two integer bounds from :func:`count_inside`.

The numba helpers :func:`select_kth`, :func:`median_of` and :func:`robust_loc_scale` compute
exact order statistics in a caller-provided scratch buffer (quickselect), so kernels can take
medians and MADs without allocating per sample.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from gen5dask.kernels._jit import jit

#: Ratio of the standard deviation to the median absolute deviation for a Gaussian.
MAD_TO_SIGMA = 1.4826


def _check_shape(H: int, W: int) -> tuple[int, int]:
    H, W = int(H), int(W)
    if H < 1 or W < 1:
        msg = f"stamp shape must be positive, got (H, W) = ({H}, {W})"
        raise ValueError(msg)
    return H, W


def radius_grid(H: int, W: int) -> np.ndarray:
    """Distance of every pixel from the stamp centre ``(H // 2, W // 2)``.

    Parameters
    ----------
    H, W : int
        Stamp height (rows, y) and width (columns, x), pixels.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``, radius in pixels.
    """
    H, W = _check_shape(H, W)
    dy = np.arange(H, dtype=np.int64) - H // 2
    dx = np.arange(W, dtype=np.int64) - W // 2
    r2 = dy[:, None] ** 2 + dx[None, :] ** 2
    return np.sqrt(r2.astype(np.float64))


def disk_mask(H: int, W: int, radius: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of pixels with ``r < radius`` (radius in pixels)."""
    return radius_grid(H, W) < float(radius)


def annulus_mask(H: int, W: int, r_in: float, r_out: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of pixels with ``r_in <= r < r_out`` (radii in pixels)."""
    r = radius_grid(H, W)
    return (r >= float(r_in)) & (r < float(r_out))


class RadialOrder(NamedTuple):
    """Flat pixel indices of an ``(H, W)`` stamp sorted by radius (see :func:`radial_order`).

    Attributes
    ----------
    order : numpy.ndarray
        int64 ``(H*W,)``: flat (row-major) pixel indices, by increasing radius, ties broken by
        flat index (a deterministic, platform-independent order).
    r_sorted : numpy.ndarray
        float64 ``(H*W,)``: radius in pixels of ``order[k]``, non-decreasing.
    """

    order: np.ndarray
    r_sorted: np.ndarray


@functools.lru_cache(maxsize=64)
def radial_order(H: int, W: int) -> RadialOrder:
    """Pixels of an ``(H, W)`` stamp sorted by radius from the centre; cached per shape.

    The pixels with ``r < R`` are exactly ``order[:count_inside(r_sorted, R)]``. The returned
    arrays are read-only (they are shared by every caller).

    Parameters
    ----------
    H, W : int
        Stamp height and width, pixels.

    Returns
    -------
    RadialOrder
        ``(order, r_sorted)``.
    """
    H, W = _check_shape(H, W)
    r = radius_grid(H, W).ravel()
    order = np.argsort(r, kind="stable").astype(np.int64)
    r_sorted = r[order]
    order.setflags(write=False)
    r_sorted.setflags(write=False)
    return RadialOrder(order, r_sorted)


@jit
def count_inside(r_sorted, radius):
    """Number of entries of the sorted array ``r_sorted`` strictly below ``radius``.

    Binary search (``numpy.searchsorted(..., side="left")``). With ``r_sorted`` from
    :func:`radial_order` it is the number of pixels with ``r < radius``; a NaN radius gives 0.
    """
    lo = 0
    hi = r_sorted.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if r_sorted[mid] < radius:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_inside_many(r_sorted: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Vectorised :func:`count_inside` for an array of radii (pixels); returns int64."""
    return np.searchsorted(r_sorted, np.asarray(radii, dtype=np.float64), side="left").astype(
        np.int64
    )


@jit
def select_kth(buf, n, k):
    """k-th smallest (0-based) of ``buf[:n]``, by in-place quickselect; reorders ``buf[:n]``.

    Values must be finite (NaN breaks the ordering). Requires ``0 <= k < n``. On return every
    ``buf[:k]`` is ``<=`` the answer. The partition is branch-free (Lomuto with an unconditional
    swap), about 4x faster than a branching one on noise-like data where the branch predictor
    cannot help; a second pass gathers values equal to the pivot so runs of equal values (e.g.
    zero-filled regions) cannot make it quadratic.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        if hi - lo < 16:  # insertion sort of the short remaining range
            for i in range(lo + 1, hi + 1):
                v = buf[i]
                j = i - 1
                while j >= lo and buf[j] > v:
                    buf[j + 1] = buf[j]
                    j -= 1
                buf[j + 1] = v
            return buf[k]
        # median-of-three pivot, moved to buf[hi]
        mid = (lo + hi) // 2
        a = buf[lo]
        b = buf[mid]
        c = buf[hi]
        if (a <= b <= c) or (c <= b <= a):
            pidx = mid
        elif (b <= a <= c) or (c <= a <= b):
            pidx = lo
        else:
            pidx = hi
        pivot = buf[pidx]
        buf[pidx] = buf[hi]
        buf[hi] = pivot
        # [lo, lt) < pivot <= [lt, i)
        lt = lo
        for i in range(lo, hi):
            v = buf[i]
            buf[i] = buf[lt]
            buf[lt] = v
            lt += v < pivot
        if k < lt:
            hi = lt - 1
            continue
        # [lt, hi] >= pivot: move the values equal to the pivot (buf[hi] among them) to the front
        eq = lt
        for i in range(lt, hi + 1):
            v = buf[i]
            buf[i] = buf[eq]
            buf[eq] = v
            eq += v == pivot
        if k < eq:
            return pivot
        lo = eq
    return buf[k]


@jit
def median_of(buf, n):
    """Median of ``buf[:n]`` (mean of the two middle values for even ``n``); NaN if ``n == 0``.

    Reorders ``buf[:n]`` in place; values must be finite.
    """
    if n <= 0:
        return np.nan
    k = n // 2
    upper = select_kth(buf, n, k)
    if n % 2 == 1:
        return upper
    lower = buf[0]
    for i in range(1, k):
        if buf[i] > lower:
            lower = buf[i]
    return 0.5 * (lower + upper)


@jit
def robust_loc_scale(buf, n):
    """Median, ``1.4826 * MAD`` and standard deviation of ``buf[:n]`` (float64 scratch).

    Overwrites ``buf[:n]``. Returns ``(median, mad_sigma, std)``; all NaN if ``n == 0``.
    The standard deviation (population, ``ddof=0``) is offered as the fallback scale when the MAD
    is zero (e.g. more than half of the pixels share one value).
    """
    if n <= 0:
        return np.nan, np.nan, np.nan
    s = 0.0
    for i in range(n):
        s += buf[i]
    mean = s / n
    ss = 0.0
    for i in range(n):
        d = buf[i] - mean
        ss += d * d
    std = np.sqrt(ss / n)
    med = median_of(buf, n)
    for i in range(n):
        buf[i] = abs(buf[i] - med)
    mad = median_of(buf, n)
    return med, MAD_TO_SIGMA * mad, std


@jit
def gather_finite(img_flat, order, start, stop, buf):
    """Copy the finite values of ``img_flat[order[start:stop]]`` into ``buf``; return the count."""
    n = 0
    for k in range(start, stop):
        v = img_flat[order[k]]
        if np.isfinite(v):
            buf[n] = v
            n += 1
    return n


def stack_2d(name: str, x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate a ``(..., H, W)`` real array; return a C-contiguous ``(m, H, W)`` view and lead."""
    x = np.asarray(x)
    if x.ndim < 2:
        msg = f"{name} must have shape (..., H, W), got {x.shape}"
        raise ValueError(msg)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        msg = f"{name} must be a real array, got dtype {x.dtype}"
        raise ValueError(msg)
    lead = x.shape[:-2]
    H, W = x.shape[-2:]
    return np.ascontiguousarray(x).reshape(-1, H, W), lead



__all__ = [
    "stack_2d",
    "MAD_TO_SIGMA",
    "RadialOrder",
    "annulus_mask",
    "count_inside",
    "count_inside_many",
    "disk_mask",
    "gather_finite",
    "median_of",
    "radial_order",
    "radius_grid",
    "robust_loc_scale",
    "select_kth",
]

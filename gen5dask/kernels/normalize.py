"""The one stamp normalisation shared by training and scoring (DESIGN §4).

Per sample and band: subtract the median and divide by ``1.4826 * MAD`` of the pixels with
``r >= r_outer`` (pixels from the centre ``(H//2, W//2)``), then clip to ``[-clip, +clip]``.
Training (:mod:`gen5dask.train`) and scoring both use this module; never re-implement it
elsewhere, or the network sees differently scaled inputs at scoring time.

It is split in two steps so the expensive one can be done once per sample:

* :func:`norm_stats` — the per-plane location and scale (two selections over ~3,300 outer
  pixels of a 64x64 stamp, ~35 us per plane). They depend only on the raw flux, so the training
  loader computes them once per store and caches them (:mod:`gen5dask.train.normstats`);
* :func:`apply_norm` — ``clip((x - loc) / scale)``, one pass over the pixels. Its kernel also
  writes the 8 D4 symmetries about the centre pixel and a channels-last layout
  (:func:`apply_norm_into`), so the training loader normalises, augments and lays out a batch
  in one pass, with exactly the per-pixel arithmetic of scoring.

:func:`normalize_stamps` is ``apply_norm(images, norm_stats(images))``. The statistics are
stored as float32 (``loc``, ``scale``); the arithmetic is float64: ``z = (x - loc) * (1 /
scale)``, clipped, rounded to float32. Training's view of a stamp is therefore bit-identical
to scoring's whether the statistics were cached or computed on the spot.

Degenerate cases never produce NaN or inf:

* scale: ``1.4826 * MAD`` if it is finite and > 0, else the standard deviation of the same pixels,
  else 1 (a constant or empty outer region); a scale that rounds to 0 or inf in float32 is 1;
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

#: D4 op codes: bit 0 flips x, bit 1 flips y, bit 2 transposes (applied last); 0 = identity
D4_CODES = 8


@jit
def _plane_stats(img, order, o_lo, buf):
    """(loc, scale) of one flattened plane, as float32 values (see module docstring)."""
    npix = img.shape[0]
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
    loc32 = np.float32(loc)
    scale32 = np.float32(scale)
    if not (scale32 > 0.0 and np.isfinite(scale32)):
        scale32 = np.float32(1.0)
    if not np.isfinite(loc32):
        loc32 = np.float32(0.0)
    return loc32, scale32


@jit
def _stats_kernel(flat, order, o_lo, buf, out):
    for i in range(flat.shape[0]):
        loc, scale = _plane_stats(flat[i], order, o_lo, buf)
        out[i, 0] = loc
        out[i, 1] = scale


@jit
def _norm_plane(s, d, loc, inv, clip):
    """``d[p] = float32(clip((s[p] - loc) * inv))``, 0 where ``s[p]`` is not finite.

    The one per-pixel normalisation (float64 arithmetic; written branch-free so it vectorises).
    """
    for p in range(s.shape[0]):
        v = np.float64(s[p])
        z = (v - loc) * inv
        z = min(max(z, -clip), clip)
        d[p] = np.float32(z) if v - v == 0.0 else np.float32(0.0)


@jit
def _apply_kernel(src, src_rows, stats, codes, perms, clip, dst, dst_rows, channels_last):
    """dst[dst_rows[k]] = D4[codes[k]](normalised src[src_rows[k]]) for every k.

    ``src`` (N, nb, H*W) any real dtype; ``stats`` (k, nb, 2) float32; ``perms`` (8, H*W)
    source pixel of each output pixel per D4 code; ``dst`` float32 (M, nb, H*W) or, with
    ``channels_last``, (M, H*W, nb). Normalise into a scratch plane (contiguous, vectorised),
    then one gather copy into place.
    """
    nb = src.shape[1]
    npix = src.shape[2]
    tmp = np.empty((nb, npix), np.float32)
    for k in range(src_rows.shape[0]):
        i = src_rows[k]
        o = dst_rows[k]
        c = codes[k]
        perm = perms[c]
        for b in range(nb):
            loc = np.float64(stats[k, b, 0])
            inv = 1.0 / np.float64(stats[k, b, 1])
            if c == 0 and not channels_last:
                _norm_plane(src[i, b], dst[o, b], loc, inv, clip)
            else:
                _norm_plane(src[i, b], tmp[b], loc, inv, clip)
        if channels_last:
            d = dst[o]
            if nb == 3:  # grz: one pass writing whole pixels
                t0 = tmp[0]
                t1 = tmp[1]
                t2 = tmp[2]
                for p in range(npix):
                    q = perm[p]
                    d[p, 0] = t0[q]
                    d[p, 1] = t1[q]
                    d[p, 2] = t2[q]
            else:
                for b in range(nb):
                    t = tmp[b]
                    for p in range(npix):
                        d[p, b] = t[perm[p]]
        elif c != 0:
            for b in range(nb):
                d = dst[o, b]
                t = tmp[b]
                for p in range(npix):
                    d[p] = t[perm[p]]


_PERMS: dict[tuple[int, int], np.ndarray] = {}


def d4_permutations(H: int, W: int) -> np.ndarray:
    """int64 ``(8, H*W)``: for each D4 op code, the flat source pixel of every output pixel.

    Code ``c``: bit 0 flips x, bit 1 flips y, bit 2 transposes (applied last), about the centre
    pixel ``(H//2, W//2)`` (the row/column that wraps round for even sizes is the far border):
    output ``(y, x)`` reads ``(yy, xx)`` with ``yy, xx = (x, y) if transpose else (y, x)``, then
    ``yy -> (2 (H//2) - yy) mod H`` (flip y) and ``xx -> (2 (W//2) - xx) mod W`` (flip x).
    Transposing codes (4..7) are only defined for ``H == W`` (their rows are -1 otherwise).
    """
    key = (int(H), int(W))
    if key not in _PERMS:
        y, x = np.indices(key)
        out = np.full((8, H * W), -1, dtype=np.int64)
        for c in range(8):
            tr = bool(c & 4)
            if tr and H != W:
                continue
            yy, xx = (x, y) if tr else (y, x)
            if c & 2:
                yy = (2 * (H // 2) - yy) % H
            if c & 1:
                xx = (2 * (W // 2) - xx) % W
            out[c] = (yy * W + xx).ravel()
        out.setflags(write=False)
        _PERMS[key] = out
    return _PERMS[key]


def _outer_start(H: int, W: int, r_outer: float) -> tuple[np.ndarray, int]:
    r_outer = float(r_outer)
    if not (np.isfinite(r_outer) and r_outer >= 0.0):
        msg = f"r_outer must be finite and >= 0 (pixels), got {r_outer!r}"
        raise ValueError(msg)
    order, r_sorted = radial_order(H, W)
    o_lo = count_inside(r_sorted, r_outer)
    if o_lo >= H * W:
        msg = f"normalize_stamps: no pixel with r >= r_outer={r_outer} in a {H}x{W} stamp"
        raise ValueError(msg)
    return order, int(o_lo)


def _clip_value(clip: float | None) -> float:
    clip_v = np.inf if clip is None else float(clip)
    if not clip_v > 0.0:  # also rejects NaN
        msg = f"clip must be > 0 (or None for no clipping), got {clip!r}"
        raise ValueError(msg)
    return clip_v


def norm_stats(images: np.ndarray, *, r_outer: float = 16.0) -> np.ndarray:
    """Normalisation statistics of every stamp plane: outer-region median and robust scale.

    Parameters
    ----------
    images : numpy.ndarray
        ``(..., H, W)`` real array (flux, nanomaggies); each ``(H, W)`` plane on its own.
    r_outer : float
        Inner radius of the statistics region, pixels (pixels with ``r >= r_outer``). Must
        leave at least one pixel in the stamp.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 2)``: ``[..., 0]`` location (median, flux units) and ``[..., 1]`` scale
        (``1.4826 * MAD``, flux units, finite and > 0); see the module docstring for the
        degenerate cases.
    """
    x = np.asarray(images)
    stack_2d("images", x)
    H, W = x.shape[-2:]
    order, o_lo = _outer_start(H, W, r_outer)
    npix = H * W
    flat = np.ascontiguousarray(x).reshape(-1, npix)
    out = np.empty((flat.shape[0], 2), dtype=np.float32)
    if flat.shape[0]:
        _stats_kernel(flat, order, o_lo, np.empty(npix, dtype=np.float64), out)
    return out.reshape(x.shape[:-2] + (2,))


def outer_has_finite(images: np.ndarray, *, r_outer: float = 16.0) -> np.ndarray:
    """Whether each plane has a finite pixel with ``r >= r_outer`` (bool, shape ``(...)``).

    Where it does, :func:`norm_stats` depends only on the pixels with ``r >= r_outer``, so
    changing pixels inside that radius (the centre mask) leaves the statistics unchanged.
    """
    x = np.asarray(images)
    stack_2d("images", x)
    H, W = x.shape[-2:]
    order, o_lo = _outer_start(H, W, r_outer)
    flat = np.ascontiguousarray(x).reshape(-1, H * W)
    outer = flat[:, order[o_lo:]]
    return np.isfinite(outer).any(axis=1).reshape(x.shape[:-2])


def _check_stats(stats: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    s = np.asarray(stats)
    if s.shape != shape or s.dtype != np.float32:
        msg = f"stats must be float32 of shape {shape} (from norm_stats), got {s.dtype} {s.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(s)


def apply_norm(
    images: np.ndarray,
    stats: np.ndarray,
    *,
    clip: float | None = 10.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``clip((images - loc) / scale)`` per plane with :func:`norm_stats` statistics.

    Parameters
    ----------
    images : numpy.ndarray
        ``(..., H, W)`` real array.
    stats : numpy.ndarray
        float32 ``(..., 2)`` from :func:`norm_stats` (of these images, or cached).
    clip : float or None
        Output is clipped to ``[-clip, +clip]`` (> 0; ``inf`` or None: no clip).
    out : numpy.ndarray, optional
        float32 C-contiguous array of the images' shape for the result (may be ``images``).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``, in units of the outer-region noise; non-finite
        input pixels are 0.
    """
    x = np.asarray(images)
    stack_2d("images", x)
    clip_v = _clip_value(clip)
    H, W = x.shape[-2:]
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
    m = int(np.prod(x.shape[:-2], dtype=np.int64))
    s = _check_stats(stats, x.shape[:-2] + (2,)).reshape(m, 1, 2)
    if m == 0 or H * W == 0:
        return out
    src = np.ascontiguousarray(x).reshape(m, 1, H * W)
    rows = np.arange(m, dtype=np.int64)
    _apply_kernel(src, rows, s, np.zeros(m, np.int64), d4_permutations(H, W), clip_v,
                  out.reshape(m, 1, H * W), rows, False)
    return out


def apply_norm_into(
    src: np.ndarray,
    src_rows: np.ndarray,
    stats: np.ndarray,
    out: np.ndarray,
    out_rows: np.ndarray,
    *,
    codes: np.ndarray | None = None,
    clip: float | None = 10.0,
    channels_last: bool = False,
) -> np.ndarray:
    """Normalise rows of a stamp array into rows of another, with optional D4 symmetries.

    ``out[out_rows[k]] = D4[codes[k]](apply_norm(src[src_rows[k]], stats[k]))`` — the per-pixel
    arithmetic of :func:`apply_norm` (bit-identical for code 0), D4 as
    :func:`gen5dask.train.augment.d4_transform` (symmetries about pixel ``(H//2, W//2)``).

    Parameters
    ----------
    src : numpy.ndarray
        ``(N, nband, H, W)`` real array (flux).
    src_rows, out_rows : numpy.ndarray
        int ``(k,)`` rows of ``src`` to read and of ``out`` to write.
    stats : numpy.ndarray
        float32 ``(k, nband, 2)`` statistics of the ``src`` rows read.
    out : numpy.ndarray
        float32 C-contiguous ``(M, nband, H, W)``, or ``(M, H, W, nband)`` with
        ``channels_last`` (the memory layout of a channels-last NCHW torch tensor).
    codes : numpy.ndarray, optional
        int ``(k,)`` D4 op codes 0..7 (bit 0 flip x, bit 1 flip y, bit 2 transpose; needs
        ``H == W`` for codes >= 4). Default: identity.
    clip : float or None
        As in :func:`apply_norm`.
    channels_last : bool
        Layout of ``out``.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    src = np.asarray(src)
    if src.ndim != 4:
        msg = f"src must be (N, nband, H, W), got shape {src.shape}"
        raise ValueError(msg)
    n, nb, H, W = src.shape
    src_rows = np.ascontiguousarray(src_rows, dtype=np.int64)
    out_rows = np.ascontiguousarray(out_rows, dtype=np.int64)
    k = src_rows.shape[0]
    if src_rows.ndim != 1 or out_rows.shape != (k,):
        msg = f"src_rows and out_rows must be 1-D of the same length, got {src_rows.shape}, "
        msg += f"{out_rows.shape}"
        raise ValueError(msg)
    want = (H, W, nb) if channels_last else (nb, H, W)
    if (not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape[1:] != want
            or out.dtype != np.float32 or not out.flags.c_contiguous
            or not out.flags.writeable):
        msg = f"out must be a writeable C-contiguous float32 (M, {', '.join(map(str, want))})"
        raise ValueError(msg)
    if k and (src_rows.min() < 0 or src_rows.max() >= n or out_rows.min() < 0
              or out_rows.max() >= out.shape[0]):
        msg = f"rows out of range: src has {n} rows, out {out.shape[0]}"
        raise ValueError(msg)
    if codes is None:
        codes = np.zeros(k, np.int64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    if codes.shape != (k,) or (k and (codes.min() < 0 or codes.max() >= D4_CODES)):
        msg = f"codes must be ({k},) ints in 0..7"
        raise ValueError(msg)
    if k and H != W and (codes >= 4).any():
        msg = f"D4 transposes need square stamps, got {H}x{W}"
        raise ValueError(msg)
    s = _check_stats(stats, (k, nb, 2))
    if k:
        flat_src = np.ascontiguousarray(src).reshape(n, nb, H * W)
        m = out.shape[0]
        flat_out = out.reshape(m, H * W, nb) if channels_last else out.reshape(m, nb, H * W)
        _apply_kernel(flat_src, src_rows, s, codes, d4_permutations(H, W), _clip_value(clip),
                      flat_out, out_rows, bool(channels_last))
    return out


def normalize_stamps(
    images: np.ndarray,
    *,
    r_outer: float = 16.0,
    clip: float | None = 10.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Robustly standardise every stamp plane by its outer-region median and MAD.

    ``apply_norm(images, norm_stats(images, r_outer=r_outer), clip=clip, out=out)``.

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
    _clip_value(clip)
    stats = norm_stats(images, r_outer=r_outer)
    return apply_norm(images, stats, clip=clip, out=out)


__all__ = [
    "D4_CODES",
    "apply_norm",
    "apply_norm_into",
    "d4_permutations",
    "norm_stats",
    "normalize_stamps",
    "outer_has_finite",
]

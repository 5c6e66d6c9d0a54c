"""Per-sample normalisation statistics, computed once per store and cached on disk.

The network input is ``apply_norm(image, norm_stats(image))``
(:mod:`gen5dask.kernels.normalize`). The statistics (outer-region median and robust scale per
band, ~110 us per 64x64 grz stamp) depend only on the stored flux, so re-computing them every
epoch was most of the loader's work. :func:`store_norm_stats` computes them once per
(store, ``r_outer``) — chunk by chunk, in threads (the kernel releases the GIL) — and keeps
them as ``<cache_dir>/<store>-<key>.npy``: float32 ``(n_samples, nband, 2)`` (location, scale),
24 bytes per grz sample. ``key`` hashes the store's fingerprint (path, config hash, size,
creation time), ``r_outer``, the lens-light model and :data:`STATS_VERSION`, so a rewritten
store or another radius gets a new file.

With a lens-light model (``train.lens_light``, :mod:`gen5dask.kernels.lenslight`) the network
sees the residual ``image - profile``: the statistics are those of the residual, and each
plane's float32 radial profile (``nbins`` medians, 35 for a 48x48 stamp) is cached after them,
``(n_samples, nband, 2 + nbins)``, so the loader subtracts it without recomputing the medians
(bit-identical to computing them on the spot).

A plane with no finite pixel at ``r >= r_outer`` gets location NaN: its statistics fall back to
every finite pixel of the plane, which the centre mask changes, so the loader recomputes them
after masking (see :class:`gen5dask.train.augment.TrainTransform`). Everywhere else the
statistics of the masked stamp equal the cached ones as long as the mask radius is
``<= r_outer`` (the mask only rewrites pixels with ``r < radius``), so training sees exactly
the input scoring computes from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gen5dask.kernels.lenslight import lens_light_profile, n_profile_bins, subtract_profile
from gen5dask.kernels.normalize import norm_stats, outer_has_finite
from gen5dask.store import chunk_bounds, fingerprint, read_chunk, store_geometry

#: bump when the statistics' definition changes (invalidates every cache file)
STATS_VERSION = 1


def chunk_norm_stats(images: np.ndarray, *, r_outer: float, lens_light: str = "none"
                     ) -> np.ndarray:
    """float32 ``(n, nband, 2)`` statistics of flux stamps, location NaN where the plane has no
    finite pixel at ``r >= r_outer`` (the fallback the centre mask can change); with a
    lens-light model, the statistics of the residual followed by the profiles,
    ``(n, nband, 2 + nbins)``."""
    prof = None
    if lens_light != "none":
        prof = lens_light_profile(images, lens_light)
        images = subtract_profile(images, prof)
    stats = norm_stats(images, r_outer=r_outer)
    stats[..., 0][~outer_has_finite(images, r_outer=r_outer)] = np.nan
    return stats if prof is None else np.concatenate([stats, prof], axis=-1)


def cache_path(path: str | Path, cache_dir: str | Path, *, r_outer: float,
               lens_light: str = "none") -> Path:
    """File of the cached statistics of store ``path`` for ``r_outer`` (pixels) and the
    lens-light model."""
    fp = fingerprint(path)
    key = {"fp": fp, "r_outer": float(r_outer), "v": STATS_VERSION}
    if lens_light != "none":
        key["lens_light"] = str(lens_light)
    blob = json.dumps(key, sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(path).name.removesuffix('.zarr')}-{key}.npy"


def _width(geom: dict, lens_light: str) -> int:
    return 2 + n_profile_bins(lens_light, geom["stamp_size"], geom["stamp_size"])


def compute_store_stats(path: str | Path, *, r_outer: float, threads: int = 1,
                        lens_light: str = "none") -> np.ndarray:
    """:func:`chunk_norm_stats` of every sample of a store, float32 ``(n, nband, 2 [+ nbins])``."""
    geom = store_geometry(path)
    n, cs = geom["n_samples"], geom["chunk_size"]
    out = np.empty((n, len(geom["bands"]), _width(geom, lens_light)), np.float32)
    bounds = chunk_bounds(n, cs)

    def one(i: int) -> None:
        a, b = bounds[i]
        out[a:b] = chunk_norm_stats(read_chunk(path, i, ["image"])["image"], r_outer=r_outer,
                                    lens_light=lens_light)

    if threads > 1 and len(bounds) > 1:
        with ThreadPoolExecutor(max_workers=int(threads)) as ex:
            list(ex.map(one, range(len(bounds))))
    else:
        for i in range(len(bounds)):
            one(i)
    return out


def store_norm_stats(
    path: str | Path,
    *,
    r_outer: float,
    cache_dir: str | Path | None = None,
    threads: int = 1,
    lens_light: str = "none",
) -> np.ndarray:
    """Normalisation statistics of every sample of a store, from the cache when present.

    Parameters
    ----------
    path : str or Path
        Contract store.
    r_outer : float
        Statistics radius, pixels (``train.norm_r_outer``).
    cache_dir : str or Path, optional
        Directory of the cache files (None: compute, do not cache).
    threads : int
        Threads computing chunks in parallel.
    lens_light : {"none", "azimuthal_median"}
        Lens-light model of the network input (``train.lens_light``).

    Returns
    -------
    numpy.ndarray
        float32 ``(n_samples, nband, 2)`` in store row order, ``(n_samples, nband, 2 + nbins)``
        with a lens-light model (see module docstring).
    """
    if cache_dir is None:
        return compute_store_stats(path, r_outer=r_outer, threads=threads, lens_light=lens_light)
    f = cache_path(path, cache_dir, r_outer=r_outer, lens_light=lens_light)
    geom = store_geometry(path)
    want = (geom["n_samples"], len(geom["bands"]), _width(geom, lens_light))
    if f.exists():
        try:
            arr = np.load(f, allow_pickle=False)
            if arr.shape == want and arr.dtype == np.float32:
                return arr
        except (OSError, ValueError):
            pass  # unreadable or truncated: recompute
    arr = compute_store_stats(path, r_outer=r_outer, threads=threads, lens_light=lens_light)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    os.replace(tmp, f)
    return arr


def split_cached(stats: np.ndarray | None, lens_light: str) -> tuple[np.ndarray | None,
                                                                    np.ndarray | None]:
    """Split a selection's cached per-sample array into normalisation statistics ``(k, nband,
    2)`` and lens-light profiles ``(k, nband, nbins)`` (None when nothing is cached).

    :func:`store_norm_stats` holds both, profiles after the statistics, when ``lens_light`` is
    not ``"none"``; statistics cached without profiles describe the raw stamps, so using them
    under a lens-light model is refused (and the reverse).
    """
    if stats is None:
        return None, None
    if lens_light == "none":
        if stats.shape[-1] != 2:
            msg = (f"cached normalisation statistics carry lens-light profiles (shape "
                   f"{stats.shape}) but lens_light='none'")
            raise ValueError(msg)
        return stats, None
    if stats.shape[-1] <= 2:
        msg = (f"cached normalisation statistics have no lens-light profiles (shape "
               f"{stats.shape}) but lens_light={lens_light!r}: compute them with "
               "store_norm_stats(..., lens_light=...)")
        raise ValueError(msg)
    return stats[..., :2], stats[..., 2:]


__all__ = [
    "STATS_VERSION",
    "cache_path",
    "chunk_norm_stats",
    "compute_store_stats",
    "split_cached",
    "store_norm_stats",
]

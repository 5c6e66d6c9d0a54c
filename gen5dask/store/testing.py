"""Synthetic contract data for tests and docs: a chunk of plausible samples."""

from __future__ import annotations

import numpy as np

from gen5dask.store.schema import ALL_VARIABLES, SAMPLE, TRUTH_VARS


def fake_chunk(
    ids: np.ndarray,
    *,
    variables: list[str],
    bands: tuple[str, ...] = ("g", "r", "z"),
    stamp_size: int = 16,
    seed: int = 0,
    kind: str = "host",
) -> dict[str, np.ndarray]:
    """Random but valid values for every variable of a chunk (seeded by ``seed`` and ids)."""
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng([seed, int(ids[0]) if ids.size else 0])
    n, nb, s = ids.size, len(bands), stamp_size
    out: dict[str, np.ndarray] = {SAMPLE: ids}
    truth = {t for t, _, _ in TRUTH_VARS}
    for name in variables:
        var = ALL_VARIABLES[name]
        if name == "image":
            out[name] = rng.normal(0, 0.01, (n, nb, s, s)).astype("f4")
        elif name in ("invvar",):
            out[name] = np.full((n, nb, s, s), 1e4, dtype="f4")
        elif name == "arc":
            out[name] = np.zeros((n, nb, s, s), dtype="f4")
        elif name == "maskbits":
            out[name] = np.zeros((n, s, s), dtype="i4")
        elif name == "ra":
            out[name] = rng.uniform(150, 151, n)
        elif name == "dec":
            out[name] = rng.uniform(1, 2, n)
        elif name == "brickname":
            out[name] = np.full(n, "1502p015")
        elif name == "psfsize":
            out[name] = rng.uniform(1.0, 1.5, (n, nb)).astype("f4")
        elif name == "psfdepth":
            out[name] = rng.uniform(23.5, 25.0, (n, nb)).astype("f4")
        elif name == "kind":
            out[name] = np.full(n, kind)
        elif name == "label":
            out[name] = np.full(n, 1 if kind in ("injection", "anchor", "stress") else 0, "i1")
        elif name == "region":
            out[name] = np.full(n, -1, "i4")
        elif name == "host_sample":
            out[name] = np.full(n, -1, "i8")
        elif var.legend is not None:
            out[name] = np.zeros(n, "i1")
        elif name in truth or var.dtype.startswith("f"):
            out[name] = np.full(n, np.nan, "f4")
        else:
            out[name] = np.zeros(n, var.dtype)
    return out


def synthetic_host_chunk(n: int, *, stamp_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` noisy LRG-like hosts (exponential profile, r 17-20.5 mag, LRG colours), grz.

    A quick stand-in for a host store in benchmarks: fixed per-band sky noise (sigma
    0.006 / 0.0075 / 0.02 nanomaggies per pixel), PSF sizes 1.0-1.6", kind ``host``.
    """
    from gen5dask.store.schema import REQUIRED, brickname_for

    rng = np.random.default_rng(seed)
    s = stamp_size
    d = fake_chunk(
        np.arange(n, dtype=np.int64), variables=[*REQUIRED, "host_mag_r"], stamp_size=s, seed=seed
    )
    sigma = np.array([0.006, 0.0075, 0.02], dtype=np.float32)
    y, x = np.mgrid[:s, :s] - s // 2
    mag = rng.uniform(17.0, 20.5, n)
    q = rng.uniform(0.6, 1.0, n)
    rr = np.sqrt(x[None] ** 2 * q[:, None, None] + y[None] ** 2 / q[:, None, None])
    prof = np.exp(-rr / 3.0)
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    colour = np.array([10 ** (-0.4 * 1.5), 1.0, 10 ** (0.4 * 0.9)])
    flux = 10 ** (-0.4 * (mag - 22.5))
    img = flux[:, None, None, None] * colour[None, :, None, None] * prof[:, None]
    img = img + rng.standard_normal((n, 3, s, s)) * sigma[None, :, None, None]
    d["image"] = img.astype(np.float32)
    d["invvar"] = np.broadcast_to((1.0 / sigma**2)[None, :, None, None], (n, 3, s, s)).astype(
        np.float32
    )
    d["host_mag_r"] = mag.astype(np.float32)
    d["psfsize"] = rng.uniform(1.0, 1.6, (n, 3)).astype(np.float32)
    d["kind"] = np.full(n, "host", dtype="U16")
    d["label"] = np.zeros(n, dtype=np.int8)
    d["ra"] = rng.uniform(0, 360, n)
    d["dec"] = np.degrees(np.arcsin(rng.uniform(-0.5, 0.9, n)))
    d["brickname"] = brickname_for(d["ra"], d["dec"])
    return d


def make_synthetic_host_store(
    path, n_hosts: int, *, stamp_size: int = 64, chunk_size: int = 256, stage: str = "ingest"
):
    """A host store of ``n_hosts`` built from one synthetic chunk repeated with fresh ids and
    positions (fast enough for 10^5-10^6 hosts in benchmarks)."""
    from gen5dask.store.schema import brickname_for
    from gen5dask.store.zarrstore import chunk_bounds, create_store, finalize_store, write_chunk

    tpl = synthetic_host_chunk(chunk_size, stamp_size=stamp_size)
    create_store(
        path,
        n_samples=n_hosts,
        stage=stage,
        config={"synthetic_hosts": n_hosts},
        seed=0,
        stamp_size=stamp_size,
        chunk_size=chunk_size,
        variables=["host_mag_r"],
        overwrite=True,
    )
    rng = np.random.default_rng(1)
    for i, (a, b) in enumerate(chunk_bounds(n_hosts, chunk_size)):
        d = {k: v[: b - a].copy() for k, v in tpl.items()}
        d["sample"] = np.arange(a, b, dtype=np.int64)
        d["ra"] = rng.uniform(0, 360, b - a)
        d["dec"] = np.degrees(np.arcsin(rng.uniform(-0.5, 0.9, b - a)))
        d["brickname"] = brickname_for(d["ra"], d["dec"])
        write_chunk(path, i, d)
    finalize_store(path)
    return path


__all__ = ["fake_chunk", "make_synthetic_host_store", "synthetic_host_chunk"]

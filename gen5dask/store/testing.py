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


__all__ = ["fake_chunk"]

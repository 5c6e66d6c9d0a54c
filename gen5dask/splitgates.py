"""The four split gates from numeric columns (no per-row strings), for catalogue-size stores.

:func:`split_gates_columns` returns the records of :func:`gen5dask.gates.split_gates` (tested
equal) from integer columns: the split as its store legend code (``SPLITS``: 0 = '' not
assigned, 1 train, 2 val, 3 test), the store as an index. Group-bys are sorts of integer keys;
the near-duplicate search runs on the distinct positions (:func:`gen5dask.regions.close_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen5dask import gates as G
from gen5dask.regions import close_pairs, unique_positions

_NAMES = ("split_regions_disjoint", "split_hosts_disjoint", "split_near_duplicates",
          "split_region_cap")


@dataclass
class SplitRows:
    """Every store's rows for the split gates: concatenated int/float columns.

    ``split`` is the ``SPLITS`` legend code (0 = not assigned, 1 train, 2 val, 3 test);
    ``is_host_store`` marks rows of the store whose ``sample`` ids ``host_sample`` refers to.
    """

    sample: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    host_sample: np.ndarray
    region: np.ndarray
    split: np.ndarray
    is_host_store: np.ndarray


def _distinct_pairs(key: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``(key, code)`` pairs (int64 keys of any range, small int codes)."""
    order = np.lexsort((code, key))
    k, c = key[order], code[order]
    new = np.ones(k.size, dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
    return k[new], c[new]


def _multi(keys_sorted: np.ndarray) -> tuple[np.ndarray, int]:
    """Keys occurring more than once in a sorted key array, and the number of distinct keys."""
    if keys_sorted.size == 0:
        return keys_sorted, 0
    new = np.ones(keys_sorted.size, dtype=bool)
    new[1:] = keys_sorted[1:] != keys_sorted[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.r_[starts, keys_sorted.size])
    return keys_sorted[starts[counts > 1]], int(starts.size)


def split_gates_columns(rows: SplitRows, *, dup_radius_arcsec: float, max_region_frac: float,
                        min_test_regions: int = 2) -> list[dict]:
    """The four split gates (see :func:`gen5dask.gates.split_gates`) from :class:`SplitRows`."""
    split = np.asarray(rows.split).astype(np.int64)
    assigned = split > 0
    if split.size == 0 or not assigned.any():
        return [G.gate(n, False, detail="no split assigned (run `gen5dask split`)")
                for n in _NAMES]
    region = np.asarray(rows.region, dtype=np.int64)
    out = []
    # 1. regions
    rk, _ = _distinct_pairs(region[assigned], split[assigned])
    leaky, _ = _multi(rk)
    unreg = int((region[assigned] < 0).sum())
    test_regions = int(np.unique(region[assigned & (split == 3)]).size)
    ok = leaky.size == 0 and unreg == 0 and test_regions >= min_test_regions
    out.append(G.gate(_NAMES[0], ok, value=int(leaky.size), threshold=0, detail={
        "regions_in_several_splits": [int(x) for x in leaky[:50]],
        "assigned_without_region": unreg, "n_test_regions": test_regions,
        "min_test_regions": min_test_regions, "n_unassigned_rows": int((~assigned).sum())}))
    # 2. hosts
    hs = np.asarray(rows.host_sample, dtype=np.int64)
    key = np.where(hs >= 0, hs, -1)
    is_host = np.asarray(rows.is_host_store, dtype=bool) & (hs < 0)
    key = np.where(is_host, np.asarray(rows.sample, dtype=np.int64), key)
    sel = (key >= 0) & assigned
    hk, _ = _distinct_pairs(key[sel], split[sel])
    bad_hosts, n_hosts = _multi(hk)
    del hk, key, sel
    out.append(G.gate(_NAMES[1], bad_hosts.size == 0, value=int(bad_hosts.size), threshold=0,
                      detail={"hosts_in_several_splits": [int(x) for x in bad_hosts[:50]],
                              "n_hosts": n_hosts}))
    # 3. near duplicates across splits
    upos, uinv = unique_positions(np.asarray(rows.ra)[assigned], np.asarray(rows.dec)[assigned])
    bit = np.asarray([0, 1, 2, 4], dtype=np.int64)[split[assigned]]
    bits = np.zeros(upos.shape[0], dtype=np.int64)
    np.bitwise_or.at(bits, uinv, bit)
    del uinv, bit
    n_pairs = int(np.count_nonzero(bits & (bits - 1)))  # more than one bit set
    examples = []
    if dup_radius_arcsec > 0 and upos.shape[0] > 1:
        pairs = close_pairs(upos[:, 0], upos[:, 1], dup_radius_arcsec)
        i1, i2 = pairs[:, 0], pairs[:, 1]
        keep = bits[i1] != bits[i2]
        n_pairs += int(keep.sum())
        examples = [[float(upos[a, 0]), float(upos[a, 1]), float(upos[b, 0]), float(upos[b, 1])]
                    for a, b in zip(i1[keep][:10], i2[keep][:10], strict=True)]
    out.append(G.gate(_NAMES[2], n_pairs == 0, value=n_pairs, threshold=dup_radius_arcsec,
                      detail={"pairs_across_splits": examples}))
    # 4. size cap
    sel = assigned & (region >= 0)
    regs, counts = np.unique(region[sel], return_counts=True)
    share = counts / max(int(assigned.sum()), 1)
    order = np.argsort(-counts, kind="stable")
    big = [(int(regs[i]), float(share[i])) for i in order if share[i] > max_region_frac]
    out.append(G.gate(_NAMES[3], not big, value=float(share.max()) if share.size else None,
                      threshold=max_region_frac,
                      detail={"regions_over_cap": {str(k): v for k, v in big},
                              "n_regions": int(regs.size)}))
    return out


__all__ = ["SplitRows", "split_gates_columns"]

"""The column-wise split gates and class statistics equal their pandas/string forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gen5dask.evaluate.stats import cliffs_delta, effect_size_summary
from gen5dask.gates import split_gates
from gen5dask.groupstats import (
    auc_by_ranks,
    class_means,
    cliffs_delta_sorted,
    effect_sizes_by_code,
)
from gen5dask.splitgates import SplitRows, split_gates_columns
from gen5dask.store.schema import SPLITS


def _table(seed, plant):
    rng = np.random.default_rng(seed)
    n = 3000
    store = np.where(rng.random(n) < 0.3, "survey", "train")
    sample = np.arange(n, dtype=np.int64) * 3 + 7
    hosts = sample[store == "survey"]
    host_sample = np.where(store == "train", rng.choice(hosts, n), -1)
    ra = rng.uniform(10, 12, n)
    dec = rng.uniform(-1, 1, n)
    at = np.searchsorted(sample, host_sample)  # train rows sit at their host's position
    tr = store == "train"
    ra[tr], dec[tr] = ra[at[tr]], dec[at[tr]]
    region = (np.floor(ra * 3) * 10 + np.floor((dec + 1) * 3)).astype(np.int64)
    reg_split = {r: SPLITS[1 + int(rng.integers(0, 3))] for r in np.unique(region)}
    split = np.asarray([reg_split[r] for r in region], dtype=object)
    if plant:
        split[5] = "test" if split[5] != "test" else "val"  # leaky region
        split[:40:7] = ""  # unassigned rows
        region[60] = -1
        ra[100], dec[100] = ra[200] + 1 / 3600, dec[200]  # near duplicate...
        split[100] = "train" if split[200] != "train" else "val"  # ...across splits
        ra[300], dec[300] = ra[301], dec[301]  # identical position...
        split[300] = "train" if split[301] != "train" else "test"  # ...in two splits
        region[400:1400] = 999  # a region over the cap
    return pd.DataFrame({"store": store, "sample": sample, "ra": ra, "dec": dec,
                         "host_sample": host_sample, "region": region,
                         "split": split.astype(str)})


@pytest.mark.parametrize("plant", [False, True])
def test_split_gates_columns_equal_split_gates(plant):
    t = _table(0, plant)
    want = split_gates(t, host_store="survey", dup_radius_arcsec=5.0, max_region_frac=0.2)
    code = np.asarray([SPLITS.index(s) for s in t["split"]], dtype=np.int8)
    rows = SplitRows(sample=t["sample"].to_numpy(), ra=t["ra"].to_numpy(),
                     dec=t["dec"].to_numpy(), host_sample=t["host_sample"].to_numpy(),
                     region=t["region"].to_numpy(), split=code,
                     is_host_store=(t["store"] == "survey").to_numpy())
    got = split_gates_columns(rows, dup_radius_arcsec=5.0, max_region_frac=0.2)
    assert got == want
    assert [g["passed"] for g in got] == ([False] * 4 if plant else [True] * 4)


def test_split_gates_columns_unassigned():
    t = _table(1, False)
    rows = SplitRows(sample=t["sample"].to_numpy(), ra=t["ra"].to_numpy(),
                     dec=t["dec"].to_numpy(), host_sample=t["host_sample"].to_numpy(),
                     region=t["region"].to_numpy(), split=np.zeros(len(t), np.int8),
                     is_host_store=np.zeros(len(t), bool))
    got = split_gates_columns(rows, dup_radius_arcsec=5.0, max_region_frac=0.2)
    assert got == split_gates(t.assign(split=""), host_store=None, dup_radius_arcsec=5.0,
                              max_region_frac=0.2)


def test_effect_sizes_and_means_equal_string_forms():
    rng = np.random.default_rng(3)
    names = ("host", "control", "injection", "anchor", "null_injection")
    code = rng.choice([0, 1, 2, 4], 5000)  # 'anchor' never present
    v = rng.normal(size=5000) + code
    v[::11] = np.nan
    v[code == 4] = np.nan  # a class with no finite values is left out
    labels = np.asarray(names)[code]
    assert effect_sizes_by_code(v, code, names) == effect_size_summary(v, labels)
    lab01 = (code == 2).astype(int)
    assert effect_sizes_by_code(v, lab01, ("0", "1")) == effect_size_summary(v, lab01)
    want = pd.DataFrame({"kind": labels, "x": v}).groupby("kind")["x"].mean().to_dict()
    got = class_means(v, code, names)
    assert list(got) == list(want)
    np.testing.assert_array_equal(list(got.values()), list(want.values()))


def test_cliffs_delta_sorted_and_auc_by_ranks():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    for ties in (False, True):
        a = rng.normal(size=700)
        b = rng.normal(0.3, 1.0, 500)
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        assert cliffs_delta_sorted(a, b) == cliffs_delta(a, b)
        x = np.r_[a, b]
        y = np.r_[np.zeros(a.size, int), np.ones(b.size, int)]
        assert abs(auc_by_ranks(y, x) - roc_auc_score(y, x)) < 1e-12
    assert cliffs_delta_sorted([], [1.0]) is None
    assert auc_by_ranks([0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0]) == 0.5
    assert auc_by_ranks([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auc_by_ranks([1, 1], [0.1, 0.2])

"""The inject plan built and written block by block equals the plan sorted as a whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gen5dask.config import config_from_dict
from gen5dask.injection.ids import ROLE_CONTROL, ROLE_INJECTION, ROLE_NULL, sample_id
from gen5dask.injection.laws import MODE_CODES
from gen5dask.injection.plan import (
    PLAN_DTYPE,
    build_plan,
    plan_blocks,
    plan_size,
    rank_select,
    write_plan,
)
from gen5dask.store import StoreError


def _reference(icfg, seed, hosts):
    """The earlier whole-plan construction (one concatenation, one global sort)."""
    ids = hosts["id"].to_numpy(np.int64)
    nh = ids.size
    if icfg.controls == "paired":
        is_control = np.ones(nh, dtype=bool)
        gets_inj = np.ones(nh, dtype=bool)
    else:
        is_control = rank_select(seed, "inject.controls", ids, nh // 2)
        gets_inj = ~is_control
    is_null = rank_select(seed, "inject.null", ids, icfg.n_null)
    parts = []

    def add(mask, role, mode, rep):
        sel = np.flatnonzero(mask)
        p = np.zeros(sel.size, dtype=PLAN_DTYPE)
        p["host_row"] = hosts["row"].to_numpy()[sel]
        p["host_id"] = ids[sel]
        p["role"], p["mode"], p["replicate"] = role, mode, rep
        p["host_mag_r"] = hosts["host_mag_r"].to_numpy()[sel]
        p["sample"] = sample_id(ids[sel], role, mode=mode, replicate=rep)
        parts.append(p)

    add(is_control, ROLE_CONTROL, 0, 0)
    add(is_null, ROLE_NULL, MODE_CODES["null"], 0)
    for mname in icfg.modes:
        for r in range(icfg.replicates):
            add(gets_inj, ROLE_INJECTION, MODE_CODES[mname], r)
    plan = np.concatenate(parts)
    return plan[np.argsort(plan["sample"], kind="stable")]


def _hosts(n, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n * 5)[:n].astype(np.int64) * 3 + 11  # unsorted, gaps
    return pd.DataFrame({"row": np.arange(n), "id": ids, "host_mag_r": rng.uniform(17, 21, n)})


@pytest.mark.parametrize("controls", ["paired", "unpaired"])
def test_blocks_equal_whole_plan(controls, tmp_path):
    icfg = config_from_dict({}, overrides=[f"inject.controls={controls}", "inject.n_null=37",
                                           "inject.replicates=2"]).inject
    hosts = _hosts(1000)
    want = _reference(icfg, 5, hosts)
    assert plan_size(icfg, 5, hosts) == want.size
    np.testing.assert_array_equal(build_plan(icfg, 5, hosts), want)
    for bh in (1, 7, 999, 5000):
        got = np.concatenate([b for _, b in plan_blocks(icfg, 5, hosts, block_hosts=bh)])
        np.testing.assert_array_equal(got, want)
        p = tmp_path / f"plan{bh}.npy"
        assert write_plan(p, icfg, 5, hosts, block_hosts=bh) == want.size
        np.testing.assert_array_equal(np.load(p, mmap_mode="r"), want)
    np.save(tmp_path / "ref.npy", want)
    assert (tmp_path / "ref.npy").read_bytes() == (tmp_path / "plan7.npy").read_bytes()


def test_duplicate_host_ids_and_empty(tmp_path):
    icfg = config_from_dict({}).inject
    hosts = _hosts(10)
    hosts.loc[3, "id"] = hosts.loc[5, "id"]
    with pytest.raises(StoreError, match="duplicate output sample ids"):
        build_plan(icfg, 0, hosts)
    empty = _hosts(0)
    assert build_plan(icfg, 0, empty).size == 0
    assert write_plan(tmp_path / "e.npy", icfg, 0, empty) == 0
    assert np.load(tmp_path / "e.npy").dtype == PLAN_DTYPE

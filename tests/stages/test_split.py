"""``gen5dask split``: region-disjoint, host-disjoint, near-duplicate-safe, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gen5dask.gates import split_gates
from gen5dask.stages.split import compute_split, load_rows, run_split, store_paths
from gen5dask.store import read_table

from .synth_stores import make_all, make_cfg


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    cfg, sv, tr = make_all(out)
    run_split(cfg)
    return cfg


def _all_rows(cfg):
    parts = []
    for name, p in store_paths(cfg).items():
        t = read_table(p, ["sample", "ra", "dec", "host_sample", "region", "split", "kind"])
        t.insert(0, "store", name)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def test_outputs_and_summary(done):
    cfg = done
    d = cfg.layout.split_dir
    s = json.loads((d / "summary.json").read_text())
    regions = json.loads((d / "regions.json").read_text())
    assert (d / "region_map.png").stat().st_size > 1000
    assert s["n_regions"] == len(regions) >= 8
    assert s["n_regions_by_split"]["test"] >= 2
    for p in cfg.split.proxies:
        assert set(s["ks"][p]) == {"train_vs_val", "train_vs_test", "val_vs_test"}
    ks = s["ks"]["psfsize_r"]["train_vs_test"]
    assert 0 <= ks["ks_stat"] <= 1 and 0 <= ks["ks_p"] <= 1
    assert abs(s["achieved_fractions"]["train"] - 0.7) < 0.12
    assert {r["split"] for r in regions.values()} == {"train", "val", "test"}


def test_every_store_written_and_gates_pass(done):
    cfg = done
    rows = _all_rows(cfg)
    assert set(rows["store"]) == {"train", "survey", "anchors"}
    assert (rows["split"] != "").all() and (rows["region"] >= 0).all()
    regions = json.loads((cfg.layout.split_dir / "regions.json").read_text())
    assert all(regions[str(r)]["split"] == s for r, s in zip(rows["region"], rows["split"],
                                                            strict=True))
    gates = split_gates(rows, host_store="survey", dup_radius_arcsec=5.0, max_region_frac=0.3)
    assert [g["passed"] for g in gates] == [True] * 4
    # every injection/control/null goes where its host goes
    tr = rows[rows["store"] == "train"].merge(
        rows[rows["store"] == "survey"][["sample", "split"]], left_on="host_sample",
        right_on="sample", suffixes=("", "_host"))
    assert len(tr) == (rows["store"] == "train").sum()
    assert (tr["split"] == tr["split_host"]).all()


def test_rerun_is_skipped_and_force_is_identical(done):
    cfg = done
    before = _all_rows(cfg)
    mtime = (cfg.layout.split_dir / "summary.json").stat().st_mtime_ns
    run_split(cfg)
    assert (cfg.layout.split_dir / "summary.json").stat().st_mtime_ns == mtime
    run_split(cfg, force=True)
    after = _all_rows(cfg)
    pd.testing.assert_frame_equal(before, after)


def test_near_duplicates_never_straddle(done):
    cfg = done
    rows = load_rows(store_paths(cfg))
    # plant pairs of near-duplicates 2" apart on either side of region boundaries
    by_split = _all_rows(cfg)
    a = by_split[(by_split["store"] == "survey") & (by_split["split"] == "train")].iloc[0]
    b = by_split[(by_split["store"] == "survey") & (by_split["split"] == "test")].iloc[0]
    extra = rows.iloc[:2].copy()
    extra["store"] = "extra"
    extra["sample"] = [10**9, 10**9 + 1]
    extra["host_sample"] = -1
    extra["ra"] = [a["ra"] + 2 / 3600, b["ra"] + 2 / 3600]
    extra["dec"] = [a["dec"], b["dec"]]
    planted = pd.concat([rows, extra], ignore_index=True)
    out, _ = compute_split(planted, cfg, host_store="survey")
    key = out.set_index(["store", "sample"])["split"]
    assert key[("extra", 10**9)] == key[("survey", int(a["sample"]))]
    assert key[("extra", 10**9 + 1)] == key[("survey", int(b["sample"]))]
    # a straddling chain: move a duplicate of a test object next to a train object
    out2, _ = compute_split(pd.concat([rows, extra.assign(ra=[a["ra"], a["ra"] + 4 / 3600])],
                                      ignore_index=True), cfg, host_store="survey")
    grp = out2.loc[out2["store"] == "extra", "split"]
    assert grp.nunique() == 1


def test_deterministic_per_seed(tmp_path):
    cfg, *_ = make_all(tmp_path / "a")
    rows = load_rows(store_paths(cfg))
    one, _ = compute_split(rows, cfg, host_store="survey")
    shuffled = rows.sample(frac=1.0, random_state=3)
    two, _ = compute_split(shuffled, cfg, host_store="survey")
    k1 = one.set_index(["store", "sample"])["split"]
    k2 = two.set_index(["store", "sample"])["split"].reindex(k1.index)
    assert (k1 == k2).all()
    other = make_cfg(tmp_path / "a", seed=99)
    three, _ = compute_split(rows, other, host_store="survey")
    assert not np.array_equal(one["split"].to_numpy(), three["split"].to_numpy())


def test_no_store_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete store"):
        run_split(make_cfg(tmp_path))

"""``gen5dask hardneg``: sources, keyed evaluation slice, mining with lens removal, Dask copy."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gen5dask.config import config_from_dict
from gen5dask.stages.hardneg import (
    ID_SHIFT,
    SOURCE_CODES,
    classify_votes,
    eval_only_flags,
    mine_candidates,
    run_hardneg,
)
from gen5dask.store import read_attrs, read_samples, read_table, validate

from .synth_stores import make_all


def test_classify_votes():
    votes = pd.DataFrame({"ring": [0.9, 0.1, 0.6, 0.0], "spiral": [0.95, 0.2, 0.1, np.nan]})
    sub = classify_votes(votes, columns={"ring_galaxy": "ring", "spiral": "spiral"},
                         thresholds={"ring_galaxy": 0.5, "spiral": 0.8})
    assert sub.tolist() == ["spiral", "", "ring_galaxy", ""]
    with pytest.raises(ValueError, match="merge_col"):
        classify_votes(votes, columns={"merger": "merge_col"}, thresholds={"merger": 0.5})


def test_mine_candidates_removes_known_lenses():
    scores = pd.DataFrame({"sample": [1, 2, 3, 4, 5], "store": "survey",
                           "score": [0.99, 0.98, 0.5, 0.97, 0.1],
                           "label": [0, 0, 0, 1, 0], "kind": ["host"] * 4 + ["ring"]})
    pos = pd.DataFrame({"sample": [1, 2, 3, 4, 5], "ra": [150.0, 151, 152, 153, 154],
                        "dec": [1.0, 1, 1, 1, 1]})
    m = mine_candidates(scores, {"survey": pos}, lens_ra=np.array([151 + 1 / 3600]),
                        lens_dec=np.array([1.0]), top_k=5, exclude_radius_arcsec=3.0)
    assert m["sample"].tolist() == [1, 3]  # 2 is a known lens, 4 is label 1, 5 a ring


def test_eval_slice_is_keyed_and_near_fraction():
    ids = np.arange(4000, dtype=np.int64)
    f = eval_only_flags(3, ids, 0.3)
    assert abs(f.mean() - 0.3) < 0.03
    assert (eval_only_flags(3, ids[::-1], 0.3)[::-1] == f).all()
    assert (eval_only_flags(4, ids, 0.3) != f).any()


def test_train_mix_fraction_is_validated():
    with pytest.raises(ValueError, match="train_mix_fraction"):
        config_from_dict({"hardneg": {"train_mix_fraction": 0.3}})


def test_run_hardneg_all_sources_dask_equals_sync(tmp_path):
    from distributed import Client, LocalCluster

    cfg, sv, tr = make_all(tmp_path)
    # (b) vote catalogue matched to a cutout store (the survey's hosts stand in for it)
    votes = pd.DataFrame({"id": [0, 1, 2, 3], "ring_fraction": [0.9, 0.1, 0.2, 0.7],
                          "has-spiral-arms_yes_fraction": [0.1, 0.9, 0.1, 0.1],
                          "merging_merger_fraction": 0.0, "disk-edge-on_yes_fraction": 0.0})
    votes.to_csv(tmp_path / "votes.csv", index=False)
    # (c) an earlier model's scores: the top controls, one sitting on a known lens
    t = read_table(cfg.layout.train, ["sample", "kind", "label", "ra", "dec"])
    ctrl = t[t["kind"] == "control"].head(6)
    anchors = read_table(cfg.layout.anchors, ["ra", "dec"])
    pd.DataFrame({"ra": anchors["ra"], "dec": anchors["dec"]}).to_csv(cfg.layout.anchors_csv,
                                                                    index=False)
    scores = xr.Dataset({
        "sample": ("row", ctrl["sample"].to_numpy()),
        "store": ("row", np.zeros(6, "i1"), {"gen5dask_legend": ["train", "survey"]}),
        "score": ("row", np.linspace(0.99, 0.9, 6)), "label": ("row", np.zeros(6, "i1")),
        "kind": ("row", np.ones(6, "i1"), {"gen5dask_legend": ["host", "control"]})})
    scores.to_zarr(tmp_path / "scores.zarr", mode="w")
    over = [f"hardneg.votes_catalog={tmp_path / 'votes.csv'}",
            f"hardneg.cutouts_store={cfg.layout.survey}",
            f"hardneg.mine_from={tmp_path / 'scores.zarr'}", "hardneg.mine_top_k=4",
            "chunk_size=8"]
    cfg = config_from_dict(cfg.model_dump(), overrides=over)
    out = run_hardneg(cfg)
    assert validate(out) == []
    h = read_table(out)
    assert (h["kind"] == "hard_negative").all() and (h["label"] == 0).all()
    src = h["sample"].to_numpy() >> ID_SHIFT
    assert (src == SOURCE_CODES["survey"]).sum() == 12
    assert (src == SOURCE_CODES["votes"]).sum() == 3  # ids 0, 1, 3 pass a threshold
    assert (src == SOURCE_CODES["mined:train"]).sum() == 4
    assert set(h.loc[src == 3, "subtype"]) == {"mined"}
    attrs = read_attrs(out)
    assert sum(v["train"] + v["eval"] for v in attrs["hardneg_counts"].values()) == len(h)
    assert attrs["train_mix_fraction"] == 0.15
    # pixels copied exactly from the sources
    got = read_samples(out, slice(None), ["sample", "image"])
    surv = read_samples(cfg.layout.survey, slice(None), ["sample", "image"])
    k = np.flatnonzero(src == 0)[0]
    j = np.flatnonzero(surv["sample"] == (got["sample"][k] & ((1 << ID_SHIFT) - 1)))[0]
    assert np.array_equal(got["image"][k], surv["image"][j])
    # mined controls keep their host link (the split keeps them with their host)
    assert (h.loc[src == 3, "host_sample"] >= 0).all()
    # same output through a 2-worker Dask cluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as lc, Client(lc) as client:
        cfg2 = config_from_dict(cfg.model_dump(), overrides=[f"output_dir={tmp_path / 'd'}"])
        for name in ("survey", "train", "anchors"):
            shutil.copytree(getattr(cfg.layout, name), getattr(cfg2.layout, name))
        shutil.copy(cfg.layout.anchors_csv, cfg2.layout.anchors_csv)
        out2 = run_hardneg(cfg2, client=client)
    del out2
    g2 = read_samples(cfg2.layout.hardneg, slice(None), ["sample", "image", "eval_only"])
    assert np.array_equal(g2["sample"], got["sample"])
    assert np.array_equal(g2["image"], got["image"])

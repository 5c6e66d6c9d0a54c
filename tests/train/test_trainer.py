"""Trainer: exact resume, model file contract, log, gates; scoring determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gen5dask.stages.train import check_gates, run_train
from gen5dask.train.trainer import LRSchedule, load_model_file, train_arm

from .conftest import make_cfg


def _arm(cfg, name):
    return next(a for a in cfg.ablation.arms if a.name == name)


def test_resume_is_exact(run_dir, tmp_path_factory):
    import shutil

    other = tmp_path_factory.mktemp("straight")
    for name in ("train.zarr", "hardneg.zarr"):
        shutil.copytree(run_dir / name, other / name)
    # straight through with 0 loader workers; paused with 1 and resumed with 2: the same
    # weights bit for bit (exact resume, and training does not depend on the worker count)
    cfg_b = make_cfg(other, num_workers=0)
    arm = _arm(cfg_b, "remediated")  # calibrated + hard negatives + centre mask
    straight = train_arm(cfg_b, arm)
    cfg_a = make_cfg(run_dir, num_workers=1)
    paused = train_arm(cfg_a, arm, stop_after=1)
    assert paused["status"] == "paused"
    cfg_a = make_cfg(run_dir, num_workers=2)
    resumed = train_arm(cfg_a, arm)
    assert resumed["status"] == "done"
    a = load_model_file(cfg_a.layout.model(arm.name))
    b = load_model_file(cfg_b.layout.model(arm.name))
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [h["train_loss"] for h in straight["history"]] == [
        h["train_loss"] for h in resumed["history"]]


def test_model_file_log_and_selection(run_dir):
    cfg = make_cfg(run_dir, metadata_columns=["psfsize_r", "psfdepth_r"],
                   selection_metric="val_loss")
    arm = _arm(cfg, "baseline")
    res = train_arm(cfg, arm)
    info = torch.load(cfg.layout.model(arm.name), weights_only=True)
    for k in ("state_dict", "arch", "arm", "selection_metric", "selection_value", "epoch",
              "norm", "metadata_columns", "meta_mean", "meta_std", "config"):
        assert k in info, k
    assert info["selection_metric"] == "val_loss"
    hist = [json.loads(x) for x in cfg.layout.train_log(arm.name).read_text().splitlines()]
    assert len(hist) == 2
    for k in ("epoch", "train_loss", "val_loss", "val_auc", "lr", "samples_per_s", "seconds",
              "data_wait_frac"):
        assert k in hist[0]
    best = min(hist, key=lambda h: h["val_loss"])
    assert info["epoch"] == best["epoch"] == res["best_epoch"]
    assert info["selection_value"] == pytest.approx(best["val_loss"])
    assert info["metadata_columns"] == ["psfsize_r", "psfdepth_r"]
    assert len(info["meta_mean"]) == 2 and all(s > 0 for s in info["meta_std"])
    assert (cfg.layout.models_dir / "baseline_curves.png").exists()
    assert len(list(cfg.layout.checkpoint_dir(arm.name).glob("epoch_*.pt"))) == 2


def test_crop_epochs_and_replicates_reach_the_model_file(run_dir):
    """``train.crop`` is stored in the architecture (scoring rebuilds it); an arm's own
    ``epochs`` overrides ``train.epochs``; the report's recipe summary carries all three."""
    from gen5dask.train.scoring import load_scorer
    from gen5dask.train.trainer import model_summary

    cfg = make_cfg(run_dir, epochs=3, crop=24)
    arm = _arm(cfg, "baseline")
    arm.replicates, arm.epochs = 1, 1
    res = train_arm(cfg, arm)
    assert len(res["history"]) == 1
    info = torch.load(cfg.layout.model(arm.name), weights_only=True)
    assert info["arch"]["crop"] == 24
    model, _ = load_scorer(cfg.layout.model(arm.name))
    assert model.crop == 24
    s = model_summary(cfg.layout.model(arm.name))
    assert s["crop"] == 24 and s["arm"]["replicates"] == 1 and s["train"]["epochs"] == 1


def test_lr_schedule():
    s = LRSchedule(lr=1.0, epochs=2, kind="cosine", min_lr_frac=0.0)
    assert s.lr_at(0, 0, 10) == pytest.approx(1.0)
    assert s.lr_at(1, 0, 10) == pytest.approx(0.5)
    o = LRSchedule(lr=1.0, epochs=1, kind="onecycle", warmup_frac=0.5)
    assert o.lr_at(0, 0, 10) == pytest.approx(1 / 25) and o.lr_at(0, 5, 10) == pytest.approx(1.0)


def test_gates_block_and_override(run_dir):
    cfg = make_cfg(run_dir)
    # audit never ran: training refuses, naming the missing file and how to write it
    with pytest.raises(FileNotFoundError, match=r"gates\.json not found.*gen5dask audit"):
        check_gates(cfg)
    with pytest.raises(FileNotFoundError, match="gates.json"):
        run_train(cfg)
    assert not cfg.layout.models_dir.exists() or not any(cfg.layout.models_dir.glob("*.pt"))
    cfg.layout.gates_json.write_text(json.dumps([
        {"name": "null_injection", "passed": False, "blocking": True},
        {"name": "split_disjoint", "passed": True, "blocking": True},
        {"name": "metadata_leakage", "passed": False, "blocking": False},
    ]))
    with pytest.raises(RuntimeError, match="null_injection"):
        run_train(cfg)
    cfg2 = make_cfg(run_dir)
    cfg2.gates.override = ["null_injection"]
    g = check_gates(cfg2)
    assert g["gates_overridden"] == ["null_injection"]
    assert g["gates_failed_nonblocking"] == ["metadata_leakage"]


def test_run_train_and_score_end_to_end(run_dir):
    from distributed import Client, LocalCluster

    from gen5dask.stages.score import run_score
    from gen5dask.store import read_samples
    from gen5dask.train.scoring import (
        load_scorer,
        read_embeddings,
        read_scores,
        read_scores_attrs,
        score_images,
    )

    cfg = make_cfg(run_dir, epochs=1, arms=["masked"])
    cfg.layout.gates_json.write_text(json.dumps(
        [{"name": "null_injection", "passed": False, "blocking": True}]))
    cfg.gates.override = ["null_injection"]
    cfg.score.arms = ["masked"]
    run_train(cfg)
    info = torch.load(cfg.layout.model("masked"), weights_only=True)
    assert info["provenance"]["gates_overridden"] == ["null_injection"]
    mtime = cfg.layout.model("masked").stat().st_mtime_ns
    run_train(cfg)  # up to date: not retrained
    assert cfg.layout.model("masked").stat().st_mtime_ns == mtime

    run_score(cfg)  # client=None: in-process reference
    ref = read_scores(cfg.layout.scores("masked"))
    attrs = read_scores_attrs(cfg.layout.scores("masked"))
    assert json.loads(attrs["stores_skipped"]) == ["survey"]
    assert set(ref["store"]) == {"train", "anchors", "hardneg"}
    assert len(ref) == 150 + 36 + 14
    assert ref["score"].between(0, 1).all() and ref["score"].dtype == np.float32
    assert set(ref.loc[ref["store"] == "anchors", "tier"]) == {"A", "stress"}
    assert (ref.loc[ref["store"] == "hardneg", "eval_only"] == 1).sum() == 10
    # embeddings: one per scored row, equal to scoring that sample alone
    ids, emb = read_embeddings(cfg.layout.scores("masked"))
    assert np.array_equal(ids, ref["sample"].to_numpy()) and emb.shape == (len(ref), 96)
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    ids_a, emb_a = read_embeddings(cfg.layout.scores("masked"), store="anchors")
    assert len(ids_a) == 14
    model, info = load_scorer(cfg.layout.model("masked"))
    img = read_samples(cfg.layout.anchors, slice(0, 14), ["image"])["image"]
    for i in (0, 13):
        p1, e1 = score_images(model, info, img[i : i + 1], batch_size=1, embeddings=True)
        np.testing.assert_allclose(e1[0], emb_a[i], rtol=1e-5, atol=1e-6)
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False,
                          dashboard_address=":0") as lc, Client(lc) as client:
            run_score(cfg, client, force=True)
        got = read_scores(cfg.layout.scores("masked"))
        if n_workers == 1:
            one = got
        else:
            np.testing.assert_array_equal(got["score"].to_numpy(), one["score"].to_numpy())
        np.testing.assert_array_equal(got["sample"].to_numpy(), ref["sample"].to_numpy())
        np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_lens_light_reaches_the_model_file_and_scoring(run_dir):
    """``train.lens_light`` is stored in the model file's ``norm``; scoring applies it (the
    scores of a lens-light model differ from scoring the same weights without it), and the
    report's recipe summary names it."""
    from gen5dask.store import read_samples
    from gen5dask.train.scoring import load_scorer, score_images
    from gen5dask.train.trainer import model_summary

    cfg = make_cfg(run_dir, epochs=1, lens_light="azimuthal_median")
    arm = _arm(cfg, "baseline")
    train_arm(cfg, arm)
    path = cfg.layout.model(arm.name)
    info = torch.load(path, weights_only=True)
    assert info["norm"]["lens_light"] == "azimuthal_median"
    assert model_summary(path)["lens_light"] == "azimuthal_median"
    model, loaded = load_scorer(path)
    img = read_samples(cfg.layout.train, slice(0, 24), ["image"])["image"]
    with_ll = score_images(model, loaded, img)
    without = score_images(model, {**loaded, "norm": {**loaded["norm"], "lens_light": "none"}},
                           img)
    assert with_ll.shape == (24,) and not np.allclose(with_ll, without)

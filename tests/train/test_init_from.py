"""Arms that start from another arm's weights (``ablation.arms[].init_from``): fine-tuning."""

from __future__ import annotations

import pytest
import torch

from gen5dask.config import config_from_dict
from gen5dask.train.trainer import arm_fingerprint, model_summary, store_parents, train_arm

from .conftest import CHUNK, STAMP

ARMS = [
    {"name": "baseline", "brightness": "uncalibrated", "hard_negatives": False,
     "center_mask": False},
    {"name": "remediated", "brightness": "calibrated", "hard_negatives": True,
     "center_mask": True, "init_from": "baseline"},
]


def _cfg(out, arms=ARMS, **train):
    t = {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "shuffle_buffer": 32,
         "progress": False, "torch_threads": 1, "early_stopping_patience": None}
    t.update(train)
    return config_from_dict({
        "output_dir": str(out), "stamp_size": STAMP, "chunk_size": CHUNK, "seed": 11,
        "train": t, "ablation": {"arms": arms},
        "cluster": {"kind": "synchronous", "progress": False},
    })


def _arm(cfg, name):
    return next(a for a in cfg.ablation.arms if a.name == name)


def _params(path):
    sd = torch.load(path, weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if "running_" not in k and "num_batches" not in k}


def test_child_starts_from_parent_weights(run_dir):
    cfg = _cfg(run_dir)
    child = _arm(cfg, "remediated")
    with pytest.raises(FileNotFoundError, match=r"baseline\.pt"):
        train_arm(cfg, child)
    train_arm(cfg, _arm(cfg, "baseline"))
    fp_before = arm_fingerprint(cfg, child, store_parents(cfg, child))
    # a vanishing learning rate: the child's selected weights are the parent's (BN running
    # statistics aside), so the weights were loaded, not drawn from the seed
    tiny = _cfg(run_dir, lr=1e-12, weight_decay=0.0)
    train_arm(tiny, _arm(tiny, "remediated"))
    parent, got = _params(cfg.layout.model("baseline")), _params(cfg.layout.model("remediated"))
    assert got.keys() == parent.keys()
    for k in parent:
        torch.testing.assert_close(got[k], parent[k], rtol=0, atol=1e-8)
    summary = model_summary(cfg.layout.model("remediated"))
    assert summary["arm"]["init_from"] == "baseline" and summary["epochs_run"] == 1
    assert summary["train"]["lr"] == 1e-12 and summary["stamp_size"] == STAMP
    assert summary["counts"]["train"]["injection"] > 0
    assert summary["n_parameters"] == sum(v.numel() for v in got.values())
    # the same arm without init_from differs from the parent: the check above can fail
    scratch = _cfg(run_dir, arms=[ARMS[0], {**ARMS[1], "init_from": None}], lr=1e-12,
                   weight_decay=0.0)
    train_arm(scratch, _arm(scratch, "remediated"))
    fresh = _params(cfg.layout.model("remediated"))
    assert any(not torch.allclose(fresh[k], parent[k]) for k in parent if fresh[k].numel() > 1)
    info = torch.load(cfg.layout.model("remediated"), weights_only=True)
    assert info["arm"]["init_from"] is None
    # retraining the parent with another recipe changes the child's fingerprint
    other = _cfg(run_dir, epochs=2)
    train_arm(other, _arm(other, "baseline"))
    assert arm_fingerprint(cfg, child, store_parents(cfg, child)) != fp_before


def test_architecture_mismatch_is_refused(run_dir):
    cfg = _cfg(run_dir)
    train_arm(cfg, _arm(cfg, "baseline"))
    meta = _cfg(run_dir, metadata_columns=["psfsize_r"])
    with pytest.raises(ValueError, match="architecture"):
        train_arm(meta, _arm(meta, "remediated"))


@pytest.mark.parametrize(("arms", "match"), [
    ([ARMS[1], ARMS[0]], "listed before it"),
    ([ARMS[0], {**ARMS[1], "init_from": "nope"}], "listed before it"),
    ([{**ARMS[0], "init_from": "baseline"}], "listed before it"),
    ([{**ARMS[0], "center_mask": "decision"}, ARMS[1]], "centre-masked ablation"),
])
def test_init_from_must_name_an_earlier_arm(tmp_path, arms, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tmp_path, arms=arms)

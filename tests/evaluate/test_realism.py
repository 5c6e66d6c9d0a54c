"""The realism probe against the known answer of Gaussian classes."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gen5dask.evaluate.realism import arm_realism_probe, realism_probe


def test_identical_populations_give_chance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 16))
    j = rng.normal(size=(600, 16))
    out = realism_probe(a, j, seed=1, n_boot=300)
    lo, hi = out["auc_bootstrap"]
    assert lo <= 0.5 <= hi or abs(out["auc"] - 0.5) < 0.08
    assert out["n_anchor"] == 120 and out["n_injection"] == 600 and out["n_folds"] == 5


def test_separated_populations_reach_the_bayes_auc():
    """Two Gaussians a distance delta apart along one axis (unit covariance): the best linear
    classifier's AUC is Phi(delta / sqrt 2)."""
    rng = np.random.default_rng(4)
    delta = 1.5
    a = rng.normal(size=(300, 8))
    a[:, 3] += delta
    j = rng.normal(size=(900, 8))
    out = realism_probe(a, j, seed=2, n_boot=300)
    want = stats.norm.cdf(delta / np.sqrt(2.0))
    assert out["auc"] == pytest.approx(want, abs=0.04)
    lo, hi = out["auc_bootstrap"]
    assert lo < out["auc"] < hi
    assert len(out["pca2"]["anchor"]) == 300 and len(out["pca2"]["injection"]) == 400


def test_too_few_anchors_is_undefined_not_an_error():
    out = realism_probe(np.zeros((1, 4)), np.ones((10, 4)))
    assert out["auc"] is None
    with pytest.raises(ValueError, match="2-D"):
        realism_probe(np.zeros((5, 4)), np.zeros((5, 3)))


def test_arm_probe_selects_tier_a_and_held_out_calibrated_injections():
    rng = np.random.default_rng(7)
    kind = np.array(["anchor"] * 60 + ["injection"] * 200 + ["control"] * 100)
    split = np.array(["test"] * 60 + ["test"] * 150 + ["train"] * 50 + ["test"] * 100)
    tier = np.where(kind == "anchor", "A", "")
    emb = rng.normal(size=(kind.size, 6))
    emb[kind == "anchor", 0] += 3.0
    emb[(kind == "injection") & (split == "train"), 0] += 3.0  # training rows: must be ignored
    df = pd.DataFrame({"sample": np.arange(kind.size), "score": 0.5,
                       "label": (kind != "control").astype(int), "kind": kind, "split": split,
                       "tier": tier, "inject_mode": np.where(kind == "injection", "calibrated",
                                                             "")})
    out = arm_realism_probe(df, emb, seed=0, n_boot=100)
    assert out["n_anchor"] == 60 and out["n_injection"] == 150
    assert out["auc"] > 0.9
    with pytest.raises(ValueError, match="do not match"):
        arm_realism_probe(df, emb[:-1])

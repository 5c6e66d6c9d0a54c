"""Metrics vs brute-force recomputation from the scores table (DESIGN §7)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from gen5dask.config.evaluate import EvaluateConfig
from gen5dask.evaluate.metrics import (
    arm_metrics_kwargs,
    auc,
    auc_bootstrap_ci,
    compute_arm_metrics,
    evaluation_negatives,
    k_for_fpr,
    operating_point,
    operating_point_k,
    positives,
    recall_at_fpr_bootstrap_ci,
    recall_at_threshold,
    saturation,
    validate_scores,
)
from gen5dask.evaluate.selection import completeness_1d, completeness_2d

from .synth import make_scores


def _brute_threshold(neg, k):
    """Smallest negative score t with at most k negatives strictly above t."""
    for t in sorted(neg):
        if sum(1 for x in neg if x > t) <= k:
            return t
    return None


def test_operating_point_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        neg = np.round(rng.uniform(0, 1, n), 1)  # many ties
        fpr = float(rng.choice([0.01, 0.05, 0.1, 0.25, 0.5]))
        op = operating_point(neg, fpr)
        k = math.floor(round(fpr * n, 9))
        assert op["k"] == k and op["n_negatives"] == n
        if k >= n:
            assert op["threshold"] == -math.inf
            continue
        assert op["threshold"] == _brute_threshold(neg.tolist(), k)
        assert op["n_false_positives"] == int((neg > op["threshold"]).sum()) <= k


def test_ties_at_threshold_do_not_pass():
    neg = np.array([0.9, 0.9, 0.9, 0.2, 0.1])
    op = operating_point_k(neg, 1)
    assert op["threshold"] == 0.9 and op["n_false_positives"] == 0
    k, n, r = recall_at_threshold(np.array([0.9, 0.95, 0.5]), op["threshold"])
    assert (k, n) == (1, 3) and r == pytest.approx(1 / 3)


def test_operating_point_small_n_and_exact_k():
    assert math.isnan(operating_point([], 0.01)["threshold"])
    assert operating_point([], 0.01)["n_negatives"] == 0
    assert recall_at_threshold([0.5], math.nan) == (0, 1, None)
    # k = floor(0.01 * 99) = 0: threshold is the highest negative
    neg = np.linspace(0, 1, 99)
    assert operating_point(neg, 0.01) == {"threshold": 1.0, "k": 0, "n_negatives": 99,
                                          "n_false_positives": 0, "fpr": 0.01}
    # k = 1 at N = 100: the second highest
    neg = np.arange(100) / 100
    assert operating_point(neg, 0.01)["threshold"] == 0.98
    # 0.29 * 100 is 28.999999999999996 in floating point; the rule means 29
    assert k_for_fpr(0.29, 100) == 29
    assert k_for_fpr(0.01, 1000) == 10
    assert operating_point(np.array([0.3, 0.4]), 1.0)["threshold"] == -math.inf


def test_auc_matches_mann_whitney():
    rng = np.random.default_rng(1)
    neg = np.round(rng.normal(0, 1, 300), 1)
    pos = np.round(rng.normal(0.7, 1, 120), 1)
    u = st.mannwhitneyu(pos, neg).statistic
    assert auc(neg, pos) == pytest.approx(u / (pos.size * neg.size), abs=1e-12)
    assert auc([], pos) is None


def test_auc_bootstrap_matches_naive_bootstrap():
    rng = np.random.default_rng(2)
    neg = np.round(rng.normal(0, 1, 200), 1)
    pos = np.round(rng.normal(1, 1, 80), 1)
    lo, hi = auc_bootstrap_ci(neg, pos, n_boot=600, seed=3)
    r = np.random.default_rng(9)
    reps = []
    for _ in range(600):
        a = neg[r.integers(0, neg.size, neg.size)]
        b = pos[r.integers(0, pos.size, pos.size)]
        reps.append(roc_auc_score(np.r_[np.zeros(a.size), np.ones(b.size)], np.r_[a, b]))
    nlo, nhi = np.quantile(reps, [0.025, 0.975])
    assert lo == pytest.approx(nlo, abs=0.015) and hi == pytest.approx(nhi, abs=0.015)
    assert lo < auc(neg, pos) < hi


@pytest.mark.parametrize(("fpr", "k"), [(0.05, None), (None, 3), (None, 0)])
def test_recall_bootstrap_matches_naive_bootstrap(fpr, k):
    rng = np.random.default_rng(4)
    neg = rng.normal(0, 1, 300)
    pos = rng.normal(1.5, 1, 150)
    lo, hi = recall_at_fpr_bootstrap_ci(neg, pos, fpr, k=k, n_boot=4000, seed=1)
    r = np.random.default_rng(5)
    reps = []
    for _ in range(3000):
        a = neg[r.integers(0, neg.size, neg.size)]
        b = pos[r.integers(0, pos.size, pos.size)]
        op = operating_point(a, fpr) if fpr is not None else operating_point_k(a, k)
        reps.append(recall_at_threshold(b, op["threshold"])[2])
    nlo, nhi = np.quantile(reps, [0.025, 0.975])
    assert lo == pytest.approx(nlo, abs=0.03) and hi == pytest.approx(nhi, abs=0.03)


def test_evaluation_negatives_are_exactly_the_documented_rows():
    df = pd.DataFrame({
        "sample": np.arange(9), "score": np.linspace(0, 0.8, 9),
        "label": [0, 0, 0, 0, 0, 0, 1, 0, 0],
        "kind": ["control", "control", "hard_negative", "hard_negative", "hard_negative",
                 "host", "injection", "ring", "null_injection"],
        "split": ["test", "train", "test", "", "val", "test", "test", "", "test"],
        "eval_only": [0, 0, 0, 1, 0, 0, 0, 0, 0],
    })
    assert evaluation_negatives(df)["sample"].tolist() == [0, 2, 3]
    bad = df.assign(label=[1, 0, 0, 0, 0, 0, 1, 0, 0])
    with pytest.raises(ValueError, match=r"sample\(s\) \[0\]"):
        evaluation_negatives(bad)


def test_positives_and_validation_errors():
    df = validate_scores(make_scores(1))
    inj = positives(df, "injection", inject_mode="calibrated")
    assert set(inj["split"]) == {"test"} and set(inj["inject_mode"]) == {"calibrated"}
    assert len(positives(df, "injection", inject_mode="any")) == 600
    assert set(positives(df, "tier_a")["tier"]) == {"A"}
    with pytest.raises(ValueError, match="which"):
        positives(df, "tier_b")
    with pytest.raises(ValueError, match="missing required column"):
        validate_scores(df.drop(columns="score"))
    with pytest.raises(ValueError, match=r"'score'.*sample\(s\) \[3\]"):
        validate_scores(df.assign(score=np.where(df["sample"] == 3, np.nan, df["score"])))
    with pytest.raises(ValueError, match="unknown kind"):
        validate_scores(df.assign(kind="lens"))
    with pytest.raises(ValueError, match="'label'"):
        validate_scores(df.assign(label=2))


def test_saturation():
    s = saturation(np.array([1.0, 1.0, 0.9995, 0.5, 0.0001]))
    assert s == {"n": 5, "frac_above_high": 0.6, "frac_below_low": 0.2, "unique_frac": 0.8}
    assert saturation(np.array([]))["n"] == 0


REQUIRED_KEYS = [
    "auc", "recall_at_fpr_0.01", "threshold_at_fpr_0.01", "n_negatives_at_threshold",
    "recall_at_fpr_0.001", "threshold_at_fpr_0.001", "tpr0", "tpr10",
    "tier_a_recall_at_fpr_0.01", "tier_a_n", "stress_recall_at_fpr_0.01", "stress_n",
    "ring_median_score", "ring_frac_above_0.5", "spearman_score_vs_thetae_over_psf",
    "spearman_score_vs_thetae_over_psf_ci", "recall_at_fpr_0.01_wilson",
    "recall_at_fpr_0.01_bootstrap", "tier_a_recall_at_fpr_0.01_wilson",
    "tier_a_recall_at_fpr_0.01_bootstrap", "completeness", "stratified_auc", "saturation",
]


@pytest.fixture(scope="module")
def table():
    return make_scores(7)


@pytest.fixture(scope="module")
def arm(table):
    return compute_arm_metrics(table, n_boot=200, seed=11)


def test_arm_metrics_keys_and_strict_json(arm):
    for k in REQUIRED_KEYS:
        assert k in arm, k
    json.dumps(arm, allow_nan=False)


def test_arm_metrics_recomputed_by_hand(table, arm):
    t = table
    neg_m = ((t.kind == "control") & (t.split == "test")) | (
        (t.kind == "hard_negative") & ((t.split == "test") | (t.eval_only == 1)))
    neg = np.sort(t.loc[neg_m, "score"].to_numpy(float))[::-1]
    n = neg.size
    assert arm["n_negatives_at_threshold"] == n
    pos = t.loc[(t.kind == "injection") & (t.split == "test") &
                (t.inject_mode == "calibrated"), "score"].to_numpy(float)
    ta = t.loc[(t.kind == "anchor") & (t.tier == "A"), "score"].to_numpy(float)
    for fpr, tag in ((0.01, "0.01"), (0.001, "0.001")):
        thr = neg[int(fpr * n)]  # (k+1)-th highest, k = floor(fpr n)
        assert arm[f"threshold_at_fpr_{tag}"] == pytest.approx(thr)
        assert arm[f"recall_at_fpr_{tag}"] == pytest.approx(np.mean(pos > thr))
        assert arm[f"tier_a_recall_at_fpr_{tag}"] == pytest.approx(np.mean(ta > thr))
        lo, hi = arm[f"recall_at_fpr_{tag}_wilson"]
        assert lo <= arm[f"recall_at_fpr_{tag}"] <= hi
    assert arm["tpr0"] == pytest.approx(np.mean(pos > neg[0]))
    assert arm["tpr10"] == pytest.approx(np.mean(pos > neg[10]))
    assert np.sum(neg > arm["threshold_tpr10"]) <= 10
    assert arm["auc"] == pytest.approx(
        roc_auc_score(np.r_[np.zeros(n), np.ones(pos.size)], np.r_[neg, pos]))
    assert arm["tier_a_n"] == ta.size and arm["stress_n"] == (t.kind == "stress").sum()
    rings = t.loc[t.kind == "ring", "score"].to_numpy(float)
    assert arm["ring_median_score"] == pytest.approx(np.median(rings))
    assert arm["ring_frac_above_0.5"] == pytest.approx(np.mean(rings > 0.5))
    anc = t.loc[(t.kind == "anchor") & (t.tier == "A")]
    rho = st.spearmanr(anc.score, anc.theta_e / anc.psfsize_r).statistic
    assert arm["spearman_score_vs_thetae_over_psf"] == pytest.approx(rho)
    lo, hi = arm["spearman_score_vs_thetae_over_psf_ci"]
    assert lo < rho < hi


def test_arm_metrics_deterministic_and_config_kwargs(table):
    kw = arm_metrics_kwargs(EvaluateConfig(n_bootstrap=50), seed=3)
    a = compute_arm_metrics(table, **kw)
    b = compute_arm_metrics(table, **kw)
    assert a == b
    assert kw["seed"] == 3 + EvaluateConfig().bootstrap_seed_offset


def test_arm_metrics_with_missing_populations_is_valid_json():
    t = make_scores(2)
    t = t[~t.kind.isin(["anchor", "stress", "ring"])]
    m = compute_arm_metrics(t, n_boot=20, seed=0)
    assert m["tier_a_n"] == 0 and m["tier_a_recall_at_fpr_0.01"] is None
    assert m["ring_median_score"] is None and m["spearman_score_vs_thetae_over_psf"] is None
    assert m["spearman_score_vs_thetae_over_psf_ci"] == [None, None]
    json.dumps(m, allow_nan=False)
    empty = compute_arm_metrics(t[t.kind == "ring"], n_boot=20, seed=0)
    assert empty["auc"] is None and empty["threshold_at_fpr_0.01"] is None
    json.dumps(empty, allow_nan=False)


def test_arm_metrics_completeness_consistent(table, arm):
    c = arm["completeness"]
    thr = arm["threshold_at_fpr_0.01"]
    inj = table[(table.kind == "injection") & (table.split == "test") &
                (table.inject_mode == "calibrated")]
    snr = inj.arc_snr.to_numpy(float)
    e = c["arc_snr"]["edges"]
    for i in range(len(e) - 1):
        sel = (snr >= e[i]) & (snr < e[i + 1])
        assert c["arc_snr"]["n"][i] == sel.sum()
        assert c["arc_snr"]["k"][i] == (inj.score.to_numpy()[sel] > thr).sum()
    m2 = c["theta_e_over_psf_x_arc_snr"]
    assert np.array(m2["n"]).sum(axis=0).tolist() == c["arc_snr"]["n"]
    sa = arm["stratified_auc"]["arc_snr"]
    assert [s["n_pos"] for s in sa] == c["arc_snr"]["n"]


def test_completeness_brute_force():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 5, 500)
    x[:5] = np.nan
    y = rng.uniform(0, 3, 500)
    p = rng.random(500) < 0.4
    edges = [0, 1, 2.5, 4]
    c = completeness_1d(x, p, edges, name="q")
    for i in range(3):
        sel = (x >= edges[i]) & (x < edges[i + 1])
        assert c["n"][i] == sel.sum() and c["k"][i] == (p & sel).sum()
        assert c["completeness"][i] == pytest.approx((p & sel).sum() / sel.sum())
        assert c["lo"][i] <= c["completeness"][i] <= c["hi"][i]
    m = completeness_2d(x, y, p, edges, [0, 1, 3])
    for i in range(3):
        for j in range(2):
            sel = (x >= edges[i]) & (x < edges[i + 1]) & (y >= [0, 1][j]) & (y < [1, 3][j])
            assert m["n"][i][j] == sel.sum() and m["k"][i][j] == (p & sel).sum()
    empty = completeness_1d([], [], [0, 1])
    assert empty["n"] == [0] and empty["completeness"] == [None]
    with pytest.raises(ValueError, match="strictly increasing"):
        completeness_1d(x, p, [0, 0, 1], name="theta")

"""The matched-filter limit and the reweighted recall, against independent computations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gen5dask.evaluate.limits import (
    limit_recall,
    matched_filter_recall,
    reweight_bins,
    reweighted_recall,
    reweighted_recall_bootstrap_ci,
    snr_opt_from_pixels,
)
from gen5dask.evaluate.metrics import compute_arm_metrics


def test_snr_opt_from_pixels_matches_a_loop_and_ignores_bad_pixels():
    rng = np.random.default_rng(3)
    arc = rng.normal(size=(4, 3, 8, 8))
    ivar = rng.uniform(0.5, 2.0, size=arc.shape)
    ivar[0, 1, :4] = 0.0
    ivar[2, 0, 3, 3] = -1.0  # never a weight
    want = []
    for i in range(4):
        tot = 0.0
        for b in range(3):
            for y in range(8):
                for x in range(8):
                    if ivar[i, b, y, x] > 0:
                        tot += arc[i, b, y, x] ** 2 * ivar[i, b, y, x]
        want.append(np.sqrt(tot))
    np.testing.assert_allclose(snr_opt_from_pixels(arc, ivar), want, rtol=1e-12)


def test_matched_filter_recall_equals_a_monte_carlo_detector():
    """Simulate the detector itself: Gaussian noise of the invvar, the exact template, a threshold
    at the empirical (1 - fpr) quantile of arc-free realisations."""
    rng = np.random.default_rng(11)
    arc = np.zeros((2, 12, 12))
    yy, xx = np.mgrid[:12, :12]
    arc[0] = 0.9 * np.exp(-((yy - 5) ** 2 + (xx - 7) ** 2) / 4.0)
    arc[1] = 0.4 * np.exp(-((yy - 6) ** 2 + (xx - 4) ** 2) / 6.0)
    ivar = rng.uniform(1.0, 4.0, size=arc.shape)
    snr = float(snr_opt_from_pixels(arc[None], ivar[None])[0])
    sigma = 1.0 / np.sqrt(ivar)
    n = 200_000
    tmpl = (arc * ivar).ravel()
    noise = rng.standard_normal((n, arc.size)) * sigma.ravel()
    t_null = noise @ tmpl / snr
    t_sig = (noise + arc.ravel()) @ tmpl / snr
    for fpr in (0.01, 0.05):
        thr = np.quantile(t_null, 1.0 - fpr)
        mc = np.mean(t_sig > thr)
        assert matched_filter_recall(np.array([snr]), fpr)[0] == pytest.approx(mc, abs=0.005)


def test_limit_recall_leaves_out_samples_without_truth():
    s = np.array([1.0, np.nan, 3.0])
    mean, n, miss = limit_recall(s, 0.01)
    want = np.mean([stats.norm.cdf(v - stats.norm.ppf(0.99)) for v in (1.0, 3.0)])
    assert (n, miss) == (2, 1)
    assert mean == pytest.approx(want, rel=1e-12)
    assert limit_recall(np.array([np.nan]), 0.01) == (None, 0, 1)
    with pytest.raises(ValueError, match="fpr"):
        matched_filter_recall(s, 1.0)


def test_reweighted_recall_equals_importance_weights():
    rng = np.random.default_rng(5)
    v = rng.lognormal(1.0, 1.0, 3000)
    s = rng.uniform(size=v.size) * np.tanh(v / 5)
    target = rng.lognormal(1.5, 0.6, 300)
    edges = reweight_bins(target, 6)
    thr = 0.3
    got = reweighted_recall(s, v, target, thr, edges)
    # independent: per-sample weight = target fraction of its bin / positives in its bin
    df = pd.DataFrame({"b": pd.cut(v, edges, right=False, labels=False), "p": s > thr})
    tb = pd.cut(target, edges, right=False, labels=False)
    frac = pd.Series(tb).value_counts(normalize=True)
    w = df["b"].map(frac) / df["b"].map(df["b"].value_counts())
    assert got["coverage"] == pytest.approx(1.0)
    assert got["recall"] == pytest.approx(float((w * df["p"]).sum() / w.sum()), rel=1e-12)


def test_reweighted_recall_interval_covers_the_truth_often_enough():
    """Coverage of the bootstrap interval over repeated experiments (nominal 90 %)."""
    rng = np.random.default_rng(9)
    cover = 0
    n_exp = 60
    for _ in range(n_exp):
        neg = rng.normal(0.0, 1.0, 2000)
        v = rng.uniform(0, 10, 800)
        pos = rng.normal(v / 3.0, 1.0)
        target = rng.uniform(4, 10, 150)
        thr_true = stats.norm.ppf(0.99)
        # truth: E over target of P(N(v/3, 1) > thr)
        truth = np.mean(stats.norm.sf(thr_true - np.linspace(4, 10, 20001) / 3.0))
        edges = reweight_bins(target, 6)
        lo, hi = reweighted_recall_bootstrap_ci(neg, pos, v, target, 20, edges, n_boot=300,
                                                seed=int(rng.integers(1 << 30)), conf=0.9)
        cover += lo <= truth <= hi
    assert cover / n_exp >= 0.75


def test_arm_metrics_limit_keys_recomputed_from_the_table():
    rng = np.random.default_rng(2)
    n_neg, n_inj, n_a = 1500, 600, 120
    kind = np.array(["control"] * n_neg + ["injection"] * n_inj + ["anchor"] * n_a)
    snr_opt = np.where(kind == "control", np.nan, rng.lognormal(1.2, 0.7, kind.size))
    score = np.where(kind == "control", rng.beta(2, 5, kind.size),
                     stats.norm.cdf(np.nan_to_num(snr_opt) / 3 - 1))
    df = pd.DataFrame({"sample": np.arange(kind.size), "score": score,
                       "label": (kind != "control").astype(int), "kind": kind, "split": "test",
                       "tier": np.where(kind == "anchor", "A", ""),
                       "inject_mode": np.where(kind == "injection", "calibrated", ""),
                       "arc_snr": snr_opt / 2, "snr_opt": snr_opt})
    m = compute_arm_metrics(df, n_boot=100)
    z = stats.norm.ppf(0.99)
    inj = df[df.kind == "injection"]
    anc = df[df.kind == "anchor"]
    assert m["limit_recall_at_fpr_0.01"] == pytest.approx(
        stats.norm.cdf(inj.snr_opt - z).mean(), rel=1e-10)
    assert m["tier_a_limit_recall_at_fpr_0.01"] == pytest.approx(
        stats.norm.cdf(anc.snr_opt - z).mean(), rel=1e-10)
    assert m["tier_a_recall_over_limit_at_fpr_0.01"] == pytest.approx(
        m["tier_a_recall_at_fpr_0.01"] / m["tier_a_limit_recall_at_fpr_0.01"])
    bright = inj[inj.arc_snr >= 8]
    negs = df[df.kind == "control"]
    from sklearn.metrics import roc_auc_score
    want_auc = roc_auc_score(np.r_[np.zeros(len(negs)), np.ones(len(bright))],
                             np.r_[negs.score, bright.score])
    assert m["auc_arc_snr_ge"] == pytest.approx(want_auc)
    # anchors drawn like the injections: reweighted recall agrees with the Tier-A recall
    rw = m["injection_recall_reweighted_to_tier_a_at_fpr_0.01"]
    lo, hi = m["tier_a_recall_at_fpr_0.01_wilson"]
    assert lo <= rw <= hi
    lims = m["completeness"]["arc_snr"]["limit"]
    assert len(lims) == len(m["completeness"]["arc_snr"]["n"])

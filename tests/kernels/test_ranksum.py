"""The numba AUC-bootstrap replicate equals the numpy bincount/cumsum/dot form exactly."""

from __future__ import annotations

import numpy as np

from gen5dask.evaluate.metrics import auc_bootstrap_ci
from gen5dask.evaluate.stats import bootstrap_rng
from gen5dask.kernels.ranksum import resampled_auc_sum


def _numpy_replicates(neg, pos, n_boot, seed, name):
    uniq, inv = np.unique(np.concatenate([neg, pos]), return_inverse=True)
    g_neg, g_pos = inv[: neg.size], inv[neg.size:]
    rng = bootstrap_rng(seed, name)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        wn = np.bincount(g_neg[rng.integers(0, neg.size, neg.size)], minlength=uniq.size)
        wp = np.bincount(g_pos[rng.integers(0, pos.size, pos.size)], minlength=uniq.size)
        below = np.cumsum(wn) - wn
        reps[b] = np.dot(wp, below + 0.5 * wn) / (neg.size * pos.size)
    return reps


def test_replicate_is_twice_the_mann_whitney_u():
    rng = np.random.default_rng(0)
    g_neg = rng.integers(0, 7, 40)
    g_pos = rng.integers(0, 7, 30)
    idx_n = rng.integers(0, 40, 40)
    idx_p = rng.integers(0, 30, 30)
    wn, wp = np.empty(7, np.int64), np.empty(7, np.int64)
    got = resampled_auc_sum(g_neg, g_pos, idx_n, idx_p, wn, wp)
    a, b = g_neg[idx_n][:, None], g_pos[idx_p][None, :]
    assert got == int(2 * (b > a).sum() + (b == a).sum())


def test_auc_bootstrap_bit_identical_to_numpy_form():
    rng = np.random.default_rng(5)
    for n_neg, n_pos, levels in ((300, 200, 0), (1000, 50, 40), (7, 9, 3)):
        neg = rng.beta(2, 5, n_neg)
        pos = rng.beta(5, 2, n_pos)
        if levels:  # many ties
            neg, pos = np.round(neg * levels) / levels, np.round(pos * levels) / levels
        reps = _numpy_replicates(neg, pos, 200, 11, "auc")
        lo, hi = np.quantile(reps, [0.5 - 0.95 / 2.0, 0.5 + 0.95 / 2.0])  # as the function
        assert auc_bootstrap_ci(neg, pos, n_boot=200, seed=11) == (float(lo), float(hi))

"""Statistics vs independent computations and textbook values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats as st

from gen5dask.evaluate.stats import (
    bootstrap_ci,
    cliffs_delta,
    compare_populations,
    effect_size_summary,
    to_jsonable,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [  # textbook values (Newcombe 1998, Table I; Brown, Cai & DasGupta 2001)
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
    ],
)
def test_wilson_known_values(k, n, lo, hi):
    wl, wh = wilson_interval(k, n)
    assert wl == pytest.approx(lo, abs=1e-4)
    assert wh == pytest.approx(hi, abs=1e-4)


@pytest.mark.parametrize("conf", [0.68, 0.9, 0.95, 0.99])
def test_wilson_is_the_score_test_inversion(conf):
    # independent: the interval is the set of p with |phat - p| <= z sqrt(p(1-p)/n), i.e. the
    # roots of (1 + z^2/n) p^2 - (2 phat + z^2/n) p + phat^2 = 0
    z = st.norm.ppf(0.5 + conf / 2)
    for k, n in [(1, 7), (3, 20), (17, 40), (99, 100), (0, 3)]:
        ph = k / n
        roots = np.sort(np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph]).real)
        wl, wh = wilson_interval(k, n, conf)
        assert wl == pytest.approx(max(roots[0], 0.0), abs=1e-12)
        assert wh == pytest.approx(min(roots[1], 1.0), abs=1e-12)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError, match="k=5, n=3"):
        wilson_interval(5, 3)
    with pytest.raises(ValueError, match="conf"):
        wilson_interval(1, 3, conf=1.5)


def _cliff_brute(a, b):
    s = 0
    for x in a:
        for y in b:
            s += int(x > y) - int(x < y)
    return s / (len(a) * len(b))


def test_cliffs_delta_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.round(rng.normal(0.3, 1, rng.integers(1, 30)), 1)
        b = np.round(rng.normal(0, 1, rng.integers(1, 30)), 1)
        assert cliffs_delta(a, b) == pytest.approx(_cliff_brute(a, b), abs=1e-12)
    assert cliffs_delta([1, 2], [3, 4]) == -1.0
    assert cliffs_delta([5], [1, 2]) == 1.0
    assert cliffs_delta([], [1.0]) is None


def test_bootstrap_ci_reproducible_and_sane():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, 400)
    ci = bootstrap_ci(np.mean, x, n_boot=500, seed=5, name="mean")
    assert ci == bootstrap_ci(np.mean, x, n_boot=500, seed=5, name="mean")
    assert ci != bootstrap_ci(np.mean, x, n_boot=500, seed=6, name="mean")
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert ci[0] == pytest.approx(x.mean() - 1.96 * se, abs=0.4 * se)
    assert ci[1] == pytest.approx(x.mean() + 1.96 * se, abs=0.4 * se)
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ci(lambda a, b: 0.0, x, x[:3], n_boot=10, seed=0)
    assert bootstrap_ci(np.mean, np.array([]), n_boot=10, seed=0) == (None, None)


def test_bootstrap_ci_paired_keeps_pairs():
    # with paired resampling, corr(x, x) is 1 in every replicate
    x = np.arange(50.0)
    lo, hi = bootstrap_ci(lambda a, b: np.corrcoef(a, b)[0, 1], x, x, n_boot=50, seed=1)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_compare_populations_against_scipy():
    rng = np.random.default_rng(1)
    a = rng.lognormal(1.0, 0.5, 300)
    b = rng.lognormal(0.0, 0.5, 200)
    r = compare_populations(a, b, n_boot=300, seed=2)
    assert r["median_a"] == pytest.approx(np.median(a))
    q = np.quantile(b, [0.25, 0.75])
    assert r["iqr_b"] == pytest.approx(q[1] - q[0])
    assert r["median_ratio"] == pytest.approx(np.median(a) / np.median(b))
    lo, hi = r["median_ratio_ci"]
    assert lo < r["median_ratio"] < hi
    ks = st.ks_2samp(a, b)
    assert r["ks_stat"] == pytest.approx(ks.statistic) and r["ks_p"] == pytest.approx(ks.pvalue)
    assert r["ad_p"] <= 0.01
    assert r["cliffs_delta"] == pytest.approx(_cliff_brute(a, b))
    json.dumps(r, allow_nan=False)
    e = compare_populations(a, [], n_boot=10, seed=0)
    assert e["median_b"] is None and e["ks_p"] is None and e["cliffs_delta"] is None
    json.dumps(e, allow_nan=False)


def test_effect_size_summary():
    v = np.array([1.0, 2, 3, 10, 11, 12, np.nan])
    lab = np.array(["x", "x", "x", "y", "y", "y", "y"])
    r = effect_size_summary(v, lab)
    assert r["classes"]["x"]["n"] == 3 and r["classes"]["y"]["n"] == 3
    assert r["classes"]["y"]["median"] == 11.0
    (pair,) = r["pairs"]
    assert (pair["a"], pair["b"], pair["cliffs_delta"]) == ("x", "y", -1.0)
    with pytest.raises(ValueError, match="differ"):
        effect_size_summary(v, lab[:3])


def test_to_jsonable_removes_nan_and_numpy():
    d = to_jsonable({"a": np.float32(np.nan), "b": np.int64(3), "c": (np.inf, 1.5),
                     "d": np.array([1, 2]), "e": np.bool_(True)})
    assert d == {"a": None, "b": 3, "c": [None, 1.5], "d": [1, 2], "e": True}
    json.dumps(d, allow_nan=False)


def test_wilson_limits_exact_at_boundaries_and_plot_accepts_them():
    from gen5dask.evaluate.plots import completeness_1d_png
    from gen5dask.evaluate.stats import wilson_interval

    assert wilson_interval(0, 63)[0] == 0.0 and wilson_interval(63, 63)[1] == 1.0
    curve = {"edges": [0.0, 1.0, 2.0], "completeness": [0.0, 1.0], "n": [63, 5],
             "lo": [wilson_interval(0, 63)[0], wilson_interval(5, 5)[0]],
             "hi": [wilson_interval(0, 63)[1], wilson_interval(5, 5)[1]]}
    assert completeness_1d_png({"arc_snr": curve})[:4] == b"\x89PNG"


def test_bca_interval_is_scipys_with_the_keyed_stream():
    from gen5dask.evaluate.stats import bootstrap_rng

    x = np.random.default_rng(4).gamma(2.0, 1.0, 120)
    lo, hi = bootstrap_ci(np.mean, x, n_boot=999, seed=3, name="mean", method="BCa")
    ref = st.bootstrap((x,), np.mean, n_resamples=999, method="BCa", vectorized=False,
                       rng=bootstrap_rng(3, "mean")).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert lo < x.mean() < hi
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci(np.mean, x, n_boot=10, seed=0, method="basic")


def test_anderson_darling_p_is_a_permutation_p_not_capped():
    from gen5dask.evaluate.stats import ad_permutation_test

    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 200), rng.normal(1.5, 1, 200)
    stat, p = ad_permutation_test(a, b, n_resamples=1999, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's tabulated p-value floor, which we avoid
        assert stat == pytest.approx(st.anderson_ksamp([a, b]).statistic)
    assert p == pytest.approx(1 / 2000)  # below scipy's tabulated floor of 0.001
    _, p_null = ad_permutation_test(rng.normal(0, 1, 200), rng.normal(0, 1, 200),
                                    n_resamples=499, seed=1)
    assert 0.01 < p_null <= 1.0
    assert ad_permutation_test(a, [], n_resamples=9, seed=0) == (None, None)

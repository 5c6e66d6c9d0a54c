"""Forward-model deconvolution of a noisy proxy, against the regression it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.injection.deconvolve import deconvolve_fractions, proxy_coordinate
from gen5dask.injection.laws import TargetDistribution

BINS = [0.8, 2.0, 8.0, 20.0, 100.0]


def _proxy(s, rng, noise):
    """A proxy of the kind the calibration sees: ~ s / 3 plus Gaussian noise (can be < 0)."""
    return s / 3.0 + rng.normal(0.0, noise, s.size)


def _dry(rng, n, noise):
    s = np.exp(rng.uniform(np.log(BINS[0]), np.log(BINS[-1]), n))  # log-uniform, as the dry run
    return _proxy(s, rng, noise), s


@pytest.mark.parametrize("truth", [[0.05, 0.15, 0.4, 0.4], [0.6, 0.3, 0.1, 0.0]])
def test_recovers_fractions_of_an_informative_proxy(truth):
    rng = np.random.default_rng(7)
    pd, sd = _dry(rng, 6000, 0.3)
    t = TargetDistribution(BINS, truth)
    s_a = t.sample(rng.random(3000), rng.random(3000))
    out = deconvolve_fractions(_proxy(s_a, rng, 0.3), pd, sd, BINS)
    assert out["converged"]
    np.testing.assert_allclose(out["fractions"], truth, atol=0.04)
    assert sum(out["fractions"]) == pytest.approx(1.0)
    # per-anchor posterior medians track the truth (monotone proxy)
    imp = out["implied"]
    assert np.corrcoef(np.log(imp), np.log(s_a))[0, 1] > 0.9


def test_unbiased_where_the_regression_is_diluted():
    """A noisy proxy: regressing log s on log p shrinks toward the dry run's centre (all bright
    anchors come out fainter); the deconvolution keeps the bright bins."""
    rng = np.random.default_rng(11)
    pd, sd = _dry(rng, 8000, 2.0)
    s_a = TargetDistribution(BINS, [0.0, 0.0, 0.3, 0.7]).sample(rng.random(2000),
                                                              rng.random(2000))
    pa = _proxy(s_a, rng, 2.0)
    out = deconvolve_fractions(pa, pd, sd, BINS)
    truth = np.array([0.0, 0.0, 0.3, 0.7])
    tv_dec = 0.5 * np.abs(np.asarray(out["fractions"]) - truth).sum()
    ok = pd > 0
    slope, icpt = np.polyfit(np.log(pd[ok]), np.log(sd[ok]), 1)
    assert slope < 0.9  # attenuated
    reg = np.where(pa > 0, np.exp(icpt + slope * np.log(np.where(pa > 0, pa, 1))), BINS[0])
    fr_reg, _, _ = TargetDistribution(BINS, [1, 0, 0, 0]).fractions_of(reg)
    tv_reg = 0.5 * np.abs(fr_reg - truth).sum()
    assert tv_dec < 0.06 and tv_reg > 2 * tv_dec


def test_errors_and_non_finite_anchors():
    rng = np.random.default_rng(3)
    pd, sd = _dry(rng, 400, 0.5)
    out = deconvolve_fractions(np.r_[np.nan, 5.0, 10.0], pd, sd, BINS)
    assert out["n_anchors_used"] == 2 and np.isnan(out["implied"][0])
    with pytest.raises(ValueError, match="no anchor with a finite proxy"):
        deconvolve_fractions(np.array([np.nan]), pd, sd, BINS)
    with pytest.raises(ValueError, match=r"per arc_snr bin \[0,"):
        deconvolve_fractions(np.array([1.0]), pd, sd, [0.1, 0.5, 8.0])
    with pytest.raises(ValueError, match="differ in length"):
        deconvolve_fractions(np.array([1.0]), pd, sd[:-1], BINS)


def test_proxy_coordinate_linear_near_zero_log_far():
    assert proxy_coordinate(np.array([0.01]))[0] == pytest.approx(0.005, rel=1e-4)
    big = proxy_coordinate(np.array([1e4, 1e5]))
    assert big[1] - big[0] == pytest.approx(np.log(10), rel=1e-6)


def test_bootstrap_interval_covers_the_truth_and_is_reproducible():
    """Small samples (100 anchors, 400 dry-run injections): the 95 % bootstrap interval of every
    fraction covers the true fraction, and it narrows when both samples grow."""
    truth = np.array([0.1, 0.6, 0.2, 0.1])
    t = TargetDistribution(BINS, truth.tolist())

    def run(n_a, n_d, seed):
        rng = np.random.default_rng(seed)
        pd, sd = _dry(rng, n_d, 1.0)
        s_a = t.sample(rng.random(n_a), rng.random(n_a))
        return deconvolve_fractions(_proxy(s_a, rng, 1.0), pd, sd, BINS, bootstrap=120,
                                    rng=np.random.default_rng(5))

    small = run(100, 400, 21)
    boot = np.asarray(small["fractions_bootstrap"])
    assert boot.shape == (120, 4)
    np.testing.assert_allclose(boot.sum(axis=1), 1.0)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    assert np.all((lo <= truth + 1e-12) & (truth <= hi + 1e-12)), (lo, hi)
    again = run(100, 400, 21)
    assert again["fractions_bootstrap"] == small["fractions_bootstrap"]
    big = run(1600, 6400, 21)

    def width(o):
        return np.subtract(*np.percentile(o["fractions_bootstrap"], [97.5, 2.5], axis=0))

    assert np.all(width(big) < 0.6 * width(small) + 1e-9)
    # the resamples scatter around the full-sample fit
    assert np.abs(np.median(boot, axis=0) - np.asarray(small["fractions"])).max() < 0.15


def test_bootstrap_needs_a_generator():
    rng = np.random.default_rng(3)
    pd, sd = _dry(rng, 400, 0.5)
    assert deconvolve_fractions(np.r_[5.0, 10.0], pd, sd, BINS)["fractions_bootstrap"] == []
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        deconvolve_fractions(np.r_[5.0, 10.0], pd, sd, BINS, bootstrap=3)

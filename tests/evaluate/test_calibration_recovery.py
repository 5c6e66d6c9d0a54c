"""Recovery distance of a calibration against independent formulas."""

import numpy as np
import pytest

from gen5dask.evaluate.calibration import recovery_distance


def test_identical_samples_are_at_distance_zero():
    x = np.random.default_rng(0).lognormal(1.0, 1.0, 500)
    d = recovery_distance(x, x, bins=[0.8, 2, 8, 20, 100])
    assert d["ks_statistic"] == 0.0 and d["wasserstein_log10"] == 0.0
    assert d["median_ratio"] == 1.0
    assert d["fractions_recovered"] == d["fractions_true"]


def test_a_constant_factor_is_a_shift_in_dex():
    """A recovery biased by a factor f is a pure shift of log10 f in dex (W1 of a shift)."""
    x = np.random.default_rng(1).lognormal(1.0, 0.8, 2000)
    d = recovery_distance(2.0 * x, x)
    assert d["wasserstein_log10"] == pytest.approx(np.log10(2.0), rel=1e-9)
    assert d["median_ratio"] == pytest.approx(2.0, rel=1e-9)
    # KS statistic by hand: sup |F1 - F2| over the pooled sample
    pooled = np.sort(np.concatenate([x, 2 * x]))
    f1 = np.searchsorted(np.sort(2 * x), pooled, side="right") / x.size
    f2 = np.searchsorted(np.sort(x), pooled, side="right") / x.size
    assert d["ks_statistic"] == pytest.approx(np.max(np.abs(f1 - f2)))


def test_bad_values_are_counted_not_used():
    d = recovery_distance([1.0, np.nan, -1.0, 2.0], [1.0, 2.0])
    assert d["n_recovered"] == 2 and d["n_left_out"] == 2
    assert recovery_distance([], [1.0])["ks_statistic"] is None

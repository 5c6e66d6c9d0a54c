"""snr_opt: the matched-filter S/N kernel against numpy and an analytic case."""

import numpy as np
import pytest

from gen5dask.injection.matched_filter import snr_opt, snr_opt_reference


def test_snr_opt_matches_numpy_reference_with_bad_pixels():
    rng = np.random.default_rng(3)
    arc = rng.normal(size=(7, 3, 12, 12)).astype(np.float32)
    iv = rng.uniform(0, 5, size=arc.shape).astype(np.float32)
    iv[rng.random(arc.shape) < 0.2] = 0.0
    iv[0, 0, 0, 0] = np.nan  # NaN invvar is not a good pixel
    ref = snr_opt_reference(arc, iv)
    np.testing.assert_allclose(snr_opt(arc, iv), ref, rtol=1e-12)
    assert np.isfinite(ref).all()


def test_snr_opt_analytic_constant_arc():
    # a constant a on N good pixels with invvar w: sqrt(N a^2 w)
    arc = np.full((1, 2, 4, 4), 0.5, np.float32)
    iv = np.full(arc.shape, 4.0, np.float32)
    iv[0, 1] = 0.0  # one band without data
    assert snr_opt(arc, iv)[0] == pytest.approx(np.sqrt(16 * 0.25 * 4.0))


def test_snr_opt_shape_mismatch():
    with pytest.raises(ValueError, match="equal"):
        snr_opt(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 3)))

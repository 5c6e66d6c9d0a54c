"""Lens-light subtraction (azimuthal median per 1-px radial bin) against a numpy reference and
its physical limits: round light and complete rings vanish, a partial arc survives."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.kernels.lenslight import (
    LENS_LIGHT_MODELS,
    lens_light_profile,
    n_profile_bins,
    subtract_lens_light,
    subtract_profile,
)
from gen5dask.train.augment import d4_transform


def _reference(x: np.ndarray) -> np.ndarray:
    """Plain numpy: each plane minus the float32-rounded median of its floor(r) bin."""
    n, nb, H, W = x.shape
    yy, xx = np.indices((H, W))
    rb = np.floor(np.hypot(yy - H // 2, xx - W // 2)).astype(int)
    out = x.astype(np.float64).copy()
    for i in range(n):
        for b in range(nb):
            for k in np.unique(rb):
                m = rb == k
                v = x[i, b][m].astype(np.float64)
                v = v[np.isfinite(v)]
                if v.size:
                    out[i, b][m] = x[i, b][m] - np.float64(np.float32(np.median(v)))
    return out.astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (2, 1, 33, 33), (3, 2, 20, 26)])
def test_matches_numpy_reference(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 1.0, shape).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    x[-1, -1, :, 0] = np.inf
    got = subtract_lens_light(x)
    np.testing.assert_array_equal(got, _reference(x))
    assert np.isnan(got[0, 0, 2, 3]) and np.isinf(got[-1, -1, 5, 0])  # non-finite stays
    assert got.dtype == np.float32 and not np.shares_memory(got, x)


def test_round_light_and_complete_ring_vanish_partial_arc_survives():
    """Light constant on each 1-px radial bin (deflector and a complete ring) is the model
    exactly; an arc over a quarter of the azimuth leaves every bin median and survives whole."""
    H = 41
    yy, xx = np.indices((H, H)) - H // 2
    rb = np.floor(np.hypot(yy, xx))
    phi = np.arctan2(yy, xx)
    deflector = 50.0 * np.exp(-rb / 2.5)
    ring = 2.0 * np.exp(-0.5 * ((rb - 8.0) / 1.0) ** 2)
    arc = np.where(np.abs(phi) < np.pi / 4, 1.5 * np.exp(-0.5 * ((rb - 8.0) / 1.0) ** 2), 0.0)
    x = np.stack([deflector + ring, deflector + arc])[:, None].astype(np.float32)
    res = subtract_lens_light(x)
    assert not res[0].any()
    np.testing.assert_allclose(res[1, 0], arc, atol=1e-5)


def test_d4_invariant():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, (8, 3, 32, 32)).astype(np.float32)
    codes = np.arange(8)
    a = subtract_lens_light(d4_transform(x, codes))
    b = d4_transform(subtract_lens_light(x), codes)
    np.testing.assert_array_equal(a, b)


def test_rows_in_place_and_profile_roundtrip():
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 1.0, (6, 3, 24, 24)).astype(np.float32)
    full = subtract_lens_light(x)
    rows = np.array([4, 1])
    y = x.copy()
    assert subtract_lens_light(y, rows=rows, out=y) is y
    np.testing.assert_array_equal(y[rows], full[rows])
    np.testing.assert_array_equal(np.delete(y, rows, 0), np.delete(x, rows, 0))
    prof = lens_light_profile(x, rows=rows)
    assert prof.shape == (2, 3, n_profile_bins("azimuthal_median", 24, 24))
    assert prof.dtype == np.float32
    out = np.zeros_like(x)
    subtract_profile(x, prof, rows=rows, out=out)
    np.testing.assert_array_equal(out[rows], full[rows])
    assert not out[[0, 2, 3, 5]].any()  # rows not asked for are not written
    np.testing.assert_array_equal(subtract_lens_light(x, "none"), x)
    assert lens_light_profile(x, "none").shape == (6, 3, 0)


def test_bad_input_is_refused():
    x = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="lens-light model"):
        subtract_lens_light(x, "sersic")
    with pytest.raises(ValueError, match=r"\(n, nband, H, W\)"):
        subtract_lens_light(x[0])
    with pytest.raises(ValueError, match="rows must lie"):
        subtract_lens_light(x, rows=np.array([2]))
    with pytest.raises(ValueError, match="profile must be"):
        subtract_profile(x, np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        subtract_lens_light(x, out=np.zeros((2, 3, 16, 16), np.float64))
    assert set(LENS_LIGHT_MODELS) == {"none", "azimuthal_median"}

"""The shared stamp normalisation and the order-statistics helpers it rests on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen5dask.kernels.geometry import median_of, robust_loc_scale, select_kth
from gen5dask.kernels.normalize import normalize_stamps


def _r(H, W):
    yy, xx = np.indices((H, W))
    return np.hypot(yy - H // 2, xx - W // 2)


def normalize_ref(images, r_outer=16.0, clip=10.0):
    """Slow reference: one plane at a time with numpy's median."""
    x = np.asarray(images, dtype=np.float64)
    H, W = x.shape[-2:]
    outer = _r(H, W) >= r_outer
    out = np.empty(x.shape, dtype=np.float32)
    for idx in np.ndindex(x.shape[:-2]):
        plane = x[idx]
        vals = plane[outer & np.isfinite(plane)]
        if vals.size == 0:
            vals = plane[np.isfinite(plane)]
        loc, scale = 0.0, 1.0
        if vals.size:
            loc = np.median(vals)
            mad = 1.4826 * np.median(np.abs(vals - loc))
            std = np.std(vals)
            scale = mad if mad > 0 else (std if std > 0 else 1.0)
        z = np.clip((plane - loc) / scale, -clip, clip)
        out[idx] = np.where(np.isfinite(plane), z, 0.0)
    return out


# --------------------------------------------------------------------------- helpers


@settings(max_examples=100, deadline=None)
@given(
    vals=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 1)), min_size=1, max_size=60
    ),
    data=st.data(),
)
def test_order_statistics_match_numpy(vals, data):
    arr = np.array(vals, dtype=np.float64)
    n = arr.size
    k = data.draw(st.integers(0, n - 1))
    buf = np.concatenate([arr, [np.nan, 7.0]])  # trailing garbage must be ignored
    assert select_kth(buf.copy(), n, k) == np.sort(arr)[k]
    assert median_of(buf.copy(), n) == pytest.approx(np.median(arr), rel=1e-15, abs=1e-15)
    med, mad_sigma, std = robust_loc_scale(buf.copy(), n)
    assert med == pytest.approx(np.median(arr), rel=1e-15, abs=1e-15)
    ref_mad = 1.4826 * np.median(np.abs(arr - np.median(arr)))
    assert mad_sigma == pytest.approx(ref_mad, rel=1e-12, abs=1e-9)
    assert std == pytest.approx(np.std(arr), rel=1e-9, abs=1e-9)


def test_median_of_empty_and_duplicates():
    assert np.isnan(median_of(np.empty(3), 0))
    big = np.full(5001, 2.5)
    big[::7] = -1.0
    assert median_of(big.copy(), big.size) == np.median(big)


# --------------------------------------------------------------------------- normalize_stamps


def test_normalize_matches_reference():
    rng = np.random.default_rng(0)
    img = (rng.normal(5.0, 2.0, size=(4, 3, 40, 40)) ** 3).astype(np.float32)
    img[:, :, 20, 20] += 1e4  # bright core gets clipped
    got = normalize_stamps(img)
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_allclose(got, normalize_ref(img), rtol=1e-6, atol=1e-5)
    assert np.all(got[:, :, 20, 20] == 10.0)
    got2 = normalize_stamps(img, r_outer=5.0, clip=3.0)
    np.testing.assert_allclose(got2, normalize_ref(img, 5.0, 3.0), rtol=1e-6, atol=1e-5)
    assert np.abs(got2).max() <= 3.0


def test_normalize_outer_region_is_standardised():
    rng = np.random.default_rng(1)
    img = rng.normal(3.0, 0.5, size=(2, 1, 64, 64))
    z = normalize_stamps(img, clip=None)
    outer = _r(64, 64) >= 16
    for i in range(2):
        vals = z[i, 0][outer].astype(np.float64)
        assert np.median(vals) == pytest.approx(0.0, abs=1e-6)
        assert 1.4826 * np.median(np.abs(vals)) == pytest.approx(1.0, rel=1e-5)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    a=st.floats(1e-3, 1e3),
    b=st.floats(-1e3, 1e3),
    H=st.integers(34, 48),
)
def test_normalize_affine_invariance(seed, a, b, H):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(2, 2, H, H + 1))
    x[:, :, H // 2, (H + 1) // 2] += 20.0
    z1 = normalize_stamps(x, clip=4.0)
    z2 = normalize_stamps(a * x + b, clip=4.0)
    np.testing.assert_allclose(z2, z1, rtol=0, atol=2e-5 * (1 + abs(b) / a))


def test_normalize_degenerate_planes_are_finite():
    x = np.zeros((5, 1, 40, 40), dtype=np.float32)
    x[0] = 7.0  # constant: MAD = std = 0 -> scale 1 -> zeros
    r = _r(40, 40)
    x[1, 0][r >= 16] = 0.0  # MAD = 0 (most outer pixels equal): falls back to std
    x[1, 0][(r >= 16)] = np.where(np.arange((r >= 16).sum()) % 10 == 0, 5.0, 0.0)
    x[1, 0][r < 16] = 5.0
    x[2, 0, 3, 3] = np.nan  # non-finite pixels -> 0, rest unaffected
    x[2, 0, 4, 4] = np.inf
    x[2, 0, 20, 20] = 1.0
    x[3, 0] = np.nan  # all non-finite -> zeros
    x[4, 0][r >= 16] = np.nan  # no finite outer pixel: statistics from the finite rest
    x[4, 0][r < 16] = np.linspace(1.0, 3.0, int((r < 16).sum()))
    z = normalize_stamps(x)
    assert np.all(np.isfinite(z))
    np.testing.assert_array_equal(z[0], 0.0)
    outer1 = x[1, 0][r >= 16].astype(np.float64)
    assert z[1, 0, 20, 20] == pytest.approx(5.0 / np.std(outer1), rel=1e-6)
    assert z[2, 0, 3, 3] == 0.0 and z[2, 0, 4, 4] == 0.0
    np.testing.assert_array_equal(z[3], 0.0)
    np.testing.assert_allclose(z, normalize_ref(x), rtol=1e-6, atol=1e-5)


def test_normalize_shapes_in_place_and_errors():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 36, 36)).astype(np.float32)
    ref = normalize_stamps(x)
    np.testing.assert_array_equal(normalize_stamps(x[1, 0]), ref[1, 0])  # a single (H, W) plane
    np.testing.assert_array_equal(normalize_stamps(x.reshape(6, 36, 36)), ref.reshape(6, 36, 36))
    y = x.copy()
    assert normalize_stamps(y, out=y) is y
    np.testing.assert_array_equal(y, ref)
    with pytest.raises(ValueError, match="no pixel with r >= r_outer"):
        normalize_stamps(x, r_outer=100.0)
    with pytest.raises(ValueError, match="clip"):
        normalize_stamps(x, clip=0.0)
    with pytest.raises(ValueError, match="out must be"):
        normalize_stamps(x, out=np.empty(x.shape, dtype=np.float64))
    with pytest.raises(ValueError, match="shape"):
        normalize_stamps(np.zeros(5))


# --------------------------------------------------------------------------- two-step form


def test_stats_then_apply_is_normalize_stamps_bit_for_bit():
    from gen5dask.kernels.normalize import apply_norm, norm_stats

    rng = np.random.default_rng(5)
    x = (rng.normal(2.0, 1.0, size=(5, 3, 40, 40)) ** 3).astype(np.float32)
    x[0, 1, 3, 3] = np.nan
    st_ = norm_stats(x, r_outer=12.0)
    assert st_.shape == (5, 3, 2) and st_.dtype == np.float32 and (st_[..., 1] > 0).all()
    np.testing.assert_array_equal(apply_norm(x, st_, clip=6.0),
                                  normalize_stamps(x, r_outer=12.0, clip=6.0))
    # the statistics are the outer-region median and 1.4826 MAD (numpy reference)
    r = _r(40, 40)
    vals = x[2, 0][r >= 12].astype(np.float64)
    med = np.median(vals)
    assert st_[2, 0, 0] == pytest.approx(med, rel=1e-6)
    assert st_[2, 0, 1] == pytest.approx(1.4826 * np.median(np.abs(vals - med)), rel=1e-6)
    with pytest.raises(ValueError, match="stats must be float32"):
        apply_norm(x, st_.astype(np.float64))


@pytest.mark.parametrize("channels_last", [False, True])
def test_apply_norm_into_is_normalise_then_d4(channels_last):
    from gen5dask.kernels.normalize import apply_norm, apply_norm_into, norm_stats
    from gen5dask.train.augment import d4_transform

    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 1.0, size=(16, 3, 32, 32)).astype(np.float32)
    x[:, :, 10:14, 5:9] += 30.0  # an asymmetric feature, clipped
    x[3, 2, 0, 1] = np.inf
    st_ = norm_stats(x)
    codes = np.arange(16) % 8
    src_rows = np.array([5, 0, 7, 2, 9, 11, 15, 1, 3, 4, 6, 8, 10, 12, 13, 14])
    out_rows = np.arange(16)[::-1].copy()
    shape = (16, 32, 32, 3) if channels_last else (16, 3, 32, 32)
    out = np.full(shape, np.nan, np.float32)
    apply_norm_into(x, src_rows, st_[src_rows], out, out_rows, codes=codes,
                    channels_last=channels_last)
    want = d4_transform(apply_norm(x[src_rows], st_[src_rows]), codes)
    got = out[out_rows]
    if channels_last:
        got = got.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got, want)  # bit-identical to the unfused steps


def test_d4_permutations_match_d4_transform():
    from gen5dask.kernels.normalize import d4_permutations
    from gen5dask.train.augment import d4_transform

    for H in (7, 8):
        img = np.arange(H * H, dtype=np.float32).reshape(1, 1, H, H)
        perms = d4_permutations(H, H)
        for c in range(8):
            np.testing.assert_array_equal(perms[c], d4_transform(img, np.array([c]))[0, 0].ravel())
    assert (d4_permutations(4, 6)[4:] == -1).all()


def test_outer_has_finite():
    from gen5dask.kernels.normalize import outer_has_finite

    x = np.zeros((3, 1, 40, 40), np.float32)
    r = _r(40, 40)
    x[1, 0][r >= 16] = np.nan
    x[2, 0][r >= 16] = np.nan
    x[2, 0, 0, 0] = 1.0  # one finite corner pixel is enough
    np.testing.assert_array_equal(outer_has_finite(x)[:, 0], [True, False, True])

"""Centre-mask augmentation and stamp geometry, against slow, obvious numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gen5dask.kernels.geometry import (
    annulus_mask,
    count_inside,
    disk_mask,
    radial_order,
    radius_grid,
)
from gen5dask.kernels.masking import MASK_RADIUS_COUNTER, center_mask, draw_mask_radius
from gen5dask.kernels.rng import keys_for, stage_id, uniform

STAGE = stage_id("center_mask")


def _keys(ids, *, seed=7, replicate=0, epoch=0):
    return keys_for(seed, STAGE, np.asarray(ids, dtype=np.int64), replicate, epoch)


def _radius_ref(H, W):
    """Radius of every pixel by explicit loops (pixels from (H//2, W//2))."""
    r = np.empty((H, W))
    for y in range(H):
        for x in range(W):
            r[y, x] = np.sqrt(float((y - H // 2) ** 2 + (x - W // 2) ** 2))
    return r


def center_mask_ref(images, radius, keys, annulus=None):
    """Slow reference: python loops, same random-number layout as the kernel."""
    out = images.copy()
    n, nb, H, W = images.shape
    r = _radius_ref(H, W).ravel()
    ranked = sorted(range(H * W), key=lambda p: (r[p], p))
    for i in range(n):
        masked = [p for p in ranked if r[p] < radius[i]]
        cand = [p for p in ranked if r[p] >= radius[i]]
        if annulus is not None:
            cand = [p for p in cand if annulus[0] <= r[p] < annulus[1]]
        for b in range(nb):
            src = images[i, b].ravel()
            dst = out[i, b].reshape(-1)
            for k, p in enumerate(masked):
                u = uniform(keys[i], np.uint64(b * H * W + k))
                dst[p] = src[cand[int(u * len(cand))]]
    return out


def _unique_images(rng, n, nb, H, W):
    """Images whose pixel values are all distinct (so a value identifies its source pixel)."""
    vals = rng.permutation(n * nb * H * W).astype(np.float32) + 0.5
    return vals.reshape(n, nb, H, W)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("H", "W"), [(1, 1), (5, 5), (6, 9), (64, 64), (33, 20)])
def test_radius_grid_matches_loops(H, W):
    np.testing.assert_array_equal(radius_grid(H, W), _radius_ref(H, W))


@pytest.mark.parametrize(("H", "W"), [(5, 5), (8, 11), (64, 64)])
def test_radial_order_prefixes_are_disks(H, W):
    order, r_sorted = radial_order(H, W)
    assert sorted(order.tolist()) == list(range(H * W))
    assert np.all(np.diff(r_sorted) >= 0)
    assert not order.flags.writeable
    for R in [0.0, 0.5, 1.0, 2.3, 3.0, 5.0, 100.0]:
        m = count_inside(r_sorted, R)
        assert m == np.searchsorted(r_sorted, R, side="left")
        got = np.zeros(H * W, dtype=bool)
        got[order[:m]] = True
        np.testing.assert_array_equal(got.reshape(H, W), disk_mask(H, W, R))
    a, b = count_inside(r_sorted, 2.0), count_inside(r_sorted, 4.5)
    got = np.zeros(H * W, dtype=bool)
    got[order[a:b]] = True
    np.testing.assert_array_equal(got.reshape(H, W), annulus_mask(H, W, 2.0, 4.5))


def test_radius_grid_rejects_bad_shape():
    with pytest.raises(ValueError, match="stamp shape"):
        radius_grid(0, 4)


# --------------------------------------------------------------------------- center_mask


def test_center_mask_matches_reference():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(6, 3, 15, 12)).astype(np.float32)
    radius = np.array([0.0, 1.0, 2.5, 3.0, 5.9, 7.0])
    keys = _keys(np.arange(6))
    got = center_mask(img, radius, keys)
    np.testing.assert_array_equal(got, center_mask_ref(img, radius, keys))
    got_a = center_mask(img, radius, keys, annulus=(4.0, 7.5))
    np.testing.assert_array_equal(got_a, center_mask_ref(img, radius, keys, annulus=(4.0, 7.5)))


@settings(max_examples=60, deadline=None)
@given(
    H=st.integers(3, 20),
    W=st.integers(3, 20),
    nb=st.integers(1, 3),
    n=st.integers(1, 4),
    frac=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31),
)
def test_center_mask_properties(H, W, nb, n, frac, seed):
    rng = np.random.default_rng(seed)
    img = _unique_images(rng, n, nb, H, W)
    rmax = 0.5 * min(H, W)
    radius = rng.uniform(0.0, frac * rmax + 1e-9, size=n)
    keys = _keys(rng.integers(0, 2**40, size=n))
    out = center_mask(img, radius, keys)
    r = radius_grid(H, W)
    for i in range(n):
        inside = r < radius[i]
        for b in range(nb):
            # pixels outside the mask are untouched
            np.testing.assert_array_equal(out[i, b][~inside], img[i, b][~inside])
            # every masked pixel holds a value of the same sample and band from outside the mask
            allowed = set(img[i, b][~inside].tolist())
            assert set(out[i, b][inside].tolist()) <= allowed
    # deterministic given the key, and in place gives the same answer
    np.testing.assert_array_equal(center_mask(img, radius, keys), out)
    inplace = img.copy()
    assert center_mask(inplace, radius, keys, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, out)


def test_center_mask_differs_across_keys_and_epochs():
    rng = np.random.default_rng(1)
    img = _unique_images(rng, 4, 3, 32, 32)
    radius = np.full(4, 6.0)
    ids = np.arange(100, 104)
    a = center_mask(img, radius, _keys(ids, epoch=0))
    b = center_mask(img, radius, _keys(ids, epoch=1))
    c = center_mask(img, radius, _keys(ids + 1, epoch=0))
    d = center_mask(img, radius, _keys(ids, seed=8, epoch=0))
    inside = radius_grid(32, 32) < 6.0
    for other in (b, c, d):
        for i in range(4):
            for band in range(3):
                assert not np.array_equal(a[i, band][inside], other[i, band][inside])
    # chunking does not matter: each sample depends only on its own key
    keys = _keys(ids)
    parts = np.concatenate(
        [center_mask(img[:1], radius[:1], keys[:1]), center_mask(img[1:], radius[1:], keys[1:])]
    )
    np.testing.assert_array_equal(parts, a)


def test_center_mask_fill_is_uniform_over_candidates():
    # one masked pixel (radius 0.5 masks the centre only), many keys: draws cover the outside
    H = W = 5
    n = 4000
    img = np.broadcast_to(np.arange(25, dtype=np.float32).reshape(1, 1, H, W), (n, 1, H, W))
    out = center_mask(np.ascontiguousarray(img), np.full(n, 0.5), _keys(np.arange(n)))
    centre = out[:, 0, H // 2, W // 2]
    counts = np.bincount(centre.astype(int), minlength=25)
    assert counts[12] == 0  # the masked pixel is never its own source
    observed = np.delete(counts, 12)
    assert stats.chisquare(observed).pvalue > 1e-3


def test_center_mask_annulus_draws_from_annulus_only():
    rng = np.random.default_rng(2)
    img = _unique_images(rng, 3, 2, 31, 31)
    radius = np.array([3.0, 5.0, 8.0])  # the last overlaps the annulus: its mask is excluded
    out = center_mask(img, radius, _keys([1, 2, 3]), annulus=(6.0, 10.0))
    r = radius_grid(31, 31)
    for i in range(3):
        inside = r < radius[i]
        pool = (r >= 6.0) & (r < 10.0) & ~inside
        for b in range(2):
            assert set(out[i, b][inside].tolist()) <= set(img[i, b][pool].tolist())


def test_center_mask_out_argument_and_no_mask():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 3, 9, 9)).astype(np.float32)
    keys = _keys([5, 6])
    out = np.full_like(img, np.nan)
    res = center_mask(img, np.array([2.0, 0.0]), keys, out=out)
    assert res is out
    np.testing.assert_array_equal(out, center_mask(img, np.array([2.0, 0.0]), keys))
    np.testing.assert_array_equal(out[1], img[1])  # radius 0 masks nothing


def test_center_mask_errors_name_the_row():
    img = np.zeros((3, 1, 9, 9), dtype=np.float32)
    keys = _keys([0, 1, 2])
    with pytest.raises(ValueError, match="row 1"):
        center_mask(img, np.array([1.0, -1.0, 2.0]), keys)
    with pytest.raises(ValueError, match="row 2"):
        center_mask(img, np.array([1.0, 1.0, np.nan]), keys)
    with pytest.raises(ValueError, match=r"row 2 .*no pixel outside the mask"):
        center_mask(img, np.array([1.0, 1.0, 50.0]), keys)
    with pytest.raises(ValueError, match=r"row 0 .*annulus"):
        center_mask(img, np.array([4.0, 1.0, 1.0]), keys, annulus=(1.0, 3.0))
    with pytest.raises(ValueError, match="float32"):
        center_mask(img.astype(np.float64), np.ones(3), keys)
    with pytest.raises(ValueError, match="shape"):
        center_mask(img, np.ones(2), keys)
    with pytest.raises(ValueError, match="keys"):
        center_mask(img, np.ones(3), keys[:2])
    buf = np.zeros(4 * 81, dtype=np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        center_mask(buf[:243].reshape(img.shape), np.ones(3), keys, out=buf[81:].reshape(img.shape))
    with pytest.raises(ValueError, match="annulus"):
        center_mask(img, np.ones(3), keys, annulus=(3.0, 2.0))


# --------------------------------------------------------------------------- draw_mask_radius


def test_draw_mask_radius_uniform_matches_reference():
    keys = _keys(np.arange(2000))
    r = draw_mask_radius(keys, rmin=3.0, rmax=7.0)
    ref = np.array([3.0 + 4.0 * uniform(k, np.uint64(MASK_RADIUS_COUNTER)) for k in keys])
    np.testing.assert_array_equal(r, ref)
    assert r.dtype == np.float64
    assert np.all((r >= 3.0) & (r < 7.0))
    assert stats.kstest((r - 3.0) / 4.0, "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(draw_mask_radius(keys), r)  # defaults are U[3, 7]
    other = draw_mask_radius(_keys(np.arange(2000), epoch=1))
    assert not np.array_equal(r, other)


def test_draw_mask_radius_psf_law():
    keys = _keys([0, 1])
    r = draw_mask_radius(keys, law="psf", psfsize_r_arcsec=np.array([1.31, 0.786]))
    np.testing.assert_allclose(r, [2.5, 1.5])
    r2 = draw_mask_radius(keys, law="psf", psfsize_r_arcsec=np.array([1.0, 2.0]), pixscale=0.5)
    np.testing.assert_allclose(r2, [1.0, 2.0])


def test_draw_mask_radius_errors():
    keys = _keys([0, 1])
    with pytest.raises(ValueError, match="psfsize_r_arcsec"):
        draw_mask_radius(keys, law="psf")
    with pytest.raises(ValueError, match="row 1"):
        draw_mask_radius(keys, law="psf", psfsize_r_arcsec=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="rmin"):
        draw_mask_radius(keys, rmin=5.0, rmax=4.0)
    with pytest.raises(ValueError, match="law"):
        draw_mask_radius(keys, law="gauss")

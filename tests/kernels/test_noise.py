"""Deterministic, keyed noise for injected light."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen5dask.kernels.noise import POISSON_SALT, add_light_into, add_noise
from gen5dask.kernels.rng import keys_for, normal, splitmix64, stage_id, uniform


def _shot(lam, kp, c, gain):
    """Reference shot-noise term of one pixel (nanomaggies) for Poisson mean ``lam``
    (electrons): inverse-CDF Poisson below 30, Gaussian above, on the pixel's counter keys."""
    if 0 < lam < 30:
        u = uniform(kp, c)
        k, p = 0, math.exp(-lam)
        cdf = p
        while u > cdf:
            k += 1
            p *= lam / k
            cdf += p
        return (k - lam) / gain
    if lam >= 30:
        return np.sqrt(lam) * normal(kp, c) / gain
    return 0.0


def _keys(n, seed=7, epoch=0):
    return keys_for(seed, stage_id("inject"), np.arange(n, dtype=np.int64), 0, epoch)


def _reference(arc, invvar, keys, gain=None):
    """Slow python loop over the same counter-based draws."""
    out = np.array(arc, dtype=np.float64)
    n, nb, h, w = arc.shape
    for i in range(n):
        kp = splitmix64(np.uint64(keys[i]) ^ POISSON_SALT)
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    iv = invvar[i, b, y, x]
                    if iv == 0:
                        continue
                    c = (b * h + y) * w + x
                    v = arc[i, b, y, x] + normal(keys[i], c) / np.sqrt(iv)
                    if gain is not None:
                        v += _shot(max(arc[i, b, y, x], 0.0) * gain, kp, c, gain)
                    out[i, b, y, x] = v
    return out.astype(np.float32)


def test_matches_reference_loop():
    rng = np.random.default_rng(0)
    arc = rng.uniform(0, 3, (2, 2, 4, 5))
    arc[0, 0, 0, 0] = 40.0  # large-lambda branch
    iv = rng.uniform(1, 100, arc.shape)
    iv[1, 0, 2, 3] = 0.0
    keys = _keys(2)
    np.testing.assert_array_equal(add_noise(arc, iv, keys), _reference(arc, iv, keys))
    np.testing.assert_allclose(
        add_noise(arc, iv, keys, poisson=True, gain=2.0),
        _reference(arc, iv, keys, gain=2.0), rtol=1e-6,
    )


def test_deterministic_and_chunk_independent():
    rng = np.random.default_rng(1)
    arc = rng.uniform(0, 1, (6, 3, 8, 8))
    iv = np.full(arc.shape, 25.0)
    keys = _keys(6)
    a = add_noise(arc, iv, keys, poisson=True, gain=5.0)
    b = add_noise(arc, iv, keys, poisson=True, gain=5.0)
    np.testing.assert_array_equal(a, b)
    # any chunking/order gives the same result per sample
    c = add_noise(arc[[4, 1]], iv[[4, 1]], keys[[4, 1]], poisson=True, gain=5.0)
    np.testing.assert_array_equal(c, a[[4, 1]])
    # another epoch draws different noise
    d = add_noise(arc, iv, _keys(6, epoch=1))
    assert not np.allclose(d, add_noise(arc, iv, keys))


def test_invvar_zero_keeps_pixel_and_statistics():
    arc = np.full((4, 3, 64, 64), 0.5)
    iv = np.full(arc.shape, 16.0)  # sigma = 0.25
    iv[:, :, :4] = 0.0
    out = add_noise(arc, iv, _keys(4))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, :4], arc[:, :, :4].astype(np.float32))
    resid = (out[:, :, 4:] - 0.5).ravel()
    assert abs(resid.mean()) < 0.005
    assert resid.std() == pytest.approx(0.25, rel=0.02)


@pytest.mark.parametrize("lam", [0.7, 6.0, 80.0])
def test_poisson_variance(lam):
    gain = 4.0
    arc = np.full((8, 1, 64, 64), lam / gain)
    iv = np.full(arc.shape, 1e12)  # negligible Gaussian term
    out = add_noise(arc, iv, _keys(8), poisson=True, gain=gain).astype(np.float64)
    counts = out * gain
    assert counts.mean() == pytest.approx(lam, rel=0.02)
    assert counts.var() == pytest.approx(lam, rel=0.04)


def test_bad_inputs():
    arc = np.zeros((2, 1, 3, 3))
    keys = _keys(2)
    with pytest.raises(ValueError, match="gain"):
        add_noise(arc, np.ones_like(arc), keys, poisson=True)
    with pytest.raises(ValueError, match="gain"):
        add_noise(arc, np.ones_like(arc), keys, poisson=True, gain=0.0)
    iv = np.ones_like(arc)
    iv[1, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="sample index 1"):
        add_noise(arc, iv, keys)
    with pytest.raises(ValueError, match="keys"):
        add_noise(arc, np.ones_like(arc), keys[:1])
    with pytest.raises(ValueError, match="invvar shape"):
        add_noise(arc, np.ones((2, 1, 3, 4)), keys)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**62), sid=st.integers(0, 2**40))
def test_property_same_key_same_noise(seed, sid):
    arc = np.zeros((1, 2, 5, 5))
    iv = np.ones_like(arc)
    k = keys_for(seed, stage_id("inject"), np.array([sid], dtype=np.int64), 0, 0)
    a = add_noise(arc, iv, k)
    np.testing.assert_array_equal(a, add_noise(arc, iv, k.copy()))
    assert np.all(np.isfinite(a)) and a.std() > 0


def test_sky_false_adds_only_shot_noise():
    rng = np.random.default_rng(3)
    arc = np.abs(rng.normal(0, 1, (2, 3, 8, 8)))
    arc[0, :, :4] = 0.0
    iv = np.full(arc.shape, 4.0)
    keys = np.array([11, 12], dtype=np.uint64)
    assert np.array_equal(add_noise(arc, iv, keys, sky=False), arc.astype(np.float32))
    shot = add_noise(arc, iv, keys, sky=False, poisson=True, gain=50.0)
    assert np.array_equal(shot[0, :, :4], np.zeros((3, 4, 8), np.float32))  # no light, no noise
    both = add_noise(arc, iv, keys, poisson=True, gain=50.0)
    sky_only = add_noise(arc, iv, keys) - arc
    assert np.allclose(both - sky_only, shot, atol=1e-5)  # independent streams add up


def _shot_reference_into(image, rows, arc, invvar, keys, gain):
    """Slow python loop: ``image[rows[i]] += float32(arc + shot noise)`` where non-zero."""
    out = image.copy()
    n, nb, h, w = arc.shape
    for i in range(n):
        kp = splitmix64(np.uint64(keys[i]) ^ POISSON_SALT)
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    v = float(arc[i, b, y, x])
                    if invvar[rows[i], b, y, x] > 0:
                        v += _shot(max(v, 0.0) * gain, kp, (b * h + y) * w + x, gain)
                    light = np.float32(v)
                    if light != 0:
                        out[rows[i], b, y, x] = np.float32(out[rows[i], b, y, x] + light)
    return out


def _light_case(seed=1):
    rng = np.random.default_rng(seed)
    shape = (5, 3, 6, 7)
    image = rng.normal(0, 0.01, shape).astype(np.float32)
    invvar = rng.uniform(1e3, 1e5, shape).astype(np.float32)
    invvar[2, 1, 3, :] = 0.0  # no data: the arc goes in noise-free
    # arcs spanning the regimes: exactly 0, negative (FFT ringing), tiny lambda (the k = 0
    # shortcut), lambda of a few and >= 30 (Gaussian branch)
    arc = (10.0 ** rng.uniform(-12, -1.5, (3, 3, 6, 7))).astype(np.float32)
    arc[0, 0, :2] = 0.0
    arc[1, 2, 0, :3] = -1e-9
    arc[2, 0, 0, 0] = 0.05  # lambda 150 at gain 3000
    rows = np.array([4, 2, 0])
    return image, rows, arc, invvar, _keys(3)


def test_add_light_into_matches_reference_loop():
    image, rows, arc, invvar, keys = _light_case()
    got = image.copy()
    add_light_into(got, rows, arc, invvar, keys, poisson=True, gain=3000.0)
    want = _shot_reference_into(image, rows, arc, invvar, keys, 3000.0)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    untouched = [1, 3]  # rows without an arc keep the host bit for bit
    np.testing.assert_array_equal(got[untouched].view(np.uint32), image[untouched].view(np.uint32))


def test_add_light_into_equals_add_noise_path():
    """Bit for bit what the stage did before: ``image[rows] + add_noise(sky=False)`` where the
    noisy light is non-zero (and ``arc`` itself without shot noise)."""
    image, rows, arc, invvar, keys = _light_case(2)
    for poisson in (True, False):
        got = image.copy()
        add_light_into(got, rows, arc, invvar, keys, poisson=poisson, gain=3000.0)
        noisy = (
            add_noise(arc, invvar[rows], keys, poisson=True, gain=3000.0, sky=False)
            if poisson else arc
        )
        sub = image[rows]
        np.add(sub, noisy, out=sub, where=noisy != 0)
        want = image.copy()
        want[rows] = sub
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_add_light_into_errors():
    image, rows, arc, invvar, keys = _light_case()
    bad = invvar.copy()
    bad[2, 1, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"invvar .*sample index 1, band index 1"):
        add_light_into(image.copy(), rows, arc, bad, keys, poisson=True, gain=3000.0)
    nan_arc = arc.copy()
    nan_arc[2, 2, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"arc .*sample index 2, band index 2"):
        add_light_into(image.copy(), rows, nan_arc, invvar, keys, poisson=True, gain=3000.0)
    with pytest.raises(ValueError, match="gain"):
        add_light_into(image.copy(), rows, arc, invvar, keys, poisson=True, gain=0.0)
    with pytest.raises(ValueError, match="float32"):
        add_light_into(image.astype(np.float64), rows, arc, invvar, keys, poisson=True, gain=1.0)
    with pytest.raises(ValueError, match="rows must lie"):
        add_light_into(image.copy(), rows + 3, arc, invvar, keys, poisson=True, gain=1.0)

"""Brightness, arc S/N (and its exact inverse), visibility proxy and mask fractions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen5dask.kernels.photometry import (
    BAD_PIXEL_BITS,
    BAD_PIXEL_MASK,
    MASKBITS,
    WISE_BITS,
    WISE_MASK,
    arc_snr,
    bad_pixel_frac,
    bit_mask,
    core_brightness,
    solve_amplitude_for_arc_snr,
    visibility_proxy,
    wise_mask_frac,
)


def _r(H, W):
    yy, xx = np.indices((H, W))
    return np.hypot(yy - H // 2, xx - W // 2)


# --------------------------------------------------------------------------- references


def core_brightness_ref(img, radius=8.0, annulus=(8.0, 16.0)):
    r = _r(*img.shape)
    ok = np.isfinite(img)
    core = img[(r < radius) & ok]
    ann = img[(r >= annulus[0]) & (r < annulus[1]) & ok]
    return np.median(core), np.sum(core - np.median(ann))


def arc_snr_ref(a, iv):
    a = a.astype(np.float64).ravel()
    iv = iv.astype(np.float64).ravel()
    good = iv > 0
    sigma = 1.0 / np.sqrt(iv[good])
    ag = a[good]
    A = ag >= sigma
    snr = ag[A].sum() / np.sqrt(np.sum(1.0 / iv[good][A])) if A.any() else 0.0
    peak = np.max(ag * np.sqrt(iv[good])) if good.any() else 0.0
    return snr, peak


def solve_ref(u, iv, target):
    """Brute force over every candidate amplitude (thresholds and per-set linear solutions)."""
    u = u.astype(np.float64).ravel()
    iv = iv.astype(np.float64).ravel()
    use = (iv > 0) & (u > 0)
    if target <= 0:
        return 0.0
    if not use.any():
        return np.inf
    thr = (1.0 / np.sqrt(iv[use])) / u[use]
    # a threshold may miss its own pixel by rounding (fl(t * u) < sigma): try a few ulps above
    up1 = np.nextafter(thr, np.inf)
    cands = list(thr) + list(up1) + list(np.nextafter(up1, np.inf))
    for t in np.unique(thr):
        sel = thr <= t
        cands.append(target * np.sqrt(np.sum(1.0 / iv[use][sel])) / np.sum(u[use][sel]))
    ok = [c for c in cands if arc_snr_ref(c * u, iv)[0] >= target * (1 - 1e-12)]
    return min(ok)


def visibility_ref(img, r_in=4.0, r_out=16.0, model="azimuthal_median", w=1.0):
    r = _r(*img.shape)
    outer = img[r >= r_out]
    med_o = np.median(outer)
    sig = 1.4826 * np.median(np.abs(outer - med_o))
    if sig == 0:
        sig = np.std(outer)
    ann = (r >= r_in) & (r < r_out)
    if model == "none":
        energy = np.sum(img[ann] - med_o)
    else:
        bins = np.floor(r / w)
        energy = 0.0
        for b in np.unique(bins[ann]):
            in_bin = bins == b
            energy += np.sum(img[in_bin & ann] - np.median(img[in_bin]))
    N = ann.sum()
    return energy / (sig * np.sqrt(N)), energy / (sig * N)


# --------------------------------------------------------------------------- core brightness


def test_core_brightness_matches_reference():
    rng = np.random.default_rng(0)
    img = rng.normal(0.1, 1.0, size=(5, 41, 40))
    img[:, 20, 20] += 30.0
    img[2, 18:22, 18:22] = np.nan  # non-finite pixels are left out
    med, exc = core_brightness(img)
    for i in range(5):
        ref = core_brightness_ref(img[i])
        assert med[i] == pytest.approx(ref[0], rel=1e-12, abs=1e-12)
        assert exc[i] == pytest.approx(ref[1], rel=1e-12, abs=1e-12)
    med2, exc2 = core_brightness(img.astype(np.float32), radius_pix=5.0, annulus=(6.0, 12.0))
    for i in range(5):
        ref = core_brightness_ref(img[i].astype(np.float32), 5.0, (6.0, 12.0))
        assert med2[i] == pytest.approx(ref[0], rel=1e-6, abs=1e-6)
        assert exc2[i] == pytest.approx(ref[1], rel=1e-5, abs=1e-4)


def test_core_brightness_planted_values_and_errors():
    img = np.zeros((2, 33, 33))
    r = _r(33, 33)
    img[0][r < 8] = 2.0
    img[0][(r >= 8) & (r < 16)] = 0.5
    res = core_brightness(img)
    n_core = int((r < 8).sum())
    np.testing.assert_allclose(res.median_core, [2.0, 0.0])
    np.testing.assert_allclose(res.excess_sum, [1.5 * n_core, 0.0])
    img[1][:] = np.nan
    res = core_brightness(img)
    assert np.isnan(res.median_core[1]) and np.isnan(res.excess_sum[1])
    with pytest.raises(ValueError, match="annulus"):
        core_brightness(img, annulus=(16.0, 8.0))
    with pytest.raises(ValueError, match="radius_pix"):
        core_brightness(img, radius_pix=-1.0)


# --------------------------------------------------------------------------- arc S/N


def _random_arc(rng, n, H, W, *, zero_frac=0.1):
    a = rng.gamma(0.6, 1.0, size=(n, H, W)) * (rng.random((n, H, W)) > 0.3)
    iv = rng.uniform(0.5, 4.0, size=(n, H, W))
    iv[rng.random((n, H, W)) < zero_frac] = 0.0
    return a, iv


def test_arc_snr_matches_reference():
    rng = np.random.default_rng(1)
    a, iv = _random_arc(rng, 8, 12, 13)
    a[3] = 0.0  # A empty -> 0
    iv[4] = 0.0  # no good pixel -> 0, 0
    snr, peak = arc_snr(a.astype(np.float32), iv.astype(np.float32))
    for i in range(8):
        ref = arc_snr_ref(a[i].astype(np.float32), iv[i].astype(np.float32))
        assert snr[i] == pytest.approx(ref[0], rel=1e-12, abs=0)
        assert peak[i] == pytest.approx(ref[1], rel=1e-12, abs=0)
    assert snr[3] == 0.0 and snr[4] == 0.0 and peak[4] == 0.0


def test_arc_snr_single_pixel_and_named_fields():
    a = np.zeros((1, 5, 5))
    iv = np.full((1, 5, 5), 4.0)  # sigma = 0.5
    a[0, 2, 2] = 3.0
    a[0, 1, 1] = 0.4  # below sigma: not in A
    res = arc_snr(a, iv)
    assert res.arc_snr[0] == pytest.approx(3.0 / 0.5)
    assert res.arc_snr_peak[0] == pytest.approx(6.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), s1=st.floats(0.05, 20.0), ratio=st.floats(1.0, 3.0))
def test_arc_snr_linear_while_set_fixed_and_set_grows(seed, s1, ratio):
    rng = np.random.default_rng(seed)
    u, iv = _random_arc(rng, 1, 9, 9)
    s2 = s1 * ratio
    sigma = np.where(iv > 0, 1.0 / np.sqrt(np.where(iv > 0, iv, 1.0)), np.inf)
    A1 = (s1 * u >= sigma) & (iv > 0)
    A2 = (s2 * u >= sigma) & (iv > 0)
    assert np.all(A2[A1])  # A only grows with the amplitude
    f1 = arc_snr(s1 * u, iv).arc_snr[0]
    f2 = arc_snr(s2 * u, iv).arc_snr[0]
    if np.array_equal(A1, A2) and A1.any():
        assert f2 == pytest.approx(f1 * ratio, rel=1e-12)  # linear while A is fixed


def test_arc_snr_is_not_monotone_across_a_threshold():
    # documented property: a bright pixel alone has S/N 10; a faint noisy pixel entering A at
    # s = 1 adds 1 sigma of signal and 1 sigma of noise, so the S/N drops to 11 / sqrt(2)
    u = np.array([[[10.0, 1.0]]])
    iv = np.ones((1, 1, 2))
    below = arc_snr(0.999 * u, iv).arc_snr[0]
    at = arc_snr(1.0 * u, iv).arc_snr[0]
    assert below == pytest.approx(9.99)
    assert at == pytest.approx(11.0 / np.sqrt(2.0))
    # the solver returns the first crossing
    assert solve_amplitude_for_arc_snr(u, iv, 9.0)[0] == pytest.approx(0.9, rel=1e-12)
    assert solve_amplitude_for_arc_snr(u, iv, 8.0)[0] == pytest.approx(0.8, rel=1e-12)


# --------------------------------------------------------------------------- solver


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    H=st.integers(2, 10),
    W=st.integers(2, 10),
    s0=st.floats(0.01, 100.0),
)
def test_solver_is_exact_on_attained_targets(seed, H, W, s0):
    """arc_snr(solve(T) * arc) == T to 1e-9 for any T = arc_snr(s0 * arc) (attained by design)."""
    rng = np.random.default_rng(seed)
    u, iv = _random_arc(rng, 3, H, W)
    target = arc_snr(s0 * u, iv).arc_snr
    s = solve_amplitude_for_arc_snr(u, iv, target)
    for i in range(3):
        if target[i] == 0:
            assert s[i] == 0.0
            continue
        assert s[i] <= s0 * (1 + 1e-12)  # the smallest amplitude reaching T
        got = arc_snr(s[i] * u[i : i + 1], iv[i : i + 1]).arc_snr[0]
        assert got == pytest.approx(target[i], rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), target=st.floats(0.1, 60.0))
def test_solver_matches_brute_force_first_crossing(seed, target):
    rng = np.random.default_rng(seed)
    u, iv = _random_arc(rng, 2, 6, 7)
    s = solve_amplitude_for_arc_snr(u, iv, target)
    for i in range(2):
        ref = solve_ref(u[i], iv[i], target)
        assert s[i] == pytest.approx(ref, rel=1e-9)
        f = arc_snr(s[i] * u[i : i + 1], iv[i : i + 1]).arc_snr[0]
        assert f >= target * (1 - 1e-12)
        # just below the answer the target is not reached
        f_below = arc_snr(s[i] * (1 - 1e-9) * u[i : i + 1], iv[i : i + 1]).arc_snr[0]
        assert f_below < target


def test_solver_edge_cases():
    rng = np.random.default_rng(3)
    u, iv = _random_arc(rng, 5, 8, 8)
    u[2] = 0.0  # all-zero arc: unreachable
    iv[3] = 0.0  # no data: unreachable
    s = solve_amplitude_for_arc_snr(u, iv, np.array([0.0, -3.0, 5.0, 5.0, 5.0]))
    assert s[0] == 0.0 and s[1] == 0.0
    assert np.isinf(s[2]) and np.isinf(s[3])
    assert np.isfinite(s[4]) and s[4] > 0
    # a target below the first non-zero value (1) gives the first threshold, where f = 1
    one = np.zeros((1, 3, 3))
    one[0, 1, 1] = 2.0
    s1 = solve_amplitude_for_arc_snr(one, np.full((1, 3, 3), 4.0), 0.3)
    assert s1[0] == pytest.approx(0.25)
    assert arc_snr(s1[0] * one, np.full((1, 3, 3), 4.0)).arc_snr[0] == pytest.approx(1.0)
    # float32 inputs and a scalar target broadcast
    s32 = solve_amplitude_for_arc_snr(u.astype(np.float32), iv.astype(np.float32), 5.0)
    assert s32.shape == (5,)
    with pytest.raises(ValueError, match="NaN at row 1"):
        solve_amplitude_for_arc_snr(u, iv, np.array([1.0, np.nan, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        solve_amplitude_for_arc_snr(u, iv[:, :4], 1.0)
    with pytest.raises(ValueError, match="one value per sample"):
        solve_amplitude_for_arc_snr(u, iv, np.ones(3))


def test_solver_handles_ties_at_one_threshold():
    u = np.full((1, 4, 4), 2.0)
    iv = np.full((1, 4, 4), 1.0)  # every pixel enters at s = 0.5, where f = 16 / 4 = 4
    s = solve_amplitude_for_arc_snr(u, iv, np.array([3.0, 4.0, 6.0]).reshape(3)[:1])
    assert s[0] == pytest.approx(0.5)
    s6 = solve_amplitude_for_arc_snr(u, iv, 6.0)
    assert arc_snr(s6[0] * u, iv).arc_snr[0] == pytest.approx(6.0, rel=1e-12)


@pytest.mark.parametrize("target", [0.5, 3.0, 12.0, 40.0, 150.0])
def test_solver_matches_brute_force_on_a_symmetric_ring(target):
    """A mirror-symmetric ring (many exactly tied thresholds) on a stamp-like grid: the lazy
    heap walk stops early for faint targets and walks most pixels for bright ones; both agree
    with the brute force."""
    y, x = np.mgrid[-12:12, -12:12] + 0.5
    r = np.hypot(x, y)
    u = np.exp(-0.5 * ((r - 6.0) / 1.5) ** 2)[None]
    iv = np.full(u.shape, 2.0)
    iv[0, :3] = 0.0  # a strip without data
    s = solve_amplitude_for_arc_snr(u, iv, target)[0]
    assert s == pytest.approx(solve_ref(u[0], iv[0], target), rel=1e-9)
    assert arc_snr(s * u, iv).arc_snr[0] >= target * (1 - 1e-12)


# --------------------------------------------------------------------------- visibility proxy


def _lens_scene(rng, *, arc=0.0, ring=0.0, size=48):
    r = _r(size, size)
    yy, xx = np.indices((size, size))
    phi = np.arctan2(yy - size // 2, xx - size // 2)
    lens = 20.0 * np.exp(-((r / 3.0) ** 1.0))  # round lens light
    noise = rng.normal(0.0, 1.0, size=(size, size))
    band = np.exp(-0.5 * ((r - 8.0) / 1.0) ** 2)
    arc_img = arc * band * (np.abs(phi - 0.5) < np.pi / 4)  # a 90-degree arc at r = 8
    return lens + noise + arc_img + ring * band + 0.3  # + sky


def test_visibility_proxy_matches_reference():
    rng = np.random.default_rng(4)
    imgs = np.stack([_lens_scene(rng, arc=a) for a in (0.0, 3.0, 6.0)])
    for model in ("azimuthal_median", "none"):
        for w in (1.0, 1.5):
            snr, pp = visibility_proxy(imgs, model=model, bin_width_pix=w)
            for i in range(3):
                ref = visibility_ref(imgs[i], model=model, w=w)
                assert snr[i] == pytest.approx(ref[0], rel=1e-9, abs=1e-9)
                assert pp[i] == pytest.approx(ref[1], rel=1e-9, abs=1e-12)


def test_visibility_proxy_planted_arc_vs_none_and_complete_ring():
    rng = np.random.default_rng(5)
    none = np.stack([_lens_scene(rng) for _ in range(20)])
    arcs = np.stack([_lens_scene(rng, arc=10.0) for _ in range(20)])  # peak 10 sigma
    ring = np.stack([_lens_scene(rng, ring=3.0) for _ in range(20)])
    s_none = visibility_proxy(none).snr
    s_arc = visibility_proxy(arcs).snr
    s_ring = visibility_proxy(ring).snr
    assert np.all(np.abs(s_none) < 4.0)
    assert np.all(s_arc > 4.0)
    assert np.all(np.abs(s_ring) < 4.0)  # the azimuthal-median model removes a complete ring
    assert np.all(visibility_proxy(ring, model="none").snr > 20.0)
    # the per-pixel variant is the same energy divided by N instead of sqrt(N)
    res = visibility_proxy(arcs)
    n_ann = int(((_r(48, 48) >= 4) & (_r(48, 48) < 16)).sum())
    np.testing.assert_allclose(res.per_pixel, res.snr / np.sqrt(n_ann), rtol=1e-12)


def test_visibility_proxy_degenerate_and_errors():
    flat = np.zeros((1, 40, 40))
    snr, pp = visibility_proxy(flat)
    assert np.isnan(snr[0]) and np.isnan(pp[0])  # zero outer noise: undefined, not inf
    with pytest.raises(ValueError, match="model"):
        visibility_proxy(flat, model="sersic")
    with pytest.raises(ValueError, match="no pixel with r >= r_out"):
        visibility_proxy(np.zeros((1, 9, 9)))
    with pytest.raises(ValueError, match="bin_width_pix"):
        visibility_proxy(flat, bin_width_pix=0.0)


# --------------------------------------------------------------------------- mask fractions


def test_maskbit_constants():
    assert MASKBITS["NPRIMARY"] == 0 and MASKBITS["BRIGHT"] == 1
    assert [MASKBITS[b] for b in ("SATUR_G", "SATUR_R", "SATUR_Z")] == [2, 3, 4]
    assert [MASKBITS[b] for b in ("ALLMASK_G", "ALLMASK_R", "ALLMASK_Z")] == [5, 6, 7]
    assert [MASKBITS[b] for b in WISE_BITS] == [8, 9]
    assert MASKBITS["BAILOUT"] == 10 and MASKBITS["MEDIUM"] == 11
    assert BAD_PIXEL_MASK == sum(1 << b for b in (0, 1, 2, 3, 4, 5, 6, 7, 10, 11))
    assert WISE_MASK == (1 << 8) | (1 << 9)
    assert len(BAD_PIXEL_BITS) == 10
    with pytest.raises(ValueError, match="unknown MASKBITS name"):
        bit_mask(["NOPE"])


def test_mask_fractions_on_planted_bits():
    mb = np.zeros((4, 10, 10), dtype=np.int32)
    mb[0].flat[:7] = 1 << MASKBITS["BRIGHT"]
    mb[0].flat[7:10] = (1 << MASKBITS["GALAXY"]) | (1 << MASKBITS["CLUSTER"])  # not counted
    mb[1].flat[:25] = 1 << MASKBITS["WISEM2"]  # WISE only
    mb[1].flat[20:30] |= 1 << MASKBITS["MEDIUM"]
    mb[2][:] = (1 << MASKBITS["SATUR_Z"]) | (1 << MASKBITS["WISEM1"])
    np.testing.assert_allclose(bad_pixel_frac(mb), [0.07, 0.10, 1.0, 0.0])
    np.testing.assert_allclose(wise_mask_frac(mb), [0.0, 0.25, 1.0, 0.0])
    rng = np.random.default_rng(6)
    rand = rng.integers(0, 1 << 14, size=(5, 13, 11)).astype(np.int32)
    rand[rng.random(rand.shape) < 0.8] = 0
    ref_bad = ((rand & BAD_PIXEL_MASK) != 0).mean(axis=(1, 2))
    ref_wise = ((rand & WISE_MASK) != 0).mean(axis=(1, 2))
    np.testing.assert_allclose(bad_pixel_frac(rand), ref_bad, rtol=0, atol=1e-15)
    np.testing.assert_allclose(wise_mask_frac(rand.astype(np.int64)), ref_wise, atol=1e-15)
    with pytest.raises(ValueError, match="integer"):
        bad_pixel_frac(rand.astype(np.float32))

"""Moffat kernels, PSF-image validation and linear convolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from gen5dask.kernels import psf


def _centroid(img):
    yy, xx = np.indices(img.shape)
    return (img * yy).sum() / img.sum(), (img * xx).sum() / img.sum()


@pytest.mark.parametrize("fwhm", [0.8, 2.0, 4.5, 7.3])
def test_moffat_kernel_properties(fwhm):
    k = psf.moffat_kernel(fwhm)
    assert k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    c = k.shape[0] // 2
    assert np.unravel_index(np.argmax(k), k.shape) == (c, c)
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    # half maximum at FWHM / 2 from the centre (on the sampled profile)
    alpha = psf.moffat_alpha(fwhm)
    r = fwhm / 2
    assert (1 + (r / alpha) ** 2) ** -3.5 == pytest.approx(0.5, rel=1e-12)
    # the default size holds >= 99.9 % of the untruncated Moffat
    big = psf.moffat_kernel(fwhm, size=2 * int(40 * fwhm) + 1)
    cb = big.shape[0] // 2
    inner = big[cb - c : cb + c + 1, cb - c : cb + c + 1].sum()
    assert inner >= 0.999


def test_moffat_matches_numpy_formula():
    k = psf.moffat_kernel(3.0, beta=2.5, size=15)
    yy, xx = np.indices((15, 15)) - 7
    alpha = 3.0 / (2 * np.sqrt(2 ** (1 / 2.5) - 1))
    ref = (1 + (xx**2 + yy**2) / alpha**2) ** -2.5
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_fwhm_raises(bad):
    with pytest.raises(ValueError, match="fwhm"):
        psf.moffat_kernel(bad)


def test_check_fwhm_names_sample_and_band():
    f = np.ones((4, 3))
    f[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"sample index 2, band 'r'"):
        psf.check_fwhm(f, bands=["g", "r", "z"])
    f[2, 1] = 0.0
    with pytest.raises(ValueError, match=r"\[2, 1\]"):
        psf.check_fwhm(f)


def test_normalise_psf_image():
    img = np.ones((5, 7)) * 2
    out = psf.normalise_psf_image(img)
    assert out.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd"):
        psf.normalise_psf_image(np.ones((4, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        psf.normalise_psf_image(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="positive"):
        psf.normalise_psf_image(-np.ones((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        psf.normalise_psf_image(np.ones(3))


def test_point_source_stays_centred_and_keeps_flux():
    img = np.zeros((64, 64))
    img[32, 32] = 7.0
    for fwhm in (1.1, 3.8, 6.0):
        out = psf.convolve(img, psf.moffat_kernel(fwhm))
        cy, cx = _centroid(out)
        assert abs(cy - 32) < 0.01 and abs(cx - 32) < 0.01
        assert out.sum() == pytest.approx(7.0, rel=1e-4)


def test_convolve_is_linear_not_circular():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(20, 23))
    ker = psf.normalise_psf_image(rng.uniform(size=(7, 5)))
    ref = signal.convolve2d(img, ker, mode="same", boundary="fill")
    np.testing.assert_allclose(psf.convolve(img, ker), ref, atol=1e-12)
    # light at the left edge must not appear at the right edge
    edge = np.zeros((16, 16))
    edge[8, 0] = 1.0
    out = psf.convolve(edge, psf.moffat_kernel(3.0))
    assert np.abs(out[:, -3:]).max() < 1e-3 * out.max()
    assert out.sum() < 1.0  # flux blurred off the stamp is lost, not wrapped


def test_convolve_bands_equals_per_band_convolution():
    rng = np.random.default_rng(1)
    h, k = 12, 5
    region = rng.uniform(size=(2, h + k - 1, h + k - 1))
    kernels = np.stack([
        np.stack([psf.moffat_kernel(f, size=k) for f in fw]) for fw in ([1.0, 2.0], [1.5, 1.2])
    ])
    amps = np.array([[1.0, 2.0], [3.0, 0.5]])
    got = psf.convolve_bands(region, kernels, amps, stamp_shape=(h, h), dtype=np.float64)
    for i in range(2):
        for b in range(2):
            full = signal.convolve2d(region[i], kernels[i, b], mode="same")
            np.testing.assert_allclose(got[i, b], amps[i, b] * full[2:-2, 2:-2], atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    fwhm=st.floats(0.5, 8.0),
    y=st.integers(20, 43),
    x=st.integers(20, 43),
    flux=st.floats(1e-3, 1e3),
)
def test_property_flux_conserved_when_inside(fwhm, y, x, flux):
    img = np.zeros((64, 64))
    img[y, x] = flux
    k = psf.moffat_kernel(fwhm, size=31)
    out = psf.convolve(img, k)
    # the whole kernel lands on the stamp: flux kept to rounding
    assert out.sum() == pytest.approx(flux, rel=1e-9)
    cy, cx = _centroid(out)
    assert abs(cy - y) < 0.01 and abs(cx - x) < 0.01


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize(("h", "w", "k"), [(12, 12, 5), (17, 10, 7), (9, 14, 1)])
def test_convolve_bands_paths_match_direct_convolution(symmetric, h, w, k):
    # Moffat kernels take the real-even (DCT-I) path, asymmetric ones the rfft2 path; both
    # must equal the direct linear convolution, also for non-square stamps and odd FFT sizes
    rng = np.random.default_rng(7)
    region = rng.uniform(size=(3, h + k - 1, w + k - 1))
    if symmetric:
        kernels = np.stack([
            np.stack([psf.moffat_kernel(f, size=k) for f in rng.uniform(0.8, 3.0, 2)])
            for _ in range(3)
        ])
    else:
        kernels = rng.uniform(size=(3, 2, k, k))
        kernels /= kernels.sum(axis=(2, 3), keepdims=True)
    assert psf._is_mirror_symmetric(kernels) == (symmetric or k == 1)
    amps = rng.uniform(0.5, 3.0, (3, 2))
    got = psf.convolve_bands(region, kernels, amps, stamp_shape=(h, w), dtype=np.float64)
    assert got.shape == (3, 2, h, w)
    r = k // 2
    for i in range(3):
        for b in range(2):
            full = signal.convolve2d(region[i], kernels[i, b], mode="same")
            want = amps[i, b] * full[r : r + h, r : r + w]
            np.testing.assert_allclose(got[i, b], want, atol=1e-12 * np.abs(want).max())
    f32 = psf.convolve_bands(region, kernels, amps, stamp_shape=(h, w))
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, got, atol=2e-6 * np.abs(got).max())

"""Colour composites, azimuthal-median residuals and PNG stamps (gen5dask.viz)."""

import io

import numpy as np
import pytest
from PIL import Image

from gen5dask import store
from gen5dask.kernels.photometry import visibility_proxy
from gen5dask.store.testing import fake_chunk
from gen5dask.viz import (
    LEGACY_RGB_SCALES,
    azimuthal_median_model,
    png_bytes,
    residual_image,
    rgb_composite,
    robust_sigma,
    stamp_gallery_items,
)

S = 32


def _radius(h, w):
    yy, xx = np.mgrid[:h, :w]
    return np.hypot(yy - h // 2, xx - w // 2)


def _viewer_rgb_reference(imgs, bands, m=0.03, Q=20.0):
    """Legacy Surveys viewer ``sdss_rgb`` with the ``dr2_rgb`` scales, transcribed literally."""
    scales = {"g": (2, 6.0), "r": (1, 3.4), "z": (0, 2.2)}
    intensity = 0
    for img, band in zip(imgs, bands, strict=True):
        _, scale = scales[band]
        intensity = intensity + np.maximum(0, img * scale + m)
    intensity = intensity / len(bands)
    f = np.arcsinh(Q * intensity) / np.sqrt(Q)
    intensity = intensity + (intensity == 0.0) * 1e-6
    rgb = np.zeros(imgs[0].shape + (3,))
    for img, band in zip(imgs, bands, strict=True):
        plane, scale = scales[band]
        rgb[:, :, plane] = np.clip((img * scale + m) * f / intensity, 0, 1)
    return rgb


def _azimuthal_reference(image, width=1.0):
    """Per-pixel loop: median of the finite pixels sharing the pixel's radial bin."""
    h, w = image.shape
    b = np.floor(_radius(h, w) / width)
    out = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            vals = image[b == b[y, x]]
            vals = vals[np.isfinite(vals)]
            out[y, x] = np.median(vals) if vals.size else np.nan
    return out


# --- composites -------------------------------------------------------------------------------


def test_composite_shape_dtype_and_viewer_reference():
    rng = np.random.default_rng(1)
    img = rng.normal(0, 0.02, (3, S, 40)) + 0.5 * np.exp(-_radius(S, 40) / 3)
    rgb = rgb_composite(img)
    assert rgb.shape == (S, 40, 3) and rgb.dtype == np.uint8
    ref = _viewer_rgb_reference(list(img), ("g", "r", "z"))
    np.testing.assert_array_equal(rgb, np.round(ref * 255).astype(np.uint8))
    assert rgb.max() == 255 and rgb.min() < 30  # bright core saturates, sky is dark


def test_composite_band_to_plane_mapping():
    for band, plane in (("z", 0), ("r", 1), ("g", 2)):
        img = np.zeros((3, 8, 8))
        img[("g", "r", "z").index(band)] = 1.0
        for stretch in ("legacysurvey", "lupton"):
            rgb = rgb_composite(img, stretch=stretch).astype(int)
            assert rgb[4, 4, plane] > 200, (band, stretch)
            assert rgb[4, 4].argmax() == plane
    assert LEGACY_RGB_SCALES["z"][0] == 0 and LEGACY_RGB_SCALES["g"][0] == 2


@pytest.mark.parametrize("stretch", ["legacysurvey", "lupton"])
def test_composite_stretch_is_monotonic(stretch):
    # grey ramp: equal scaled flux in every band, increasing along x
    t = np.linspace(-0.05, 3.0, 200)
    img = np.stack([np.tile(t / LEGACY_RGB_SCALES[b][1], (2, 1)) for b in "grz"])
    rgb = rgb_composite(img, stretch=stretch).astype(int)
    assert np.all(np.diff(rgb, axis=1) >= 0)
    assert rgb[0, 0].max() < rgb[0, -1].min()
    # coloured pixels: total brightness never decreases with flux
    rng = np.random.default_rng(2)
    colour = rng.uniform(0.1, 1.0, 3)
    c = np.linspace(0, 2, 100)
    img = colour[:, None, None] * c[None, None, :] * np.ones((3, 1, 1))
    lum = rgb_composite(img, stretch=stretch).astype(int).sum(axis=2)[0]
    assert np.all(np.diff(lum) >= -1)  # rounding of the three channels
    assert lum[-1] > lum[0] + 200


def test_composite_grey_nan_and_errors():
    img = np.full((1, 4, 4), 0.2)
    img[0, 0, 0] = np.nan
    rgb = rgb_composite(img, bands=("r",))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb[0, 0, 0] < rgb[1, 1, 0]  # NaN shown as zero flux
    with pytest.raises(ValueError, match="band"):
        rgb_composite(np.zeros((3, 4, 4)), bands=("g", "r", "y"))
    with pytest.raises(ValueError, match="3 bands"):
        rgb_composite(np.zeros((3, 4, 4)), bands=("g", "r"))
    with pytest.raises(ValueError, match="stretch"):
        rgb_composite(np.zeros((3, 4, 4)), stretch="linear")
    with pytest.raises(ValueError, match="Q"):
        rgb_composite(np.zeros((3, 4, 4)), Q=0)


# --- residuals --------------------------------------------------------------------------------


def test_azimuthal_model_matches_loop_reference():
    rng = np.random.default_rng(3)
    img = rng.normal(0, 1, (2, 17, 20))
    img[0, 3, 4] = np.nan
    img[1, 8, 10] = np.inf
    model = azimuthal_median_model(img)
    for k in range(2):
        ref = _azimuthal_reference(np.where(np.isfinite(img[k]), img[k], np.nan))
        np.testing.assert_allclose(model[k], ref, rtol=0, atol=1e-12)
    ref = _azimuthal_reference(img[0], width=2.5)
    np.testing.assert_allclose(azimuthal_median_model(img[0], bin_width_pix=2.5), ref, atol=1e-12)
    with pytest.raises(ValueError, match="bin_width_pix"):
        azimuthal_median_model(img, bin_width_pix=0)


def test_residual_of_circular_profile_vanishes_and_arc_survives():
    r = _radius(64, 64)
    step = np.exp(-np.floor(r) / 4.0)  # constant within each radial bin
    assert np.abs(residual_image(step)).max() == 0.0
    rng = np.random.default_rng(4)
    lens = 2.0 * np.exp(-r / 3.0) + rng.normal(0, 0.01, r.shape)
    res = residual_image(lens)
    ann = (r >= 4) & (r < 16)
    assert np.abs(res[ann]).max() < 0.05 * lens.max()
    yy, xx = np.mgrid[:64, :64]
    phi = np.arctan2(yy - 32, xx - 32)
    arc = 0.1 * np.exp(-((r - 9) ** 2) / 2) * (np.abs(phi) < 0.8)
    res_arc = residual_image(lens + arc)
    on = arc > 0.05
    np.testing.assert_allclose((res_arc - res)[on], arc[on], atol=0.015)  # medians barely move
    sig = robust_sigma(lens[r >= 16])
    n = ann.sum()
    snr_lens = np.nansum(res[ann]) / (sig * np.sqrt(n))
    snr_arc = np.nansum(res_arc[ann]) / (sig * np.sqrt(n))
    assert abs(snr_lens) < 1 and snr_arc > 5


def test_residual_is_the_visibility_proxy_model():
    rng = np.random.default_rng(5)
    r = _radius(S, S)
    imgs = rng.normal(0, 0.05, (4, S, S)) + np.exp(-r / 2.0)
    imgs[1] += 0.3 * np.exp(-((r - 8) ** 2) / 2) * (np.arange(S) > S // 2)[None, :]
    imgs[2, 5, 7] = np.nan
    res = residual_image(imgs)
    assert np.isnan(res[2, 5, 7])
    ann = (r >= 4) & (r < 16)
    snr = []
    for k in range(4):
        e = np.nansum(res[k][ann])
        n = np.isfinite(res[k][ann]).sum()
        outer = imgs[k][(r >= 16) & np.isfinite(imgs[k])]
        sig = 1.4826 * np.median(np.abs(outer - np.median(outer)))
        snr.append(e / (sig * np.sqrt(n)))
    np.testing.assert_allclose(snr, visibility_proxy(imgs).snr, rtol=1e-9)


# --- png --------------------------------------------------------------------------------------


def test_png_bytes_rgb_and_grey_roundtrip():
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    data = png_bytes(rgb, scale=3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert back.shape == (15, 21, 3)
    np.testing.assert_array_equal(back[::3, ::3], rgb)
    np.testing.assert_array_equal(back[2::3, 2::3], rgb)
    grey = np.asarray(Image.open(io.BytesIO(png_bytes(np.array([[-1.0, 0.0, 1.0]]), scale=1,
                                                      vmin=-1, vmax=1))))
    np.testing.assert_array_equal(grey, [[0, 128, 255]])
    nanimg = np.asarray(Image.open(io.BytesIO(png_bytes(np.array([[np.nan, 1.0]]), scale=2))))
    assert nanimg.shape == (2, 4) and nanimg[0, 0] == 0
    with pytest.raises(ValueError, match="scale"):
        png_bytes(rgb, scale=0)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(rgb.astype(float))
    with pytest.raises(ValueError, match="shape"):
        png_bytes(np.zeros((2, 2, 2, 2)))


# --- store helper -----------------------------------------------------------------------------


def test_stamp_gallery_items(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    store.create_store(path, n_samples=10, stage="test", config={}, seed=0, stamp_size=S,
                       chunk_size=4)
    man = store.store_geometry(path)
    ids = 500 + np.arange(10)
    for i, (a, b) in enumerate(store.chunk_bounds(10, 4)):
        d = fake_chunk(ids[a:b], variables=man["variables"], stamp_size=S, seed=2)
        d["image"][:, 2] += 0.02 * np.arange(a, b, dtype="f4")[:, None, None]  # z flux = row index
        store.write_chunk(path, i, d)
    store.finalize_store(path)
    want = [507, 501, 509, 501, 503]
    items = stamp_gallery_items(path, want, max_items=4, names=list("abcde"), scale=2)
    assert [it["sample"] for it in items] == want[:4]
    assert [it["name"] for it in items] == list("abcd")
    reds = []
    for it in items:
        im = np.asarray(Image.open(io.BytesIO(it["png_bytes"])))
        assert im.shape == (2 * S, 2 * S, 3)
        reds.append(im[..., 0].mean())
        res = np.asarray(Image.open(io.BytesIO(it["residual_png_bytes"])))
        assert res.shape == (2 * S, 2 * S)
    assert reds[0] > reds[1] and reds[2] > reds[0]  # z flux increases with the sample row
    monkeypatch.setattr("gen5dask.viz._GALLERY_BLOCK", 3)  # blocked reads give the same stamps
    assert stamp_gallery_items(path, want, max_items=4, names=list("abcde"), scale=2) == items
    assert stamp_gallery_items(path, [], max_items=3) == []
    with pytest.raises(ValueError, match="no sample"):
        stamp_gallery_items(path, [42], max_items=3)
    with pytest.raises(ValueError, match="names"):
        stamp_gallery_items(path, [501], max_items=3, names=["a", "b"])

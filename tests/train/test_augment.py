"""Augmentation: D4 about the centre pixel, keyed draws, one normalisation for train and score."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.kernels.lenslight import subtract_lens_light
from gen5dask.kernels.normalize import normalize_stamps
from gen5dask.train.augment import (
    EvalTransform,
    augment_batch,
    d4_codes,
    d4_transform,
)


def d4_ref(img, code):
    """Slow reference: per-pixel index maps about (H//2, W//2) with wrap-around."""
    nb, H, W = img.shape
    out = np.empty_like(img)
    for y in range(H):
        for x in range(W):
            yy, xx = (x, y) if code & 4 else (y, x)
            if code & 2:
                yy = (2 * (H // 2) - yy) % H
            if code & 1:
                xx = (2 * (W // 2) - xx) % W
            out[:, y, x] = img[:, yy, xx]
    return out


@pytest.mark.parametrize("size", [8, 9])
def test_d4_matches_reference_and_is_a_group(size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, size, size)).astype("f4")
    codes = np.arange(8)
    got = d4_transform(x, codes)
    for i in range(8):
        np.testing.assert_array_equal(got[i], d4_ref(x[i], i))
        c = size // 2
        np.testing.assert_array_equal(got[i, :, c, c], x[i, :, c, c])  # centre pixel fixed
    outs = {got[i].tobytes() for i in range(8)}
    assert len(outs) == 8  # 8 distinct symmetries


def test_d4_codes_keyed_and_uniformish():
    ids = np.arange(4000)
    a = d4_codes(ids, seed=1, epoch=0)
    np.testing.assert_array_equal(a[100:200], d4_codes(ids[100:200], seed=1, epoch=0))
    assert not np.array_equal(a, d4_codes(ids, seed=1, epoch=1))
    counts = np.bincount(a, minlength=8)
    assert counts.min() > 400


def test_augment_deterministic_and_masks_centre():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (6, 3, 32, 32)).astype("f4")
    x[:, :, 14:19, 14:19] += 50.0  # bright core
    ids = np.arange(10, 16)
    kw = dict(seed=3, epoch=2, rotate_flip=False, mask=True, mask_rmin=4, mask_rmax=4.01)
    a = augment_batch(x, ids, **kw)
    b = augment_batch(x[::-1].copy(), ids[::-1], **kw)[::-1]
    np.testing.assert_array_equal(a, b)  # per-sample keyed, order-free
    assert np.abs(a[:, :, 16, 16]).max() < 6  # core replaced by outer-like values
    plain = augment_batch(x, ids, seed=3, epoch=2, rotate_flip=False, mask=False)
    assert np.abs(plain[:, :, 16, 16]).min() >= 9.99  # clipped bright core when unmasked


@pytest.mark.parametrize("lens", ["none", "azimuthal_median"])
def test_train_and_score_paths_give_identical_input(stores, lens):
    """Training stream without augmentation == scoring transform for the same samples."""
    import torch

    from gen5dask.train.augment import TrainTransform
    from gen5dask.train.dataset import StampStream, arm_selection, make_loader
    from gen5dask.train.models import arch_spec, build_model
    from gen5dask.train.scoring import score_images

    d = arm_selection(train_path=stores / "train.zarr", hardneg_path=None, split="val",
                      inject_mode="calibrated", hard_negatives=False)
    sel = d.selections[0]  # the val injections, in store order
    tt = TrainTransform(seed=1, rotate_flip=False, mask=False, lens_light=lens)
    s = StampStream([sel], batch_size=len(sel), seed=1, shuffle=False, transform=tt)
    batch = next(iter(make_loader(s)))
    from gen5dask.store import read_samples

    np.testing.assert_array_equal(batch["sample"].numpy(), sel.sample)
    raw = read_samples(stores / "train.zarr", sel.rows, ["sample", "image"])
    want = EvalTransform(lens_light=lens)(raw["image"], raw["sample"], None, 0)
    got = batch["image"].numpy()
    np.testing.assert_array_equal(got, want)
    flux = raw["image"] if lens == "none" else subtract_lens_light(raw["image"], lens)
    np.testing.assert_array_equal(want, normalize_stamps(flux, r_outer=16, clip=10))
    # and the scorer's forward pass sees the same tensor
    torch.manual_seed(0)
    model = build_model(arch_spec("resnet_small")).eval()
    info = {"norm": {"r_outer": 16.0, "clip": 10.0, "lens_light": lens},
            "metadata_columns": []}
    p_score = score_images(model, info, raw["image"])
    with torch.no_grad():
        p_train = torch.sigmoid(model(torch.from_numpy(got))).numpy()
    np.testing.assert_allclose(p_score, p_train, rtol=1e-5, atol=1e-6)

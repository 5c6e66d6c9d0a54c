"""The loader's view of a sample is exactly augment_batch / network_input (scoring's view),
whatever the worker count and whether the normalisation statistics come from the cache."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.store import read_samples
from gen5dask.train.augment import EvalTransform, TrainTransform, augment_batch, network_input
from gen5dask.train.dataset import StampStream, arm_selection, make_loader
from gen5dask.train.normstats import cache_path, chunk_norm_stats, store_norm_stats

from .conftest import STAMP, make_cfg


def _selections(stores):
    d = arm_selection(train_path=stores / "train.zarr", hardneg_path=stores / "hardneg.zarr",
                      split="train", inject_mode="calibrated", hard_negatives=True,
                      hard_negative_fraction=0.3, seed=1)
    return d.selections


def _attach(sels, r_outer, cache_dir=None, lens_light="none"):
    for s in sels:
        s.stats = store_norm_stats(s.path, r_outer=r_outer, cache_dir=cache_dir,
                                   lens_light=lens_light)[s.rows]


def _raw(sels):
    """sample id -> raw flux stamp (nb, H, W) and r-band PSF."""
    out = {}
    for s in sels:
        img = read_samples(s.path, np.asarray(s.rows), ["image"])["image"]
        for i, sid in enumerate(s.sample):
            out[int(sid)] = (img[i], s.psfsize_r[i])
    return out


def _collect(loader):
    got = {}
    for b in loader:
        assert b["image"].is_contiguous(memory_format=__import__("torch").channels_last)
        for sid, x in zip(b["sample"].numpy(), b["image"].numpy(), strict=True):
            assert int(sid) not in got
            got[int(sid)] = x
    return got


@pytest.mark.parametrize(("workers", "cached", "r_outer", "lens"), [
    (0, True, 12.0, "none"), (0, False, 12.0, "none"), (2, True, 12.0, "none"),
    (1, True, 5.0, "none"), (0, True, 12.0, "azimuthal_median"),
    (2, False, 5.0, "azimuthal_median"), (1, True, 5.0, "azimuthal_median")])
def test_training_view_is_augment_batch(stores, tmp_path, workers, cached, r_outer, lens):
    sels = _selections(stores)
    if cached:
        _attach(sels, r_outer, tmp_path, lens)
    # r_outer 5 < mask radius (3..7 px): rows whose statistics the mask changes are recomputed
    kw = {"rotate_flip": True, "mask": True, "mask_prob": 0.7, "r_outer": r_outer, "clip": 8.0,
          "lens_light": lens}
    s = StampStream(sels, batch_size=7, seed=5, shuffle=True, shuffle_buffer=10,
                    transform=TrainTransform(seed=5, **kw))
    loader = make_loader(s, num_workers=workers)
    raw = _raw(sels)
    try:
        for epoch in (0, 3):
            s.set_epoch(epoch)
            got = _collect(loader)
            assert sorted(got) == sorted(raw)
            ids = np.array(sorted(raw))
            ref = augment_batch(np.stack([raw[i][0] for i in ids]), ids, seed=5, epoch=epoch,
                                **kw)
            for i, sid in enumerate(ids):
                np.testing.assert_array_equal(got[int(sid)], ref[i])
    finally:
        loader.close()


@pytest.mark.parametrize(("workers", "lens"), [(0, "none"), (2, "none"),
                                               (2, "azimuthal_median")])
def test_eval_view_is_scoring_view(stores, tmp_path, workers, lens):
    sels = _selections(stores)
    _attach(sels, 16.0, tmp_path, lens)
    s = StampStream(sels, batch_size=9, seed=5, shuffle=False,
                    transform=EvalTransform(lens_light=lens))
    loader = make_loader(s, num_workers=workers)
    got = _collect(loader)
    loader.close()
    raw = _raw(sels)
    ids = np.array(sorted(raw))
    ref = network_input(np.stack([raw[i][0] for i in ids]), lens_light=lens)
    for i, sid in enumerate(ids):
        np.testing.assert_array_equal(got[int(sid)], ref[i])


@pytest.mark.parametrize("lens", ["none", "azimuthal_median"])
def test_prepare_matches_augment_batch_on_degenerate_stamps(lens):
    rng = np.random.default_rng(3)
    img = rng.normal(0.0, 1.0, (6, 3, STAMP, STAMP)).astype(np.float32)
    yy, xx = np.indices((STAMP, STAMP)) - STAMP // 2
    outer = np.hypot(yy, xx) >= 12
    img[1, 0][outer] = np.nan  # statistics fall back to the (masked) inner pixels
    img[2, 2] = 4.0  # constant plane
    ids = np.arange(100, 106)
    kw = {"mask": True, "mask_rmin": 3.0, "mask_rmax": 7.0, "r_outer": 12.0, "clip": 10.0,
          "lens_light": lens}
    ref = augment_batch(img, ids, seed=9, epoch=2, **kw)
    cached = chunk_norm_stats(img, r_outer=12.0, lens_light=lens)
    assert np.isnan(cached[1, 0, 0]) and not np.isnan(cached[0]).any()
    from gen5dask.kernels.normalize import apply_norm_into

    for stats in (cached, None):
        work = img.copy()
        local = np.arange(6)
        st, codes = TrainTransform(seed=9, **kw).prepare(work, local, ids, np.ones(6), stats, 2)
        out = np.empty_like(img)
        apply_norm_into(work, local, st, out, local, codes=codes, clip=10.0)
        np.testing.assert_array_equal(out, ref)


def test_stats_cache_file(stores, tmp_path):
    path = stores / "train.zarr"
    a = store_norm_stats(path, r_outer=16.0, cache_dir=tmp_path, threads=2)
    f = cache_path(path, tmp_path, r_outer=16.0)
    assert f.exists() and a.dtype == np.float32 and a.shape[1:] == (3, 2)
    img = read_samples(path, slice(0, 16), ["image"])["image"]
    np.testing.assert_array_equal(a[:16], chunk_norm_stats(img, r_outer=16.0))
    mtime = f.stat().st_mtime_ns
    np.testing.assert_array_equal(store_norm_stats(path, r_outer=16.0, cache_dir=tmp_path), a)
    assert f.stat().st_mtime_ns == mtime  # reused, not recomputed
    assert cache_path(path, tmp_path, r_outer=12.0) != f
    assert cache_path(path, tmp_path, r_outer=16.0, lens_light="azimuthal_median") != f
    f.write_bytes(b"truncated")  # a damaged cache file is recomputed
    np.testing.assert_array_equal(store_norm_stats(path, r_outer=16.0, cache_dir=tmp_path), a)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_once_per_epoch_gate(run_dir, workers):
    from gen5dask.stages.audit import loader_check

    cfg = make_cfg(run_dir)
    cfg.audit.loader_workers = workers
    g = loader_check(cfg.layout.train, cfg)
    assert g["name"] == "loader_once_per_epoch" and g["passed"] is True, g


def test_lens_light_cache_holds_residual_stats_and_profiles(stores, tmp_path):
    """With a lens-light model the cache holds the residual's statistics, then the profiles."""
    from gen5dask.kernels.lenslight import subtract_lens_light
    from gen5dask.kernels.normalize import norm_stats

    path = stores / "train.zarr"
    a = store_norm_stats(path, r_outer=16.0, cache_dir=tmp_path, lens_light="azimuthal_median")
    img = read_samples(path, slice(0, 16), ["image"])["image"]
    half = STAMP // 2
    n_bins = int(np.floor(np.hypot(half, half))) + 1  # the corner pixel's radial bin, plus one
    assert a.shape[1:] == (3, 2 + n_bins)
    np.testing.assert_array_equal(a[:16, :, :2], norm_stats(subtract_lens_light(img),
                                                            r_outer=16.0))
    # the profile is the median of each 1-px radial bin: bin 0 is the centre pixel alone
    np.testing.assert_array_equal(a[:16, :, 2], img[:, :, half, half])
    yy, xx = np.indices((STAMP, STAMP)) - half
    ring = np.floor(np.hypot(yy, xx)) == 5
    med = np.median(img[:, :, ring].astype(np.float64), axis=-1)
    np.testing.assert_array_equal(a[:16, :, 2 + 5], med.astype(np.float32))
    raw_stats = store_norm_stats(path, r_outer=16.0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no lens-light profiles"):
        TrainTransform(seed=1, lens_light="azimuthal_median").prepare(
            img.copy(), np.arange(16), np.arange(16), np.ones(16), raw_stats[:16], 0)
    with pytest.raises(ValueError, match="carry lens-light profiles"):
        EvalTransform().prepare(img.copy(), np.arange(16), np.arange(16), np.ones(16), a[:16], 0)

"""Scoring: penultimate-layer embeddings (model.embed, score_images, scores-table variable)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen5dask.train.models import arch_spec, build_model
from gen5dask.train.scoring import read_embeddings, score_images, write_scores

from .conftest import STAMP


def _model_info(n_meta=0):
    torch.manual_seed(0)
    spec = arch_spec("resnet_small", in_channels=3, n_meta=n_meta)
    model = build_model(spec).eval()
    # non-trivial BatchNorm running statistics and weights, as after training
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    info = {"norm": {"r_outer": 12.0, "clip": 10.0}, "metadata_columns": ["a"] * n_meta,
            "meta_mean": [0.0] * n_meta, "meta_std": [1.0] * n_meta}
    return model, info


def test_embed_is_the_head_input():
    model, _ = _model_info(n_meta=2)
    x = torch.randn(5, 3, STAMP, STAMP)
    meta = torch.randn(5, 2)
    with torch.no_grad():
        logits, emb = model(x, meta, return_embedding=True)
        assert emb.shape == (5, model.embed_dim) == (5, 96)
        assert torch.equal(emb, model.embed(x))
        want = model.head(torch.cat([emb, meta], dim=1)).squeeze(1)
        assert torch.allclose(logits, want) and torch.equal(logits, model(x, meta))


def test_embedding_does_not_depend_on_batch():
    model, info = _model_info()
    rng = np.random.default_rng(4)
    images = rng.normal(0.0, 0.01, (9, 3, STAMP, STAMP)).astype(np.float32)
    images[:, :, 12:20, 12:20] += 0.2
    p_all, e_all = score_images(model, info, images, batch_size=9, embeddings=True)
    assert e_all.dtype == np.float32 and e_all.shape == (9, 96) and np.isfinite(e_all).all()
    assert np.abs(e_all).max() > 0
    for i in range(9):
        p1, e1 = score_images(model, info, images[i : i + 1], batch_size=1, embeddings=True)
        np.testing.assert_allclose(e1[0], e_all[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p1[0], p_all[i], rtol=1e-5, atol=1e-6)
    # the same forward pass as the scores without embeddings
    np.testing.assert_array_equal(score_images(model, info, images, batch_size=9), p_all)


def test_write_and_read_embeddings(tmp_path):
    import pandas as pd

    from gen5dask.train.scoring import COLUMNS, LEGENDS, read_scores

    n = 6
    df = pd.DataFrame({c: np.full(n, d, dtype=None if t == "U" else t)
                       for c, (t, d) in COLUMNS.items()})
    df["sample"] = np.arange(10, 10 + n)
    df["store"] = ["train"] * 4 + ["anchors"] * 2
    for col, legend in LEGENDS.items():
        if col != "store":
            df[col] = legend[0]
    emb = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    path = write_scores(tmp_path / "s.zarr", df, embedding=emb)
    ids, got = read_embeddings(path)
    assert np.array_equal(ids, np.arange(10, 16)) and np.array_equal(got, emb)
    ids_a, got_a = read_embeddings(path, store="anchors")
    assert np.array_equal(ids_a, [14, 15]) and np.array_equal(got_a, emb[4:])
    assert "embedding" not in read_scores(path).columns
    with pytest.raises(ValueError, match="one row per table row"):
        write_scores(tmp_path / "t.zarr", df, embedding=emb[:3])
    write_scores(tmp_path / "u.zarr", df)
    with pytest.raises(KeyError, match="score.embeddings"):
        read_embeddings(tmp_path / "u.zarr")


def test_crop_is_the_central_window_of_the_input():
    """``train.crop``: the cropped model equals the uncropped one on the central window cut by
    hand (centre pixel H//2 -> crop//2), and it is stored in the architecture."""
    torch.manual_seed(1)
    spec = arch_spec("resnet_small", in_channels=3, crop=16)
    assert spec["crop"] == 16
    cropped = build_model(spec).eval()
    whole = build_model({**spec, "crop": 0}).eval()
    whole.load_state_dict(cropped.state_dict())
    x = torch.randn(4, 3, STAMP, STAMP)
    c0 = STAMP // 2 - 8
    with torch.no_grad():
        assert torch.equal(cropped(x), whole(x[..., c0:c0 + 16, c0:c0 + 16].contiguous()))
        assert not torch.allclose(cropped(x), whole(x))
        # only the window matters: pixels outside it do not change the score
        y = x.clone()
        y[..., :c0, :] += 5.0
        assert torch.equal(cropped(y), cropped(x))
    with pytest.raises(ValueError, match="larger than its input"):
        build_model({**spec, "crop": STAMP + 2})(x)


def test_crop_config_is_validated():
    from gen5dask.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="stamp_size"):
        config_from_dict({"stamp_size": 32, "train": {"crop": 40}})
    assert config_from_dict({"stamp_size": 48, "train": {"crop": 32}}).train.crop == 32

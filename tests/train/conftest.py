"""Tiny seeded stores for the trainer/scoring tests (stamp 32, chunk 16)."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.config import config_from_dict
from gen5dask.store import create_store, finalize_store, write_chunk
from gen5dask.store.testing import fake_chunk
from gen5dask.store.zarrstore import chunk_bounds

STAMP = 32
CHUNK = 16


def _ring(n, stamp, rng, amp):
    yy, xx = np.mgrid[:stamp, :stamp] - stamp // 2
    r = np.hypot(yy, xx)
    radius = rng.uniform(4, 7, n)[:, None, None]
    return amp * np.exp(-0.5 * ((r[None] - radius) / 1.0) ** 2)


def make_store(path, rows: list[dict], *, seed=0, first_id=0, variables=("inject_mode",
                                                                         "eval_only")):
    """Store with one sample per dict in ``rows`` (keys: kind, split, inject_mode, eval_only)."""
    n = len(rows)
    variables = list(variables)
    create_store(path, n_samples=n, stage="test", config={"t": 1}, seed=seed,
                 stamp_size=STAMP, chunk_size=CHUNK, variables=variables)
    all_vars = [
        "image", "invvar", "maskbits", "ra", "dec", "brickname", "region", "split", "label",
        "kind", "psfsize", "psfdepth", "host_sample", "theta_e", "lens_q", "lens_pa",
        "shear_g1", "shear_g2", "src_x", "src_y", "src_dmag", "src_reff", "src_n", "src_q",
        "src_pa", "src_mag_r", "src_gr", "src_rz", "magnification", "arc_snr", "arc_snr_peak",
        *variables,
    ]
    for i, (a, b) in enumerate(chunk_bounds(n, CHUNK)):
        ids = np.arange(first_id + a, first_id + b, dtype=np.int64)
        d = fake_chunk(ids, variables=all_vars, stamp_size=STAMP, seed=seed)
        rng = np.random.default_rng([seed, i])
        sub = rows[a:b]
        kinds = np.array([r["kind"] for r in sub])
        d["kind"] = kinds
        d["split"] = np.array([r.get("split", "") for r in sub])
        d["label"] = np.isin(kinds, ["injection", "anchor", "stress"]).astype("i1")
        if "inject_mode" in variables:
            d["inject_mode"] = np.array([r.get("inject_mode", "") for r in sub])
        if "eval_only" in variables:
            d["eval_only"] = np.array([r.get("eval_only", 0) for r in sub], dtype="i1")
        if "tier" in variables:
            d["tier"] = np.array([r.get("tier", "") for r in sub])
        d["region"] = rng.integers(0, 5, b - a).astype("i4")
        d["theta_e"] = rng.uniform(0.8, 2.0, b - a).astype("f4")
        img = d["image"]
        # a smooth "galaxy" in every stamp, plus a ring in the positives
        yy, xx = np.mgrid[:STAMP, :STAMP] - STAMP // 2
        gal = 0.2 * np.exp(-0.5 * (yy**2 + xx**2) / 4.0)
        img += gal[None, None].astype("f4")
        pos = d["label"] == 1
        if pos.any():
            img[pos] += _ring(int(pos.sum()), STAMP, rng, 0.08)[:, None].astype("f4")
        d["image"] = img.astype("f4")
        write_chunk(path, i, d)
    finalize_store(path)
    return path


def train_rows(n_per=24):
    rows = []
    for split in ("train", "val", "test"):
        k = n_per if split == "train" else n_per // 2
        rows += [{"kind": "injection", "split": split, "inject_mode": "uncalibrated"}] * k
        rows += [{"kind": "injection", "split": split, "inject_mode": "calibrated"}] * k
        rows += [{"kind": "control", "split": split}] * k
        rows += [{"kind": "null_injection", "split": split, "inject_mode": "null"}] * 2
    # interleave deterministically so chunks mix kinds
    rng = np.random.default_rng(3)
    return [rows[i] for i in rng.permutation(len(rows))]


def hardneg_rows():
    rows = [{"kind": "hard_negative", "split": "train", "eval_only": 0}] * 20
    rows += [{"kind": "hard_negative", "split": "val", "eval_only": 0}] * 6
    rows += [{"kind": "hard_negative", "split": "", "eval_only": 1}] * 10
    return rows


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    make_store(root / "train.zarr", train_rows(), seed=1)
    make_store(root / "hardneg.zarr", hardneg_rows(), seed=2, first_id=100000)
    make_store(root / "anchors.zarr",
               [{"kind": "anchor", "tier": "A"}] * 10 + [{"kind": "stress", "tier": "stress"}] * 4,
               seed=3, first_id=200000, variables=("tier",))
    return root


def make_cfg(out, **train):
    t = {"epochs": 2, "batch_size": 16, "eval_batch_size": 32, "shuffle_buffer": 32,
         "progress": False, "torch_threads": 1, "early_stopping_patience": None}
    t.update(train)
    return config_from_dict({
        "output_dir": str(out), "stamp_size": STAMP, "chunk_size": CHUNK, "seed": 11,
        "train": t, "score": {"backend": "dask"}, "cluster": {"kind": "synchronous",
                                                            "progress": False},
    })


@pytest.fixture
def run_dir(stores, tmp_path):
    """An output dir whose train/hardneg/anchors stores are copies of the session stores."""
    import shutil

    for name in ("train.zarr", "hardneg.zarr", "anchors.zarr"):
        shutil.copytree(stores / name, tmp_path / name)
    return tmp_path

"""Reproducibility matrix: worker count x chunk size -> bit-identical stores and scores.

Every random draw is keyed by (seed, stage, sample id, replicate, epoch), so ``simulate`` and
``inject`` must write the same bits whether they run in-process (``client=None``, the reference
executor) or on 1 or 2 Dask workers, with ``chunk_size`` 128 or 256 (a ~300-sample survey and a
~700-row training set at stamp 32, so the two chunkings split the data differently). ``score``
must give identical scores for the same model whatever the chunking or worker count.

The default suite runs one fast variant (reference vs 2 threaded workers, other chunk size); the
full matrix (both worker counts, both chunk sizes, worker processes) is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from gen5dask.config import config_from_dict
from gen5dask.store import read_samples, store_geometry, validate

STAMP = 32
SIM = {"n_hosts": 240, "n_anchors": 20, "n_stress": 6, "n_hard_negatives": 6, "n_rings": 6}


def _cfg(out: Path, chunk: int, *, hosts: Path | None = None, **extra):
    tree = {
        "output_dir": str(out),
        "seed": 3,
        "stamp_size": STAMP,
        "chunk_size": chunk,
        "cluster": {"progress": False},
        "simulate": SIM,
        "inject": {"n_null": 4, **({"hosts": str(hosts)} if hosts else {})},
        "calibrate": {"plot": False},
        **extra,
    }
    return config_from_dict(tree)


@contextlib.contextmanager
def _client(n_workers: int | None, *, processes: bool = False):
    """``None`` -> in-process reference executor; else a LocalCluster client."""
    if n_workers is None:
        yield None
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                     dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        yield client


def _arrays(path: Path) -> dict[str, np.ndarray]:
    return read_samples(path, slice(None), None)


def assert_stores_identical(got: Path, ref: Path) -> None:
    """Every variable of two stores is bit-identical (NaNs included); chunking may differ."""
    a, b = _arrays(got), _arrays(ref)
    assert sorted(a) == sorted(b)
    for name in b:
        x, y = np.ascontiguousarray(a[name]), np.ascontiguousarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), f"variable {name!r} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """In-process reference runs at chunk 128: survey (the inject hosts) and train store."""
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.simulate import run_simulate

    out = tmp_path_factory.mktemp("ref")
    cfg = _cfg(out, 128)
    survey = run_simulate(cfg)
    cfg = _cfg(out, 128, hosts=survey)
    train = run_inject(cfg)
    assert validate(survey) == [] and validate(train) == []
    n_sv, n_tr = store_geometry(survey)["n_samples"], store_geometry(train)["n_samples"]
    # sizes where chunk 128 and chunk 256 cut the data differently (>= 2 chunks of 256)
    assert n_sv > 256 and n_tr > 512
    return survey, train


def _run_pair(tmp: Path, survey_ref: Path, n_workers, chunk, *, processes=False):
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.simulate import run_simulate

    with _client(n_workers, processes=processes) as client:
        sv = run_simulate(_cfg(tmp, chunk), client=client)
        tr = run_inject(_cfg(tmp, chunk, hosts=survey_ref), client=client)
    assert store_geometry(sv)["chunk_size"] == chunk
    assert store_geometry(tr)["chunk_size"] == chunk
    return sv, tr


def test_two_threaded_workers_chunk_256_match_reference(reference, tmp_path):
    survey_ref, train_ref = reference
    sv, tr = _run_pair(tmp_path, survey_ref, 2, 256)
    assert_stores_identical(sv, survey_ref)
    assert_stores_identical(tr, train_ref)


@pytest.mark.slow
@pytest.mark.parametrize(("n_workers", "chunk", "processes"), [
    (None, 256, False), (1, 128, True), (1, 256, False), (2, 128, True), (2, 256, True),
])
def test_matrix_workers_by_chunk(reference, tmp_path, n_workers, chunk, processes):
    survey_ref, train_ref = reference
    sv, tr = _run_pair(tmp_path, survey_ref, n_workers, chunk, processes=processes)
    assert_stores_identical(sv, survey_ref)
    assert_stores_identical(tr, train_ref)


# --- score ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A one-epoch baseline model trained on the tiny trainer stores of tests/train."""
    from gen5dask.train.trainer import train_arm
    from tests.train.conftest import hardneg_rows, make_cfg, make_store, train_rows

    root = tmp_path_factory.mktemp("model")
    make_store(root / "train.zarr", train_rows(), seed=1)
    make_store(root / "hardneg.zarr", hardneg_rows(), seed=2, first_id=100000)
    cfg = make_cfg(root, epochs=1)
    arm = next(a for a in cfg.ablation.arms if a.name == "baseline")
    train_arm(cfg, arm)
    return cfg.layout.model("baseline")


def _score(tmp: Path, train_store: Path, model: Path, chunk: int, n_workers):
    from gen5dask.stages.score import run_score
    from gen5dask.train.scoring import read_scores

    # the store with the wanted chunking: re-chunk the reference by copying its arrays
    cfg = _cfg(tmp, chunk, score={"stores": ["train"], "arms": ["baseline"],
                                  "batch_size": 32, "torch_threads": 1, "backend": "dask"})
    _rechunk(train_store, cfg.layout.train, chunk)
    cfg.layout.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, cfg.layout.model("baseline"))
    with _client(n_workers) as client:
        run_score(cfg, client)
    return read_scores(cfg.layout.scores("baseline"))


def _rechunk(src: Path, dst: Path, chunk: int) -> None:
    from gen5dask.store import (
        chunk_bounds,
        create_store,
        finalize_store,
        read_attrs,
        write_chunk,
    )

    geo = store_geometry(src)
    data = _arrays(src)
    create_store(dst, n_samples=geo["n_samples"], stage="inject",
                 config={"copy_of": read_attrs(src)["config_hash"]}, seed=3,
                 bands=geo["bands"], stamp_size=geo["stamp_size"], chunk_size=chunk,
                 variables=geo["variables"])
    for i, (a, b) in enumerate(chunk_bounds(geo["n_samples"], chunk)):
        write_chunk(dst, i, {k: v[a:b] for k, v in data.items()})
    finalize_store(dst)
    assert_stores_identical(dst, src)


@pytest.mark.parametrize("n_workers", [None, pytest.param(2, marks=pytest.mark.slow)])
def test_scores_identical_across_chunking_and_workers(reference, tiny_model, tmp_path,
                                                      n_workers):
    _, train_ref = reference
    ref = _score(tmp_path / "a", train_ref, tiny_model, 128, None)
    got = _score(tmp_path / "b", train_ref, tiny_model, 256, n_workers)
    assert len(ref) == store_geometry(train_ref)["n_samples"]
    np.testing.assert_array_equal(got["sample"].to_numpy(), ref["sample"].to_numpy())
    assert got["score"].to_numpy().tobytes() == ref["score"].to_numpy().tobytes()
    assert np.all((ref["score"] >= 0) & (ref["score"] <= 1))
    assert ref["score"].nunique() > 10  # a real model, not a constant

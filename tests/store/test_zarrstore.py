"""The lead's store layer: create / resume / lock / validate / append / write_columns."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from gen5dask.store import (
    StoreError,
    StoreLockedError,
    append_samples,
    create_store,
    finalize_store,
    is_complete,
    open_store,
    pending_chunks,
    read_chunk,
    read_table,
    store_geometry,
    store_lock,
    validate,
    write_chunk,
    write_columns,
)
from gen5dask.store.testing import fake_chunk
from gen5dask.store.zarrstore import chunk_bounds

N, CS, ST = 10, 4, 8


def _make(path, **kw):
    return create_store(path, n_samples=N, stage="test", config={"a": 1}, seed=1,
                        stamp_size=ST, chunk_size=CS, **kw)


def _write_all(path, chunks=None):
    man = store_geometry(path)
    for i, (a, b) in enumerate(chunk_bounds(N, CS)):
        if chunks is not None and i not in chunks:
            continue
        write_chunk(path, i, fake_chunk(np.arange(a, b) + 100, variables=man["variables"],
                                        stamp_size=ST))


def test_create_write_finalize_validate(tmp_path):
    p = _make(tmp_path / "s.zarr")
    assert pending_chunks(p) == [0, 1, 2] and not is_complete(p)
    with pytest.raises(StoreError, match="pending"):
        finalize_store(p)
    _write_all(p)
    finalize_store(p)
    assert is_complete(p) and validate(p) == []
    ds = xr.open_zarr(p)
    assert ds.sizes["sample"] == N
    assert list(open_store(p)["kind"].values) == ["host"] * N
    assert read_chunk(p, 1)["sample"].tolist() == [104, 105, 106, 107]


def test_resume_keeps_done_chunks_and_mismatch_refused(tmp_path):
    p = _make(tmp_path / "s.zarr")
    _write_all(p, chunks={0, 2})
    assert _make(tmp_path / "s.zarr") == p and pending_chunks(p) == [1]
    with pytest.raises(StoreError, match="different configuration"):
        create_store(p, n_samples=N, stage="test", config={"a": 2}, seed=1, stamp_size=ST,
                     chunk_size=CS)
    create_store(p, n_samples=N, stage="test", config={"a": 2}, seed=1, stamp_size=ST,
                 chunk_size=CS, overwrite=True)
    assert pending_chunks(p) == [0, 1, 2]


def test_lock_refuses_second_writer(tmp_path):
    p = _make(tmp_path / "s.zarr")
    with store_lock(p), pytest.raises(StoreLockedError), store_lock(p):
        pass
    with store_lock(p):  # released
        pass


def test_write_chunk_checks(tmp_path):
    p = _make(tmp_path / "s.zarr")
    man = store_geometry(p)
    good = fake_chunk(np.arange(4), variables=man["variables"], stamp_size=ST)
    bad = dict(good)
    bad["sample"] = np.zeros(4, np.int64)
    with pytest.raises(StoreError, match="duplicate"):
        write_chunk(p, 0, bad)
    bad = dict(good)
    del bad["ra"]
    with pytest.raises(StoreError, match="missing variables"):
        write_chunk(p, 0, bad)
    with pytest.raises(StoreError, match="out of range"):
        write_chunk(p, 7, good)


def test_validate_flags_bad_pixels_and_psf(tmp_path):
    p = _make(tmp_path / "s.zarr")
    man = store_geometry(p)
    for i, (a, b) in enumerate(chunk_bounds(N, CS)):
        d = fake_chunk(np.arange(a, b), variables=man["variables"], stamp_size=ST)
        if i == 1:
            d["image"][0, 0, 0, 0] = np.nan
            d["psfsize"][1, 0] = -1
        write_chunk(p, i, d)
    finalize_store(p)
    problems = " | ".join(validate(p))
    assert "NaN/inf" in problems and "psfsize" in problems


def test_append_and_write_columns(tmp_path):
    p = _make(tmp_path / "s.zarr")
    _write_all(p)
    finalize_store(p)
    man = store_geometry(p)
    extra = fake_chunk(np.arange(500, 503), variables=man["variables"], stamp_size=ST)
    assert append_samples(p, extra) == N + 3
    with pytest.raises(StoreError, match="already exist"):
        append_samples(p, extra)
    assert validate(p) == []
    write_columns(p, {"split": np.array(["train"] * 7 + ["test"] * 6),
                      "visibility": np.arange(13, dtype="f4")})
    tab = read_table(p, ["sample", "split", "visibility"])
    assert tab["split"].tolist()[-1] == "test" and tab["visibility"].iloc[5] == 5
    assert "visibility" in store_geometry(p)["variables"]
    with pytest.raises(StoreError, match="shape"):
        write_columns(p, {"region": np.zeros(3, "i4")})

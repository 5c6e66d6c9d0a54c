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


def test_writes_after_a_rebuild_with_another_geometry_use_the_new_arrays(tmp_path):
    """write_chunk keeps array handles per process (keyed by path and manifest): a store rebuilt
    at the same path with another size and chunking must be written through its new arrays."""
    p = tmp_path / "s.zarr"
    _make(p)
    _write_all(p)
    create_store(p, n_samples=6, stage="test", config={"a": 2}, seed=1, stamp_size=ST,
                 chunk_size=3, overwrite=True)
    man = store_geometry(p)
    for i, (a, b) in enumerate(chunk_bounds(6, 3)):
        write_chunk(p, i, fake_chunk(np.arange(a, b) + 500, variables=man["variables"],
                                     stamp_size=ST))
    finalize_store(p)
    assert validate(p) == []
    assert read_chunk(p, 1)["sample"].tolist() == [503, 504, 505]
    assert open_store(p).sizes["sample"] == 6


def test_read_of_a_missing_variable_names_it(tmp_path):
    p = _make(tmp_path / "s.zarr")
    _write_all(p)
    with pytest.raises(StoreError, match="no variable 'nope'"):
        read_chunk(p, 0, ["sample", "nope"])


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


def test_plain_xarray_reads_strings_and_coordinates_without_warnings(tmp_path):
    import warnings

    p = _make(tmp_path / "s.zarr", variables=["tier"])
    man = store_geometry(p)
    for i, (a, b) in enumerate(chunk_bounds(N, CS)):
        d = fake_chunk(np.arange(a, b), variables=man["variables"], stamp_size=ST,
                       kind="anchor" if i == 1 else "host")
        d["tier"] = np.where(np.arange(a, b) % 2, "A", "")
        write_chunk(p, i, d)
    finalize_store(p)
    write_columns(p, {"split": np.array(["train", "val", "test", ""] * 2 + ["train"] * 2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(p)
        assert ds.band.values.tolist() == ["g", "r", "z"] and "band" in ds.indexes
        assert ds.image.sel(band="r").shape == (N, ST, ST)
        assert {"ra", "dec"} <= set(ds.coords)
        assert int((ds.kind == "anchor").sum()) == 4 and int((ds.tier == "A").sum()) == 5
        assert ds.split.values.tolist()[:4] == ["train", "val", "test", ""]
        assert ds.brickname.values[0] == "1502p015"
        assert ds.image.attrs["units"] == "nanomaggy" and "long_name" in ds.kind.attrs
        assert ds.kind.attrs["allowed_values"][0] == "host"
        tree = xr.open_datatree(p, engine="zarr")  # the bookkeeping is a plain Zarr group
        assert "done" in tree["_gen5dask"].dataset
    # the numeric view the stages compute on: legend codes, exact brick codes
    codes = read_chunk(p, 1, ["kind", "brickname", "split"])
    assert codes["kind"].dtype == np.int8 and set(codes["kind"]) == {3}
    assert codes["brickname"].tolist() == [15020015] * 4
    assert read_chunk(p, 1, ["kind"], decode=True)["kind"].tolist() == ["anchor"] * 4
    with pytest.raises(StoreError, match="unknown value 'lense'"):
        write_columns(p, {"kind": np.array(["lense"] * N)})
    with pytest.raises(StoreError, match="RRRRpDDD"):
        write_columns(p, {"brickname": np.array(["1502p15"] * N)})


def test_lock_lives_outside_the_store_and_survives_a_rebuild(tmp_path):
    from gen5dask.store import store_workdir

    p = tmp_path / "s.zarr"
    with store_lock(p):
        _make(p)
        create_store(p, n_samples=N, stage="test", config={"a": 9}, seed=1, stamp_size=ST,
                     chunk_size=CS, overwrite=True)  # rebuild under the lock
        with pytest.raises(StoreLockedError), store_lock(p):
            pass
    assert (store_workdir(p) / "lock").exists() and not (p / "lock").exists()
    assert sorted(x.name for x in p.iterdir() if not x.name.endswith(".json")) == sorted(
        ["_gen5dask", "band", "sample", *store_geometry(p)["variables"]])


def test_mark_pending_and_resume(tmp_path):
    from gen5dask.store import mark_pending

    p = _make(tmp_path / "s.zarr")
    _write_all(p)
    finalize_store(p)
    mark_pending(p, [1])
    assert pending_chunks(p) == [1] and not is_complete(p)
    _write_all(p, chunks={1})
    finalize_store(p)
    assert is_complete(p) and validate(p) == []


def _legacy_store(path):
    """A store of the first layout: int8 codes + gen5dask_legend, brick codes, marker files."""
    import json

    import zarr

    n = 3
    root = zarr.open_group(str(path), mode="w", zarr_format=3,
                           attributes={"bands": "grz", "complete": True, "stage": "old"})
    root.create_array("sample", shape=(n,), chunks=(n,), dtype="i8", dimension_names=("sample",))
    root["sample"][:] = [5, 6, 7]
    k = root.create_array("kind", shape=(n,), chunks=(n,), dtype="i1",
                          dimension_names=("sample",),
                          attributes={"gen5dask_legend": ["host", "control", "injection"]})
    k[:] = [0, 2, 2]
    b = root.create_array("brickname", shape=(n,), chunks=(n,), dtype="i4",
                          dimension_names=("sample",), attributes={"units": "brickcode"})
    b[:] = [15020015] * n
    img = root.create_array("image", shape=(n, 3, 2, 2), chunks=(n, 3, 2, 2), dtype="f4",
                            dimension_names=("sample", "band", "y", "x"))
    img[:] = 1.0
    from gen5dask.store import consolidate

    (path / "_gen5dask" / "done").mkdir(parents=True)
    (path / "_gen5dask" / "done" / "00000000").write_text("{}")
    (path / "_gen5dask" / "manifest.json").write_text(json.dumps({
        "n_samples": n, "bands": ["g", "r", "z"], "stamp_size": 2, "chunk_size": 256,
        "variables": ["kind", "brickname", "image"], "config_hash": "x", "stage": "old"}))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old layout's foreign folder
        consolidate(path)
    return path


def test_first_layout_stores_still_open_and_refuse_writes(tmp_path):
    p = _legacy_store(tmp_path / "old.zarr")
    assert is_complete(p) and pending_chunks(p) == []
    ds = open_store(p)
    assert ds.kind.values.tolist() == ["host", "injection", "injection"]
    assert ds.brickname.values.tolist() == ["1502p015"] * 3
    assert ds.image.sel(band="r").shape == (3, 2, 2)
    assert read_table(p)["kind"].tolist() == ["host", "injection", "injection"]
    assert read_chunk(p, 0, ["kind"])["kind"].tolist() == [0, 2, 2]
    with pytest.raises(StoreError, match="older gen5dask.*--force"):
        write_columns(p, {"visibility": np.zeros(3, "f4")})
    with pytest.raises(StoreError, match="older gen5dask"):
        create_store(p, n_samples=3, stage="old", config={}, seed=0)

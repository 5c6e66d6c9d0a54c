"""ChunkDecoder: the loader's direct chunk decode returns exactly what zarr returns."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from gen5dask.store import create_store, write_chunk
from gen5dask.store.schema import REQUIRED
from gen5dask.store.testing import fake_chunk
from gen5dask.store.zarrstore import chunk_bounds
from gen5dask.train.chunkdecode import ChunkDecoder

N, CHUNK, STAMP = 40, 16, 16  # last chunk short (8 rows)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.zarr"
    create_store(path, n_samples=N, stage="t", config={"t": 1}, seed=0, stamp_size=STAMP,
                 chunk_size=CHUNK)
    for i, (a, b) in enumerate(chunk_bounds(N, CHUNK)):
        if i == 1:
            continue  # never written: zarr fills it with the fill value
        d = fake_chunk(np.arange(a, b), variables=list(REQUIRED), stamp_size=STAMP, seed=0)
        d["image"][0, 1, 2, 3] = np.nan  # non-finite pixels survive bit for bit
        write_chunk(path, i, d)
    return path


def _same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_direct_decode_equals_zarr(store):
    arr = zarr.open_group(str(store), mode="r")["image"]
    dec = ChunkDecoder(arr)
    assert dec._root is not None  # the contract store's layout takes the direct path
    for a, b in chunk_bounds(N, CHUNK):
        want = np.asarray(arr[a:b])
        assert _same_bits(dec.read(a, b), want), (a, b)
        out = np.full((b - a, *arr.shape[1:]), 7.0, np.float32)
        assert dec.read(a, b, out=out) is out
        assert _same_bits(out, want), (a, b)
    assert np.isnan(dec.read(16, 32)).all()  # the missing chunk: zarr's fill value


def test_blosc_threads_restored(store):
    from numcodecs import blosc

    before = blosc.use_threads
    ChunkDecoder(zarr.open_group(str(store), mode="r")["image"]).read(0, CHUNK)
    assert blosc.use_threads is before


def test_uncompressed_and_other_layouts(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(N, 3, 4, 4)).astype(np.float32)
    raw = zarr.create_array(str(tmp_path / "raw.zarr"), shape=data.shape, chunks=(CHUNK, 3, 4, 4),
                            dtype="f4", compressors=None)
    raw[:] = data
    dec = ChunkDecoder(raw)
    assert dec._root is not None
    for a, b in chunk_bounds(N, CHUNK):
        assert _same_bits(dec.read(a, b), data[a:b])
    # chunks split along a pixel axis: not a direct layout, read through zarr
    split = zarr.create_array(str(tmp_path / "split.zarr"), shape=data.shape,
                              chunks=(CHUNK, 3, 2, 4), dtype="f4")
    split[:] = data
    dec = ChunkDecoder(split)
    assert dec._root is None
    assert _same_bits(dec.read(16, 32), data[16:32])


def test_rejects_a_read_that_is_not_one_chunk(store):
    dec = ChunkDecoder(zarr.open_group(str(store), mode="r")["image"])
    for a, b in ((1, 16), (0, 17), (32, 41), (16, 16)):
        with pytest.raises(ValueError, match="not one chunk"):
            dec.read(a, b)
    with pytest.raises(ValueError, match="out must be"):
        dec.read(0, 16, out=np.empty((15, 3, STAMP, STAMP), np.float32))

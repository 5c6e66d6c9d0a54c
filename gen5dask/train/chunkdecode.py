"""Decode one whole Zarr chunk of a local store straight into a caller's buffer.

The loader workers read whole store chunks (:mod:`gen5dask.train.dataset`). Through the
zarr v3 API a chunk read hops to zarr's event-loop thread and then to a codec thread, decodes
into a new buffer and copies it into the destination: ~8 us per 64x64 grz stamp of extra CPU
(a quarter of the decode), and on a loaded machine every thread hop waits for a time slice.
:class:`ChunkDecoder` does the same decode in the calling thread with no copy: it maps the
chunk file (the compressed bytes are read from the page cache, not copied) and runs the
array's own Blosc codec (one thread) straight into the destination — about half the CPU of a
read into a buffer followed by the decode. The bytes are the ones zarr would return (a test
compares them).

Only the layout the contract stores use takes this path — a ``LocalStore``, a regular chunk
grid, codecs ``bytes`` (native byte order) [+ ``blosc``], a chunk that exists on disk and lies
inside the array — anything else (a missing chunk, which zarr fills with the fill value; a
sharded, transposed or remote array) is read through zarr as before.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _single_thread_blosc():
    """numcodecs' Blosc in one thread for this call (it uses its thread pool when called
    from the main thread; a loader worker is one core's worth of work)."""
    from numcodecs import blosc

    old = blosc.use_threads
    blosc.use_threads = False
    try:
        yield blosc
    finally:
        blosc.use_threads = old


class ChunkDecoder:
    """Whole-chunk reads of one zarr v3 array along its first axis.

    Parameters
    ----------
    arr : zarr.Array
        The array (opened read-only).
    """

    def __init__(self, arr):
        self.arr = arr
        self.chunk_shape = tuple(int(c) for c in arr.chunks)
        self._root = self._direct_root(arr)

    @staticmethod
    def _direct_root(arr) -> Path | None:
        """Directory of the array's chunk files when the direct path applies, else None."""
        from zarr.codecs import BloscCodec, BytesCodec
        from zarr.storage import LocalStore

        try:
            md = arr.metadata
            store = arr.store_path.store
            codecs = tuple(md.codecs)
            grid_shape = tuple(md.chunk_grid.chunk_shape)
        except AttributeError:  # zarr v2 array or an unknown grid
            return None
        if not isinstance(store, LocalStore) or grid_shape != tuple(arr.chunks):
            return None
        if not codecs or not isinstance(codecs[0], BytesCodec):
            return None
        if any(not isinstance(c, BloscCodec) for c in codecs[1:]) or len(codecs) > 2:
            return None
        dt = np.dtype(arr.dtype)
        endian = getattr(codecs[0].endian, "value", codecs[0].endian)
        if dt.itemsize > 1 and endian not in (None, sys.byteorder):
            return None
        if tuple(arr.shape[1:]) != tuple(arr.chunks[1:]):
            return None  # chunks must span every axis but the first
        return Path(store.root) / arr.store_path.path

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` of one whole chunk (``start`` a chunk boundary).

        Parameters
        ----------
        start, stop : int
            Chunk bounds (``stop`` is the array end for the last, short chunk).
        out : numpy.ndarray, optional
            C-contiguous array of the array's dtype and shape ``(stop - start, ...)`` to fill.

        Returns
        -------
        numpy.ndarray
            ``out`` (or a new array), equal to ``arr[start:stop]``.
        """
        cs = self.chunk_shape[0]
        if start % cs or stop - start > cs or stop > self.arr.shape[0] or stop <= start:
            msg = f"ChunkDecoder.read({start}, {stop}): not one chunk of size {cs}"
            raise ValueError(msg)
        shape = (stop - start, *self.arr.shape[1:])
        dt = np.dtype(self.arr.dtype)
        if out is None:
            out = np.empty(shape, dt)
        elif out.shape != shape or out.dtype != dt or not out.flags.c_contiguous:
            msg = f"out must be C-contiguous {dt} of shape {shape}, got {out.dtype} {out.shape}"
            raise ValueError(msg)
        if self._root is None or not self._direct(start // cs, stop - start, out):
            self._zarr_read(start, stop, out)
        return out

    def _direct(self, i: int, k: int, out: np.ndarray) -> bool:
        key = self.arr.metadata.encode_chunk_key((i,) + (0,) * (len(self.chunk_shape) - 1))
        try:
            fd = os.open(self._root / key, os.O_RDONLY)
        except FileNotFoundError:
            return False  # never written: zarr returns the fill value
        try:
            if os.fstat(fd).st_size == 0:
                return False
            # the codec reads the page cache through a mapping: no copy of the compressed bytes
            m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        with m:
            return self._decode(m, out)

    def _decode(self, src, out: np.ndarray) -> bool:
        full = int(np.prod(self.chunk_shape)) * out.itemsize
        flat = out.reshape(-1).view(np.uint8)
        if len(self.arr.metadata.codecs) == 1:  # raw bytes
            if len(src) != full:
                return False
            raw = np.frombuffer(src, np.uint8, count=flat.size)
            flat[:] = raw
            del raw  # release the mapping's buffer before it is closed
            return True
        with _single_thread_blosc() as blosc:
            nbytes, _, _ = blosc._cbuffer_sizes(src)
            if nbytes != full:
                return False
            if flat.size == full:  # a whole chunk: decode in place
                blosc.decompress(src, flat)
            else:  # the short last chunk is stored padded to the full chunk shape
                tmp = np.empty(full, np.uint8)
                blosc.decompress(src, tmp)
                flat[:] = tmp[: flat.size]
        return True

    def _zarr_read(self, start: int, stop: int, out: np.ndarray) -> None:
        from zarr.core.buffer import default_buffer_prototype

        self.arr.get_basic_selection(
            slice(start, stop), out=default_buffer_prototype().nd_buffer.from_numpy_array(out))


__all__ = ["ChunkDecoder"]

"""The one shared numba decorator for every kernel.

``cache=True`` writes compiled code to ``NUMBA_CACHE_DIR`` (set per user in ``gen5dask``);
``nogil=True`` lets Dask's threaded workers run kernels concurrently; ``fastmath`` stays off so
results are bit-identical across machines and chunkings.
"""

from __future__ import annotations

import functools

import numba

jit = functools.partial(numba.njit, cache=True, nogil=True, fastmath=False, error_model="numpy")

__all__ = ["jit"]

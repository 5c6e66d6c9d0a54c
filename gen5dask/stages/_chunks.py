"""Stages map per-chunk tasks with :func:`gen5dask.executor.map_chunks` (re-exported here)."""

from __future__ import annotations

from gen5dask.executor import map_chunks

__all__ = ["map_chunks"]

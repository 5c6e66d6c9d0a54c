"""Map a per-chunk task over a store's pending chunks on Dask (or in-process), with progress.

The task function runs on a worker, opens the stores itself (nothing large is pickled into the
graph), writes its output chunk with :func:`gen5dask.store.write_chunk` and returns a small
summary dict. ``client=None`` runs the same tasks in this process, in order: the reference
executor that the Dask path must reproduce bit for bit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

_SCALARS = (str, bytes, int, float, bool, type(None), Path)


def map_chunks(
    func: Callable[..., Any],
    indices: Sequence[int],
    *args: Any,
    client: Any = None,
    desc: str = "",
    progress: bool = True,
    **kwargs: Any,
) -> list[Any]:
    """Run ``func(index, *args, **kwargs)`` for every chunk index; results in index order.

    Task failures propagate with the chunk index in the message; chunks already written by
    then keep their completion markers, so a rerun resumes.
    """
    indices = list(indices)
    results: dict[int, Any] = {}
    bar = tqdm(total=len(indices), desc=desc, unit="chunk", disable=not progress, file=sys.stderr)
    try:
        if client is None:
            for i in indices:
                results[i] = func(i, *args, **kwargs)
                bar.update(1)
        else:
            from distributed import as_completed

            # ship every non-scalar argument to each worker once (not once per task): a plan or a
            # row map passed to thousands of tasks would otherwise sit in worker memory per task
            shared = [
                # a one-element list, so a dict/list argument becomes one object, not many
                a if isinstance(a, _SCALARS) else client.scatter([a], broadcast=True, hash=False)[0]
                for a in args
            ]
            futures = client.map(
                func, indices, *[[a] * len(indices) for a in shared], pure=False, **kwargs
            )
            index_of = {f.key: i for f, i in zip(futures, indices, strict=True)}
            pending = {f.key: f for f in futures}
            completed = as_completed(futures)
            del futures  # hold each result only until it is fetched (worker memory stays flat)
            for fut in completed:
                i = index_of[fut.key]
                try:
                    results[i] = fut.result()
                except Exception as exc:
                    for other in pending.values():
                        other.cancel()
                    msg = f"{desc or func.__name__}: chunk {i} failed: {exc}"
                    raise RuntimeError(msg) from exc
                del pending[fut.key]
                fut.release()
                bar.update(1)
    finally:
        bar.close()
    return [results[i] for i in indices]


__all__ = ["map_chunks"]

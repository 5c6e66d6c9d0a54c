"""Persistent loader worker processes that fill a shared ring of prepared samples.

The training process (the *consumer*) owns a ring: shared arrays of ``cap`` rows — the pixels,
normalisation statistics and D4 codes of prepared samples, or finished network inputs in
emission order when the workers assemble the batches (see
:class:`gen5dask.train.dataset.StreamLoader`). It hands every worker a list of *jobs* —
(sequence number, work unit, ring position, rows, destinations) — and each worker writes its
units, in order, as soon as the consumer has released that space, then reports the sequence
number. A job with destinations (one ring position per sample) writes the unit's assembled
samples there; its position + rows is one past the largest.
Positions are *virtual* (monotone; physical row = position mod ``cap``) and assigned by the
consumer, so the ring is one FIFO whatever the number of workers: the consumer releases space
in position order by raising one shared counter (``freed``), and a worker writes a unit of
``k`` rows at position ``p`` only when ``p + k - freed <= cap``.

Work is grouped in *generations*: :meth:`WorkerPool.abort` drops every queued job, waits until
each worker acknowledges (so no stale write can land after it) and restarts positions at 0.
That lets the consumer queue the next epoch's jobs while the current epoch is still being
consumed (the workers prefetch across the epoch boundary, e.g. during validation) and drop
them if the next epoch turns out to be another one.

Workers are started with a ``forkserver`` or ``spawn`` context (never ``fork``: zarr's event
loop thread or a Dask client in the training process would deadlock a forked child), run one
torch thread each, and report any exception with its traceback; the consumer re-raises it.
:class:`InlinePool` is the same interface without processes (``num_workers=0``): the consumer
writes a unit itself when it needs it.
"""

from __future__ import annotations

import collections
import queue as queue_mod
import time
import traceback
from typing import Any, Protocol

import numpy as np
import torch

#: seconds between polls of a worker waiting for ring space (or of the consumer for results)
POLL_S = 0.0005
#: seconds without progress after which a wait is reported as stalled
TIMEOUT_S = 600.0


class UnitWriter(Protocol):
    """What the workers run: :class:`gen5dask.train.dataset.StampStream` implements it."""

    def begin_epoch(self, epoch: int, units: list[int]) -> None:
        """Called once per job list (epoch) before its first unit is written."""

    def write_unit(self, unit: int, epoch: int, arrays: dict[str, np.ndarray],
                   row: int) -> None:
        """Write the prepared rows of ``unit`` into ``arrays[...][row : row + size]``."""

    def write_assembled(self, unit: int, epoch: int, arrays: dict[str, np.ndarray],
                        rows: np.ndarray) -> None:
        """Write the finished network input of ``unit``'s samples into ``arrays`` at ``rows``
        (one ring row per sample, in the unit's order)."""


def _write(writer: UnitWriter, first: bool, epoch: int, units: list[int], unit: int,
           views: dict[str, np.ndarray], pos: int, dest: np.ndarray | None, cap: int) -> None:
    """One job: a unit's prepared rows at ring position ``pos`` or, with ``dest`` (one ring
    position per sample), its assembled network input."""
    if first:
        writer.begin_epoch(epoch, units)
    if dest is None:
        writer.write_unit(unit, epoch, views, pos % cap)
    else:
        writer.write_assembled(unit, epoch, views, dest % cap)


def _worker_loop(writer: UnitWriter, wid: int, arrays: dict[str, torch.Tensor],
                 freed: torch.Tensor, cap: int, cmd_q, reply_q) -> None:
    """Body of one worker process (see module docstring for the protocol)."""
    torch.set_num_threads(1)
    views = {k: v.numpy() for k, v in arrays.items()}
    freed_v = freed.numpy()
    gen = 0
    todo: collections.deque = collections.deque()
    while True:
        try:
            msg = cmd_q.get() if not todo else cmd_q.get_nowait()
        except queue_mod.Empty:
            msg = None
        if msg is not None:
            kind = msg[0]
            if kind == "stop":
                return
            if kind == "abort":
                gen = msg[1]
                todo.clear()
                reply_q.put(("aborted", wid, gen, None))
            elif kind == "jobs" and msg[1] == gen:
                _, _, epoch, items = msg
                units = [it[1] for it in items]
                todo.extend((epoch, i == 0, units, *it) for i, it in enumerate(items))
            continue
        epoch, first, units, seq, unit, pos, k, dest = todo[0]
        if pos + k - int(freed_v[0]) > cap:
            time.sleep(POLL_S)
            continue
        try:
            _write(writer, first, epoch, units, unit, views, pos, dest, cap)
        except Exception:  # noqa: BLE001 - reported to the consumer, which raises it
            reply_q.put(("error", wid, gen, traceback.format_exc()))
            todo.clear()
            continue
        todo.popleft()
        reply_q.put(("done", wid, gen, seq))


class WorkerPool:
    """Consumer-side handle of ``n`` persistent worker processes writing into ``arrays``.

    Parameters
    ----------
    writer : UnitWriter
        Picklable object the workers call (sent once, at start).
    n : int
        Worker processes (>= 1).
    arrays : dict of torch.Tensor
        The ring, in shared memory (``share_memory_()``), first dimension ``cap``.
    ctx : multiprocessing context
        ``forkserver`` or ``spawn`` (see :func:`gen5dask.train.dataset.loader_context`).
    """

    def __init__(self, writer: UnitWriter, n: int, arrays: dict[str, torch.Tensor], ctx):
        self.n = int(n)
        self.cap = int(next(iter(arrays.values())).shape[0])
        self.freed = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.gen = 0
        self.done: set[int] = set()
        self.cmd = [ctx.Queue() for _ in range(self.n)]
        self.reply = ctx.Queue()
        self.procs = [ctx.Process(target=_worker_loop, name=f"gen5dask-loader-{w}",
                                  args=(writer, w, arrays, self.freed, self.cap, self.cmd[w],
                                        self.reply), daemon=True)
                      for w in range(self.n)]
        for p in self.procs:
            p.start()

    def submit(self, epoch: int, jobs: list[list[tuple]]) -> None:
        """Queue per worker ``(seq, unit, position, rows, dest)`` jobs of ``epoch`` (this
        generation). A job is written once ``position + rows - freed <= cap``; ``dest`` is None
        (prepared rows at ``position``) or the ring positions of the unit's assembled samples
        (then ``position + rows`` is one past the largest)."""
        for w, items in enumerate(jobs):
            if items:
                self.cmd[w].put(("jobs", self.gen, int(epoch), items))

    def release(self, pos: int) -> None:
        """Every ring position below ``pos`` may be overwritten."""
        self.freed[0] = int(pos)

    def _check_alive(self) -> None:
        for w, p in enumerate(self.procs):
            if not p.is_alive():
                msg = f"loader worker {w} died (exit code {p.exitcode})"
                raise RuntimeError(msg)

    def _get(self, t0: float, what: str):
        try:
            return self.reply.get(timeout=0.05)
        except queue_mod.Empty:
            self._check_alive()
            if time.monotonic() - t0 > TIMEOUT_S:
                msg = f"loader: no progress for {TIMEOUT_S:.0f} s waiting for {what}"
                raise RuntimeError(msg) from None
            return None

    def wait(self, seq: int) -> None:
        """Block until job ``seq`` of this generation is written (re-raise worker errors)."""
        t0 = time.monotonic()
        while seq not in self.done:
            msg = self._get(t0, f"work unit {seq}")
            if msg is None:
                continue
            kind, w, gen, val = msg
            if gen != self.gen:
                continue
            if kind == "error":
                msg = f"loader worker {w} failed:\n{val}"
                raise RuntimeError(msg)
            if kind == "done":
                self.done.add(val)
                t0 = time.monotonic()
        self.done.discard(seq)

    def abort(self) -> None:
        """Drop all queued work; afterwards no worker writes until new jobs are submitted."""
        self.gen += 1
        for q in self.cmd:
            q.put(("abort", self.gen))
        acked: set[int] = set()
        t0 = time.monotonic()
        while len(acked) < self.n:
            msg = self._get(t0, "workers to stop their queued work")
            if msg is not None and msg[0] == "aborted" and msg[2] == self.gen:
                acked.add(msg[1])
        self.done.clear()
        self.freed[0] = 0

    def close(self) -> None:
        """Stop the worker processes."""
        for q, p in zip(self.cmd, self.procs, strict=True):
            if p.is_alive():
                try:
                    q.put(("stop",))
                except (OSError, ValueError):
                    pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for q in (*self.cmd, self.reply):
            q.cancel_join_thread()  # nothing left to deliver to stopped workers
            q.close()


class InlinePool:
    """:class:`WorkerPool` without processes: :meth:`wait` writes the pending units itself."""

    def __init__(self, writer: UnitWriter, arrays: dict[str, torch.Tensor]):
        self.writer = writer
        self.views = {k: v.numpy() for k, v in arrays.items()}
        self.cap = int(next(iter(arrays.values())).shape[0])
        self.pending: collections.deque = collections.deque()
        self.freed = 0

    def submit(self, epoch: int, jobs: list[list[tuple]]) -> None:
        items = sorted((it for w in jobs for it in w), key=lambda it: it[0])
        units = [it[1] for it in items]
        self.pending.extend((epoch, i == 0, units, *it) for i, it in enumerate(items))

    def release(self, pos: int) -> None:
        self.freed = int(pos)

    def wait(self, seq: int) -> None:
        while self.pending and self.pending[0][3] <= seq:
            epoch, first, units, _s, unit, pos, k, dest = self.pending.popleft()
            if pos + k - self.freed > self.cap:
                msg = "loader ring overrun (consumer did not release space)"
                raise RuntimeError(msg)
            _write(self.writer, first, epoch, units, unit, self.views, pos, dest, self.cap)

    def abort(self) -> None:
        self.pending.clear()
        self.freed = 0

    def close(self) -> None:
        self.pending.clear()


def ring_arrays(shapes: dict[str, tuple[tuple[int, ...], Any]], *, shared: bool
                ) -> dict[str, torch.Tensor]:
    """Ring arrays ``{name: ((shape), torch dtype)}``, in shared memory if ``shared``."""
    out = {}
    for name, (shape, dtype) in shapes.items():
        t = torch.empty(shape, dtype=dtype)
        out[name] = t.share_memory_() if shared else t
    return out


__all__ = ["POLL_S", "TIMEOUT_S", "InlinePool", "UnitWriter", "WorkerPool", "ring_arrays"]

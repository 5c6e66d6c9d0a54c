"""How far two processes scale on this machine, measured without the store and without Dask.

``bench_inject.py`` reports the inject stage's 1 -> 2 worker speedup. On a shared or
virtualised 2-core machine two busy processes may not get two full cores, so that ratio is only
meaningful next to the machine's own ceiling, measured in the same run. Two references, each
timed in 1 and then 2 concurrently running processes (``spawn``; a barrier starts the timed part
of every process at once, the slowest process sets the wall time):

* ``compute``: a numba loop of scalar floating-point work with no memory traffic -- whether the
  machine gives two processes two full cores at all;
* ``inject_rows``: the inject stage's own per-chunk computation
  (:func:`gen5dask.injection.batch.inject_rows` on an in-memory chunk of synthetic hosts, a
  third of the rows controls) -- the same work as a Dask task, less the store reads and writes,
  the scheduler and the driver.

Rounds alternate 1 and 2 processes; medians over rounds. Usage::

    python scripts/scaling_reference.py [--json PATH] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_mod
import statistics
import sys
import time
from pathlib import Path

import numpy as np

STAMP = 64
#: the references :func:`measure` times.
KINDS = ("compute", "inject_rows")


def _compute_kernel():
    import numba

    @numba.njit(nogil=True)
    def loop(n):
        x = 0.0
        y = 1.0
        for i in range(n):
            y = y * 0.9999999 + 1e-7
            x += np.sqrt(y + i * 1e-9)
        return x

    return loop


def chunk_batch(n_rows: int, stamp_size: int = STAMP):
    """``(host, plan, spec)`` of one in-memory chunk: a control, an uncalibrated and a
    calibrated injection per host (as in ``bench_inject.py``), default config."""
    from gen5dask.config import config_from_dict
    from gen5dask.injection.ids import ROLE_CONTROL, ROLE_INJECTION
    from gen5dask.injection.laws import MODE_CODES, TargetDistribution
    from gen5dask.injection.plan import HOST_VARS, PLAN_DTYPE
    from gen5dask.injection.spec import InjectSpec
    from gen5dask.store.testing import synthetic_host_chunk

    tpl = synthetic_host_chunk(n_rows, stamp_size=stamp_size)
    host = {k: v for k, v in tpl.items() if k in HOST_VARS}
    host["split"] = np.zeros(n_rows, dtype=np.int8)
    host["brickname"] = np.zeros(n_rows, dtype=np.int32)
    plan = np.zeros(n_rows, dtype=PLAN_DTYPE)
    code = np.arange(n_rows) % 3
    plan["sample"] = np.arange(n_rows)
    plan["host_id"] = np.arange(n_rows) // 3
    plan["role"] = np.where(code == 0, ROLE_CONTROL, ROLE_INJECTION)
    plan["mode"] = np.where(code == 2, MODE_CODES["calibrated"], MODE_CODES["uncalibrated"])
    plan["host_mag_r"] = 19.0
    cfg = config_from_dict({})
    target = TargetDistribution(cfg.calibrate.bins, cfg.calibrate.fractions)
    spec = InjectSpec.from_config(cfg.inject, seed=cfg.seed, pixscale=cfg.pixscale,
                                  bands=("g", "r", "z"), stamp_size=stamp_size, target=target)
    return host, plan, spec


def _worker(kind: str, size: int, repeats: int, barrier, queue) -> None:
    """One process: set up and warm outside the timing, wait for the others, time the work."""
    if kind not in KINDS:
        msg = f"scaling reference: unknown kind {kind!r} (known: {', '.join(KINDS)})"
        raise ValueError(msg)
    if kind == "compute":
        loop = _compute_kernel()
        loop(1000)

        def work():
            loop(size)
    else:
        from gen5dask.injection.batch import inject_rows

        host, plan, spec = chunk_batch(size)
        inject_rows(host, plan, spec)

        def work():
            inject_rows(host, plan, spec)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(repeats):
        work()
    queue.put(time.perf_counter() - t0)


def timed_processes(kind: str, n_proc: int, size: int, repeats: int) -> float:
    """Wall seconds of ``repeats`` work units in each of ``n_proc`` concurrent processes."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n_proc)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, size, repeats, barrier, queue))
             for _ in range(n_proc)]
    for p in procs:
        p.start()
    times: list[float] = []
    try:
        while len(times) < n_proc:
            try:
                times.append(queue.get(timeout=1.0))
            except queue_mod.Empty:
                failed = [p.exitcode for p in procs if p.exitcode]
                if failed:  # the others would wait at the barrier forever
                    msg = (f"scaling reference: a {kind} process exited with code {failed[0]}"
                           " (its traceback is above)")
                    raise RuntimeError(msg) from None
    finally:
        for p in procs:
            if p.is_alive() and len(times) < n_proc:
                p.terminate()
            p.join()
    return max(times)


def measure(*, rounds: int = 3, compute_iters: int = 60_000_000, inject_rows_n: int = 256,
            inject_repeats: int = 6) -> dict:
    """Both references: per kind, work units per second with 1 and 2 processes (medians over
    ``rounds`` alternating rounds) and ``speedup_1_to_2`` (2 processes' throughput over 1's)."""
    out = {}
    for kind, size, repeats in (("compute", compute_iters, 1),
                                ("inject_rows", inject_rows_n, inject_repeats)):
        rate = {1: [], 2: []}
        for _ in range(rounds):
            for n_proc in (1, 2):
                dt = timed_processes(kind, n_proc, size, repeats)
                units = n_proc * repeats * (size if kind == "inject_rows" else 1)
                rate[n_proc].append(units / dt)
        r1, r2 = statistics.median(rate[1]), statistics.median(rate[2])
        out[kind] = {
            "units": "stamps" if kind == "inject_rows" else "loops",
            "per_s_1proc": r1,
            "per_s_2proc": r2,
            "speedup_1_to_2": r2 / r1,
            "rounds_per_s": {"1proc": rate[1], "2proc": rate[2]},
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="output JSON path")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    result = measure(rounds=args.rounds)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""Benchmark ``gen5dask inject``: throughput (sync, 1 and 2 Dask workers) and peak worker RSS.

Usage::

    python scripts/bench_inject.py --json bench_inject.json [--quick] [--workdir DIR]

A synthetic host store (stamp 64, grz, realistic sky noise + an elliptical LRG, DR10-like PSF
sizes) is written quickly by repeating one generated template chunk under fresh host ids; the
injection parameters are keyed by host id, so every output is different. Output stamps per
host: 1 control + 1 uncalibrated + 1 calibrated injection (``inject.brightness: both``), so
two of every three stamps are rendered.

Measurements (wall clock, including the host scan, store writes and Dask overheads):

* ``stamps_per_s_sync``: ``client=None`` (tasks run one by one in this process -- the same as
  Dask's synchronous scheduler);
* ``stamps_per_s_1worker`` / ``stamps_per_s_2workers``: a ``LocalCluster`` of 1 / 2 worker
  processes with one thread each; ``speedup_1_to_2_workers`` and ``ratio_2workers_vs_sync``;
* ``stamps_per_s_2workers_dask_malloc_trim``: 2 workers with distributed's default
  ``MALLOC_TRIM_THRESHOLD_=65536`` (the other Dask runs drop it, see :func:`_run`);
* ``stamps_per_s_2workers_dask_defaults`` (and its ``cpu_ms_per_stamp_...``): 2 workers with
  distributed's own settings instead of gen5dask's batch settings (statistical profiler on,
  20 ms tick, ...; the other Dask runs use ``gen5dask.cluster.BATCH_DASK_CONFIG``);
* ``peak_rss_mb_10k`` / ``peak_rss_mb_200k``: the largest peak RSS of any worker (2 workers)
  after injecting into 10k / 200k output stamps' worth of hosts (``--quick``: 3k and 30k
  stamps, keys keep their names and ``n_stamps_*`` records the sizes). Flat RSS between the two
  sizes shows that worker memory is bounded by a few chunks.

Where a run's wall time goes (every run above; ``phases_s``): ``host_scan`` (the stage's map
over host chunks: finite pixels, host magnitudes), ``chunks`` (the map over output chunks:
read hosts, render, noise, write) and ``fixed`` (the rest: plan, store creation, finalize,
calibration record -- per run, not per stamp), and the CPU seconds of the driver
(``cpu_driver``, all its threads) and of the workers (``cpu_workers``, summed);
``cpu_ms_per_stamp`` is their sum per output stamp -- on a loaded machine the CPU cost per
stamp stays meaningful when wall-clock ratios do not. ``stamps_per_s_chunks_*`` and
``speedup_1_to_2_workers_chunks`` divide by the ``chunks`` phase only: the steady-state rate
a catalogue-scale run approaches. Throughput runs use 6,144 output stamps (24 chunks) with and
without ``--quick``: the earlier quick size (1,536 stamps = 6 chunks, 3 per worker) let the
per-run fixed part and the last chunk's imbalance decide the ratios.

Numbers depend on the machine and on whatever else runs on it; the JSON records ``cpu_count``
and the load average before and after.

The machine's own ceiling, in the same run (``reference``, :mod:`scaling_reference`): the
1 -> 2 process speedup of a numba loop with no memory traffic (``compute``: does the machine
give two busy processes two full cores?) and of the stage's per-chunk computation on in-memory
hosts, without the store, the scheduler or the driver (``inject_rows``).
``speedup_1_to_2_workers_vs_reference`` divides the stage's speedup by the ``inject_rows`` one,
and ``stamps_per_s_2workers_vs_in_memory`` the stage's 2-worker rate by the in-memory rate of two
processes (what the store reads and writes, Dask and the driver leave of it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import scaling_reference

STAMP = 64
CHUNK = 256


def make_host_store(path: Path, n_hosts: int) -> Path:
    """Synthetic host store of ``n_hosts`` (see ``gen5dask.store.testing``)."""
    from gen5dask.store.testing import make_synthetic_host_store

    return make_synthetic_host_store(path, n_hosts, stamp_size=STAMP, chunk_size=CHUNK,
                                     stage="simulate")


def _cfg(out: Path, hosts: Path):
    from gen5dask.config import config_from_dict

    return config_from_dict({
        "output_dir": str(out),
        "stamp_size": STAMP,
        "chunk_size": CHUNK,
        "cluster": {"progress": False},
        "inject": {"hosts": str(hosts), "n_null": 0},
        "calibrate": {"plot": False},
    })


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _PhaseTimer:
    """Wall seconds of the stage's two chunk maps (by their ``desc``), the rest is "fixed"."""

    def __init__(self) -> None:
        self.seconds = {"host_scan": 0.0, "chunks": 0.0}

    def __enter__(self) -> _PhaseTimer:
        import gen5dask.injection.plan as plan_mod
        import gen5dask.stages.inject as inject_mod

        self._mods = (plan_mod, inject_mod)
        self._orig = inject_mod.map_chunks

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self._orig(*args, **kwargs)
            finally:
                key = "host_scan" if "scan" in kwargs.get("desc", "") else "chunks"
                self.seconds[key] += time.perf_counter() - t0

        for mod in self._mods:
            mod.map_chunks = timed
        return self

    def __exit__(self, *exc) -> None:
        for mod in self._mods:
            mod.map_chunks = self._orig


def _run(
    out: Path, hosts: Path, n_workers: int | None, *, malloc_trim: bool = False,
    dask_defaults: bool = False,
) -> tuple[float, int, float | None, dict]:
    """Inject into ``hosts`` -> (seconds, output stamps, max worker peak RSS MB, phases).

    ``malloc_trim=False`` drops distributed's default ``MALLOC_TRIM_THRESHOLD_=65536`` from the
    worker environment: setting it switches off glibc's dynamic mmap threshold, so every
    chunk-sized numpy array is mmapped and page-faulted afresh (~30 % slower here).
    The cluster runs with gen5dask's batch settings (``gen5dask.cluster.BATCH_DASK_CONFIG``, as
    ``gen5dask run`` does) unless ``dask_defaults`` asks for distributed's own.
    """
    import dask

    from gen5dask.stages.inject import run_inject
    from gen5dask.store import store_geometry

    shutil.rmtree(out, ignore_errors=True)
    cfg = _cfg(out, hosts)
    timer = _PhaseTimer()
    if n_workers is None:
        c0 = _cpu_s()
        t0 = time.perf_counter()
        with timer:
            run_inject(cfg)
        dt = time.perf_counter() - t0
        cpu = {"driver": _cpu_s() - c0, "workers": 0.0}
        rss = None
    else:
        from distributed import Client, LocalCluster

        from gen5dask.cluster import BATCH_DASK_CONFIG, THREAD_CAPS, dask_env

        env = dict(THREAD_CAPS)
        settings = {} if dask_defaults else dict(BATCH_DASK_CONFIG)
        env.update(dask_env(settings))
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        if not malloc_trim:
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with (
            dask.config.set({**settings, "distributed.nanny.pre-spawn-environ": environ}),
            LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                         dashboard_address=None, env=env, silence_logs=40,
                         memory_limit="4GiB") as lc,
            Client(lc) as client,
        ):
            client.run(_warm)  # import + numba cache load outside the timing
            w0 = client.run(_cpu_s)
            c0 = _cpu_s()
            t0 = time.perf_counter()
            with timer:
                run_inject(cfg, client=client)
            dt = time.perf_counter() - t0
            c1 = _cpu_s()
            w1 = client.run(_cpu_s)
            cpu = {"driver": c1 - c0, "workers": sum(w1[k] - w0[k] for k in w0)}
            rss = max(client.run(_maxrss_mb).values())
    n = store_geometry(cfg.layout.train)["n_samples"]
    shutil.rmtree(out, ignore_errors=True)
    phases = {k: round(v, 3) for k, v in timer.seconds.items()}
    phases["fixed"] = round(dt - sum(timer.seconds.values()), 3)
    phases["cpu_driver"] = round(cpu["driver"], 3)
    phases["cpu_workers"] = round(cpu["workers"], 3)
    return dt, n, rss, phases


def profile_sync(out: Path, hosts: Path, top: int = 14) -> dict:
    """Where the synchronous inject spends its time: cProfile cumulative seconds per function.

    Returns ``{"total_s": ..., "functions": {"module:function": cumulative_s, ...}}`` for the
    ``top`` functions by cumulative time below ``run_inject`` (nested, so they overlap), plus
    the renderer and noise kernels whatever their rank.
    """
    import cProfile
    import pstats

    from gen5dask.stages.inject import run_inject

    shutil.rmtree(out, ignore_errors=True)
    cfg = _cfg(out, hosts)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(run_inject, cfg)
    total = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    st = pstats.Stats(prof)
    rows = []
    for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        mod = Path(fname).stem if fname.startswith("/") else fname
        rows.append((ct, f"{mod}:{func}"))
    rows.sort(reverse=True)
    keep = {}
    for ct, name in rows:
        if len(keep) >= top:
            break
        if not name.startswith(("{", "<", "threading", "_base", "thread")):
            keep[name] = round(ct, 3)
    for ct, name in rows:
        if name.split(":")[-1] in ("render_lensed_sersic", "convolve_to_stamps", "render_chunk",
                                   "add_noise", "add_light_into", "solve_amplitude_for_arc_snr",
                                   "write_chunk", "read_host_rows",
                                   "read_samples", "host_table", "build_plan"):
            keep.setdefault(name, round(ct, 3))
    return {"total_s": total, "functions": keep}


def _warm() -> None:
    """Load every jitted kernel (numba cache) in a worker with a tiny injection batch."""
    from gen5dask.injection.batch import inject_rows

    inject_rows(*scaling_reference.chunk_batch(6, STAMP))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="output JSON path")
    ap.add_argument("--quick", action="store_true",
                    help="smaller RSS runs (3k/30k stamps); throughput runs keep 6,144 stamps")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the synchronous run (cProfile, where the time goes)")
    args = ap.parse_args(argv)

    per_host = 3  # control + uncalibrated + calibrated
    n_tp = 6144  # output stamps of the throughput runs (24 chunks; see the module docstring)
    n_small, n_big = (3000, 30000) if args.quick else (10_000, 200_000)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_inject_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # warm numba caches in this process (compile once, outside every timing)
        hosts_w = make_host_store(work / "warm.zarr", 64)
        _run(work / "out_w", hosts_w, None)

        hosts_tp = make_host_store(work / "hosts_tp.zarr", n_tp // per_host)
        load_before = os.getloadavg()
        t_sync, n_out, _, ph_sync = _run(work / "out", hosts_tp, None)
        prof = profile_sync(work / "out", hosts_tp) if args.profile else None
        t_1, _, _, ph_1 = _run(work / "out", hosts_tp, 1)
        t_2, _, _, ph_2 = _run(work / "out", hosts_tp, 2)
        t_2trim, _, _, _ = _run(work / "out", hosts_tp, 2, malloc_trim=True)
        t_2def, _, _, ph_2def = _run(work / "out", hosts_tp, 2, dask_defaults=True)
        hosts_s = make_host_store(work / "hosts_s.zarr", n_small // per_host)
        _, n_s, rss_s, _ = _run(work / "out", hosts_s, 2)
        shutil.rmtree(work / "hosts_s.zarr", ignore_errors=True)
        hosts_b = make_host_store(work / "hosts_b.zarr", n_big // per_host)
        t_b, n_b, rss_b, _ = _run(work / "out", hosts_b, 2)
        reference = scaling_reference.measure(rounds=3, inject_rows_n=CHUNK)
        result = {
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "stamp_size": STAMP,
            "chunk_size": CHUNK,
            "stamps_per_host": per_host,
            "n_stamps_throughput": n_out,
            "stamps_per_s_sync": n_out / t_sync,
            "stamps_per_s_1worker": n_out / t_1,
            "stamps_per_s_2workers": n_out / t_2,
            "stamps_per_s_2workers_dask_malloc_trim": n_out / t_2trim,
            "stamps_per_s_2workers_dask_defaults": n_out / t_2def,
            "cpu_ms_per_stamp_2workers_dask_defaults": round(
                1e3 * (ph_2def["cpu_driver"] + ph_2def["cpu_workers"]) / n_out, 3),
            "rendered_per_s_2workers": n_out * 2 / 3 / t_2,
            "speedup_1_to_2_workers": t_1 / t_2,
            "ratio_2workers_vs_sync": t_sync / t_2,
            "phases_s": {"sync": ph_sync, "1worker": ph_1, "2workers": ph_2},
            "stamps_per_s_chunks_sync": n_out / ph_sync["chunks"],
            "stamps_per_s_chunks_1worker": n_out / ph_1["chunks"],
            "stamps_per_s_chunks_2workers": n_out / ph_2["chunks"],
            "speedup_1_to_2_workers_chunks": ph_1["chunks"] / ph_2["chunks"],
            "cpu_ms_per_stamp": {
                k: round(1e3 * (ph["cpu_driver"] + ph["cpu_workers"]) / n_out, 3)
                for k, ph in (("sync", ph_sync), ("1worker", ph_1), ("2workers", ph_2))
            },
            "n_stamps_10k": n_s,
            "peak_rss_mb_10k": rss_s,
            "n_stamps_200k": n_b,
            "peak_rss_mb_200k": rss_b,
            "stamps_per_s_2workers_big": n_b / t_b,
            "reference": reference,
            "speedup_1_to_2_workers_vs_reference":
                (t_1 / t_2) / reference["inject_rows"]["speedup_1_to_2"],
            "stamps_per_s_2workers_vs_in_memory":
                (n_out / t_2) / reference["inject_rows"]["per_s_2proc"],
            "quick": bool(args.quick),
        }
        if prof is not None:
            result["profile_sync"] = prof
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

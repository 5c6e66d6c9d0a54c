"""Per-stage throughput on a small mock run, projected to catalogue scale.

Usage::

    python scripts/bench_scale.py --json bench_scale.json [--hosts 2000] [--stamp 64]
        [--workers 2] [--quick] [--workdir DIR]

Runs simulate -> inject -> split -> audit -> score (a randomly initialised ``resnet_small``:
scoring cost does not depend on the weights; training is excluded) on a LocalCluster of
``--workers`` single-threaded worker processes, times each stage (after a warm-up that loads
the numba cache in every worker), and reports samples/s/core = samples / (seconds * cores).
``split`` runs on the driver only (one core): its rate is per process and it does not speed
up with workers; ``audit`` mixes Dask pixel tasks with driver-side tables.

Projection: the earlier pipeline's 10.6M-stamp dataset (2 h 25 min on 272 vCPUs) onto 64 and
272 cores, assuming perfectly linear scaling of the Dask stages (stated, not measured) and no
speed-up at all for the driver-side split. With ``--driver-json`` (the output of
``scripts/bench_driver.py``) the driver terms are the measured driver CPU seconds at its
largest row count, scaled linearly to 10.6M rows, and do not shrink with cores: ``split`` (the
whole stage) replaces the one-core split rate, and the audit table part, the inject plan and
evaluate are added as driver terms (the audit's worker rate still contains its own driver part
at the mock size, so the audit total is an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

TARGET_STAMPS = 10_600_000
EARLIER_SECONDS = 2 * 3600 + 25 * 60
EARLIER_CORES = 272


def base_tree(out: Path, *, stamp: int, chunk: int, n_hosts: int) -> dict:
    """Config tree of the mock run (tiny populations besides the hosts)."""
    return {
        "output_dir": str(out),
        "seed": 1,
        "stamp_size": stamp,
        "chunk_size": chunk,
        "cluster": {"progress": False},
        "simulate": {"n_hosts": n_hosts, "n_anchors": max(20, n_hosts // 50),
                     "n_stress": 10, "n_hard_negatives": max(5, n_hosts // 200),
                     "n_rings": 10},
        "inject": {"n_null": 8},
        "calibrate": {"plot": False},
        "score": {"stores": ["train"], "arms": ["baseline"], "batch_size": 128},
    }


def write_random_model(cfg, arm: str = "baseline") -> Path:
    """A valid model file with random ``resnet_small`` weights (scoring cost only)."""
    import torch

    from gen5dask.provenance import config_yaml
    from gen5dask.train.models import arch_spec, build_model

    torch.manual_seed(0)
    spec = arch_spec(cfg.train.model, in_channels=len(cfg.bands))
    model = build_model(spec)
    payload = {
        "state_dict": model.state_dict(), "arch": spec, "arm": {"name": arm},
        "selection_metric": "val_loss", "selection_value": 0.0, "epoch": 0, "epochs_run": 0,
        "early_stopped": False,
        "norm": {"function": "gen5dask.kernels.normalize.normalize_stamps",
                 "r_outer": float(cfg.train.norm_r_outer), "clip": float(cfg.train.norm_clip)},
        "metadata_columns": [], "meta_mean": [], "meta_std": [], "bands": list(cfg.bands),
        "stamp_size": int(cfg.stamp_size), "config": config_yaml(cfg),
        "fingerprint": "bench-random-weights", "history": [], "provenance": {},
    }
    path = cfg.layout.model(arm)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def maxrss_mb() -> float:
    """Peak resident set size of this process, MiB: ``VmHWM`` of /proc/self/status.

    ``ru_maxrss`` is not used: it survives fork/exec, so a Dask worker would report the
    driver's high-water mark at spawn time. ``VmHWM`` belongs to the process's own address
    space and can be reset with :func:`reset_peak_rss`.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> float:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5); returns it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return maxrss_mb()


def local_client(n_workers: int, memory_limit: str = "4GiB"):
    """(cluster, client): single-threaded worker processes, gen5dask's worker environment."""
    from distributed import Client, LocalCluster

    from gen5dask.cluster import THREAD_CAPS

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, env=dict(THREAD_CAPS), silence_logs=40,
                           memory_limit=memory_limit)
    return cluster, Client(cluster)


def warm(stamp: int) -> None:
    """Compile/load the numba kernels used by simulate/inject in this process."""
    from gen5dask.config import config_from_dict
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.simulate import run_simulate

    with tempfile.TemporaryDirectory() as d:
        cfg = config_from_dict(base_tree(Path(d), stamp=stamp, chunk=64, n_hosts=8))
        run_simulate(cfg)
        run_inject(cfg)


def _n(path: Path) -> int:
    from gen5dask.store import store_geometry

    return int(store_geometry(path)["n_samples"])


def run(args) -> dict:
    from gen5dask.config import config_from_dict
    from gen5dask.stages.audit import run_audit
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.score import run_score
    from gen5dask.stages.simulate import run_simulate
    from gen5dask.stages.split import run_split

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    cfg = config_from_dict(base_tree(out, stamp=args.stamp, chunk=args.chunk,
                                     n_hosts=args.hosts))
    cores = args.workers
    cluster, client = local_client(args.workers)
    stages = []
    try:
        client.run(warm, args.stamp)
        warm(args.stamp)

        def timed(name, func, n_of, parallel=True):
            t0 = time.perf_counter()
            path = func(cfg, client=client)
            dt = time.perf_counter() - t0
            n = n_of(path)
            c = cores if parallel else 1
            rec = {"stage": name, "samples": n, "seconds": round(dt, 3),
                   "cores": c, "samples_per_s_per_core": round(n / dt / c, 2),
                   "scaling": "linear (Dask tasks)" if parallel else "driver only"}
            stages.append(rec)
            print(json.dumps(rec), flush=True)

        timed("simulate", run_simulate, _n)
        timed("inject", run_inject, _n)
        n_all = _n(cfg.layout.survey) + _n(cfg.layout.train)
        timed("split", run_split, lambda _: n_all, parallel=False)
        timed("audit", run_audit, lambda _: n_all)
        write_random_model(cfg)
        timed("score", run_score, lambda _: _n(cfg.layout.train))
    finally:
        client.close()
        cluster.close()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    driver = driver_terms(args.driver_json) if args.driver_json else None
    projection = {}
    for ncores in (64, 272):
        per_stage = {}
        for r in stages:
            if driver is not None and r["stage"] == "split":
                continue  # measured as a driver term below
            c = ncores if r["scaling"].startswith("linear") else 1
            per_stage[r["stage"]] = TARGET_STAMPS / (r["samples_per_s_per_core"] * c) / 3600.0
        if driver is not None:
            for k, v in driver["hours"].items():
                per_stage[f"{k} (driver)"] = v
        projection[str(ncores)] = {
            "hours_per_stage": {k: round(v, 3) for k, v in per_stage.items()},
            "hours_total": round(sum(per_stage.values()), 3),
        }
    return {
        "machine": {"cpu_count": os.cpu_count(), "workers": args.workers},
        "settings": {"hosts": args.hosts, "stamp_size": args.stamp, "chunk_size": args.chunk},
        "stages": stages,
        "target_stamps": TARGET_STAMPS,
        "earlier_pipeline": {"seconds": EARLIER_SECONDS, "cores": EARLIER_CORES,
                             "samples_per_s_per_core": round(
                                 TARGET_STAMPS / EARLIER_SECONDS / EARLIER_CORES, 2)},
        "projection_assumption": (
            "linear scaling of Dask stages with cores; split is driver-only (no speed-up); "
            "each stage projected on 10.6M samples"),
        "projection": projection,
        "driver_terms": driver,
    }


def driver_terms(path: Path) -> dict:
    """Driver hours at 10.6M rows from a ``bench_driver.py`` JSON (largest row count, linear)."""
    data = json.loads(Path(path).read_text())
    n = max(int(k) for k, v in data["rows"].items() if v.get("driver_seconds"))
    sec = data["rows"][str(n)]["driver_seconds"]
    scale = TARGET_STAMPS / n
    return {"measured_rows": n, "driver_seconds_measured": sec,
            "driver_peak_rss_mb": data["rows"][str(n)].get("driver_peak_rss_mb"),
            "hours": {k: round(v * scale / 3600.0, 4) for k, v in sec.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="output JSON path")
    ap.add_argument("--hosts", type=int, default=2000, help="mock hosts (default 2000)")
    ap.add_argument("--stamp", type=int, default=64, help="stamp side, pixels (default 64)")
    ap.add_argument("--chunk", type=int, default=256, help="chunk size (default 256)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--quick", action="store_true", help="500 hosts at stamp 32")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the run here")
    ap.add_argument("--driver-json", type=Path, default=None,
                    help="bench_driver.py JSON: measured driver terms for the projection")
    args = ap.parse_args(argv)
    if args.quick:
        args.hosts, args.stamp = 500, 32
    result = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["projection"], indent=1))
    return result


if __name__ == "__main__":
    main()

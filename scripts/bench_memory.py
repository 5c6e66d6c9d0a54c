"""Peak RSS per Dask worker on inject, audit and score versus catalogue size.

Usage::

    python scripts/bench_memory.py --json bench_memory.json [--sizes 10000 50000 200000]
        [--quick] [--workers 2] [--workdir DIR]

For each size N: a synthetic host store of N hosts (stamp 32, chunk 256; one realistic template
chunk of elliptical galaxies + sky noise repeated with fresh ids, written with
``create_store``/``write_chunk``) is injected (``uncalibrated`` mode, unpaired controls, no
nulls: N output rows), audited (train + hosts stores) and scored (a randomly initialised
``resnet_small``; scoring cost does not depend on the weights). Every (stage, size) runs on a
fresh LocalCluster of single-threaded worker processes; each worker's peak RSS (``VmHWM``,
reset with ``clear_refs`` just before the stage and read with ``client.run`` after it) is that
stage's peak; the driver's peak comes from running
each size in its own subprocess. Flat worker peaks from the smallest to the largest size mean
memory per worker is bounded by a few chunks, not by the catalogue.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import local_client, maxrss_mb, reset_peak_rss, write_random_model  # noqa: E402

STAMP = 32
CHUNK = 256


def make_hosts(path: Path, n: int) -> Path:
    """Synthetic host store of ``n`` hosts (see ``gen5dask.store.testing``)."""
    from gen5dask.store.testing import make_synthetic_host_store

    return make_synthetic_host_store(path, n, stamp_size=STAMP, chunk_size=CHUNK)


def _cfg(out: Path):
    from gen5dask.config import config_from_dict

    return config_from_dict({
        "output_dir": str(out), "seed": 2, "stamp_size": STAMP, "chunk_size": CHUNK,
        "cluster": {"progress": False},
        "inject": {"brightness": "uncalibrated", "controls": "unpaired", "n_null": 0},
        "calibrate": {"plot": False},
        "score": {"stores": ["train"], "arms": ["baseline"], "batch_size": 128},
    })


def one_size(n: int, workdir: Path, workers: int) -> dict:
    """Run inject, audit and score on ``n`` hosts; returns peaks and timings."""
    from gen5dask.stages.audit import run_audit
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.score import run_score
    from gen5dask.store import store_geometry

    out = workdir / f"n{n}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = _cfg(out)
    t0 = time.perf_counter()
    make_hosts(cfg.layout.hosts, n)
    rec: dict = {"hosts": n, "build_s": round(time.perf_counter() - t0, 2), "stages": {}}
    for name, func in (("inject", run_inject), ("audit", run_audit), ("score", run_score)):
        if name == "score":
            write_random_model(cfg)
        cluster, client = local_client(workers)
        try:
            base = client.run(reset_peak_rss)
            t0 = time.perf_counter()
            func(cfg, client=client)
            dt = time.perf_counter() - t0
            peaks = client.run(maxrss_mb)
        finally:
            client.close()
            cluster.close()
        rec["stages"][name] = {
            "seconds": round(dt, 2),
            "worker_peak_rss_mb": sorted(round(v, 1) for v in peaks.values()),
            "worker_start_rss_mb": sorted(round(v, 1) for v in base.values()),
        }
        print(json.dumps({"hosts": n, "stage": name, **rec["stages"][name]}), flush=True)
    rec["train_samples"] = int(store_geometry(cfg.layout.train)["n_samples"])
    rec["driver_peak_rss_mb"] = round(maxrss_mb(), 1)
    shutil.rmtree(out, ignore_errors=True)
    return rec


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="output JSON path")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000],
                    help="host counts (default 10000 50000 200000)")
    ap.add_argument("--quick", action="store_true", help="sizes 2000 8000 32000")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_memory_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.one is not None:  # child: one size, JSON on the last stdout line
        rec = one_size(args.one, workdir, args.workers)
        print("RESULT " + json.dumps(rec), flush=True)
        return rec
    sizes = [2000, 8000, 32000] if args.quick else args.sizes
    runs = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--json", os.devnull, "--one", str(n),
               "--workers", str(args.workers), "--workdir", str(workdir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            msg = f"size {n} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            raise RuntimeError(msg)
        runs.append(json.loads(lines[-1][len("RESULT "):]))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {}
    for stage in ("inject", "audit", "score"):
        peaks = [max(r["stages"][stage]["worker_peak_rss_mb"]) for r in runs]
        summary[stage] = {"sizes": sizes, "max_worker_peak_rss_mb": peaks,
                          "ratio_largest_to_smallest": round(peaks[-1] / peaks[0], 3)}
    result = {"stamp_size": STAMP, "chunk_size": CHUNK, "workers": args.workers,
              "cpu_count": os.cpu_count(), "runs": runs, "summary": summary}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    return result


if __name__ == "__main__":
    main()

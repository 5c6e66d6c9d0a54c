"""Ingest throughput (cutouts/s) with 1 and 2 Dask workers on generated 64x64 grz cutouts.

    python scripts/bench_ingest.py --json bench_ingest.json [--n 2000] [--workdir DIR]

Writes ``n`` cutouts (Legacy Surveys format, with INVVAR and MASKBITS) once, then runs the
``ingest`` stage from scratch with a 1-worker and a 2-worker LocalCluster (processes, one thread
each) and reports cutouts/s for each and the speedup. Cluster start-up is excluded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen5dask.config import config_from_dict  # noqa: E402
from gen5dask.stages.ingest import run_ingest  # noqa: E402
from tests.store.fitsfactory import make_cutout_set  # noqa: E402


def _run(root: Path, cdir: Path, cat: Path, workers: int) -> float:
    from distributed import Client, LocalCluster

    cfg = config_from_dict({
        "output_dir": str(root / f"out{workers}"),
        "stamp_size": 64,
        "chunk_size": 256,
        "cluster": {"kind": "synchronous", "progress": False},
        "ingest": {"catalog": str(cat), "cutouts": str(cdir)},
    })
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: None)
        t0 = time.perf_counter()
        run_ingest(cfg, client=client, force=True)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write results here")
    p.add_argument("--n", type=int, default=2000, help="number of cutouts")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cdir, cat = make_cutout_set(root, args.n, size=64)
    t_gen = time.perf_counter() - t0
    t1 = _run(root, cdir, cat, 1)
    t2 = _run(root, cdir, cat, 2)
    res = {
        "n_cutouts": args.n,
        "stamp_size": 64,
        "seconds_generate": round(t_gen, 2),
        "seconds_1worker": round(t1, 3),
        "seconds_2workers": round(t2, 3),
        "cutouts_per_s_1worker": round(args.n / t1, 1),
        "cutouts_per_s_2workers": round(args.n / t2, 1),
        "speedup": round(t1 / t2, 3),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Catalogue-scale driver (e.g. 10^7 cutouts on SLURM): a thin loop over the Python API.

Usage::

    gen5dask job-script configs/slurm.yaml          # review the worker job script first
    python scripts/run_catalogue_scale.py configs/slurm.yaml \
        --stages ingest inject split audit --set output_dir=$SCRATCH/gen5 \
        --set "cluster.adaptive=[4,64]"

Every stage is resumable: if the allocation ends, rerun the same command and finished chunks
are skipped. Timings per stage are appended to ``OUTPUT_DIR/.gen5dask/scale_timings.jsonl``.
No logic lives here; it only sequences stages on one Dask client.
"""

from __future__ import annotations

import argparse
import json
import time

from gen5dask.cluster import dask_client
from gen5dask.config import load_config
from gen5dask.stages import STAGES, get_stage


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config")
    p.add_argument("--stages", nargs="+", default=["ingest", "inject", "split", "audit"],
                   choices=list(STAGES))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    log = cfg.layout.state_dir / "scale_timings.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with dask_client(cfg.cluster) as client:
        for name in args.stages:
            t0 = time.perf_counter()
            out = get_stage(name)(cfg, client=client)
            dt = time.perf_counter() - t0
            n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
            rec = {"stage": name, "seconds": round(dt, 2), "workers": n_workers, "output": str(out)}
            with log.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Loader throughput vs raw Zarr decode, and whether the model step waits on data.

Builds a synthetic store (``--n`` 64x64 grz stamps, fake data) and measures in the same run:

* ``zarr_decode_samples_per_s``: sequential ``read_chunk`` of the image of every chunk;
* ``loader_samples_per_s``: the training :class:`StampStream` (chunk reads + centre mask +
  normalisation + D4 + shuffle buffer) through a DataLoader with ``--workers`` workers;
* ``ratio`` = loader / decode (goal >= 0.9);
* ``model_step_wait_frac``: fraction of a ``resnet_small`` training epoch spent waiting for the
  next batch.

Usage: ``python scripts/bench_loader.py --json bench_loader.json [--n 3072] [--workers 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gen5dask.store import chunk_bounds, create_store, finalize_store, read_chunk, write_chunk
from gen5dask.store.schema import REQUIRED
from gen5dask.store.testing import fake_chunk
from gen5dask.train.augment import TrainTransform
from gen5dask.train.dataset import (
    StampStream,
    make_loader,
    select_rows,
    selection_from_table,
    store_table,
)
from gen5dask.train.models import arch_spec, build_model


def make_store(path: Path, n: int, chunk: int) -> None:
    create_store(path, n_samples=n, stage="bench", config={"bench": n}, seed=0,
                 stamp_size=64, chunk_size=chunk)
    for i, (a, b) in enumerate(chunk_bounds(n, chunk)):
        ids = np.arange(a, b)
        d = fake_chunk(ids, variables=list(REQUIRED), stamp_size=64, seed=0,
                       kind="injection" if i % 2 else "control")
        d["split"] = np.full(b - a, "train")
        write_chunk(path, i, d)
    finalize_store(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--n", type=int, default=3072, help="stamps in the synthetic store")
    p.add_argument("--chunk", type=int, default=256, help="store chunk size")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        make_store(path, args.n, args.chunk)
        nchunks = len(chunk_bounds(args.n, args.chunk))
        read_chunk(path, 0, ["image"])  # warm
        t0 = time.perf_counter()
        for i in range(nchunks):
            read_chunk(path, i, ["sample", "image"])
        decode = args.n / (time.perf_counter() - t0)

        table = store_table(path)
        sel = selection_from_table(path, table, select_rows(table, splits=["train"]))
        tt = TrainTransform(seed=1, rotate_flip=True, mask=True)
        stream = StampStream([sel], batch_size=args.batch, seed=1, shuffle=True,
                             shuffle_buffer=1024, transform=tt)
        loader = make_loader(stream, num_workers=args.workers)
        stream.set_epoch(0)
        for _ in loader:  # warm-up (numba compile, worker start)
            pass
        stream.set_epoch(1)
        t0 = time.perf_counter()
        n = sum(len(b["sample"]) for b in loader)
        loader_rate = n / (time.perf_counter() - t0)

        model = build_model(arch_spec("resnet_small")).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        stream.set_epoch(2)
        wait, t0 = 0.0, time.perf_counter()
        tw = time.perf_counter()
        n_train = 0
        for b in loader:
            wait += time.perf_counter() - tw
            x = b["image"].contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_train += len(b["sample"])
            tw = time.perf_counter()
        total = time.perf_counter() - t0
    out = {
        "n_samples": args.n, "workers": args.workers, "cpu_count": os.cpu_count(),
        "loader_samples_per_s": loader_rate, "zarr_decode_samples_per_s": decode,
        "ratio": loader_rate / decode, "model_step_wait_frac": wait / total,
        "train_samples_per_s": n_train / total,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

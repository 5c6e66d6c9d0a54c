"""Loader throughput vs raw Zarr decode of the same store, per loader-worker count.

Builds a synthetic store (``--n`` 64x64 grz stamps of fake data, chunk ``--chunk``) and
measures in the same run, best of ``--rounds`` interleaved rounds (the machine may be shared;
absolute rates vary, the ratios are what to compare):

* ``raw_decode_samples_per_s``: sequential decode of the ``image`` chunks (array opened once):
  the bytes any loader has to read and decompress;
* ``loader_samples_per_s``: the training :class:`StampStream` exactly as the trainer builds it
  (cached normalisation statistics, centre mask, D4, shuffle depth 1024, channels-last,
  persistent forkserver workers) through :func:`make_loader` with one worker, delivered to
  this process as finished batches (the normalise/D4/channels-last pass included);
  ``ratio`` = loader / raw decode (goal >= 0.9). Prefetching of the next epoch is off
  (``speculate=False``), so every timed epoch starts cold and no work is done outside the
  timer;
* ``loader_samples_per_s_by_workers``: the same for each ``--workers`` count, and the speed-up
  over one worker; ``steady_*``: the rates after each epoch's first batch (without the
  first batch's fill of the shuffle, which the trainer hides by prefetching across epochs);
* ``no_mask_*``: one worker without the centre mask (the arms that do not mask): the
  worker's work is then the decode alone;
* ``stats_once_samples_per_s``: computing the statistics cache (once per store, not per epoch);
  ``loader_no_cache_samples_per_s``: one worker recomputing them every epoch (the old way);
* ``cpu_us_per_sample``: CPU time per sample (all threads; Linux ``/proc``) of the raw decode,
  of the one loader worker and of this process receiving and assembling its batches;
  ``cpu_ratio`` = decode / worker CPU time (what one worker can sustain, insensitive to other
  load) and ``cpu_ratio_worker_plus_receiver`` = decode / (worker + receiver) CPU time (all
  the loader's work per sample);
* ``model_step_wait_frac``: fraction of a ``resnet_small`` training epoch (one worker) spent
  waiting for the next batch.

Usage: ``python scripts/bench_loader.py --json bench_loader.json [--n 8192] [--workers 1 2]``
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

from gen5dask.store import chunk_bounds, create_store, finalize_store, write_chunk
from gen5dask.store.schema import REQUIRED
from gen5dask.store.testing import fake_chunk
from gen5dask.store.zarrstore import quiet_zarr
from gen5dask.train.augment import TrainTransform
from gen5dask.train.dataset import (
    StampStream,
    make_loader,
    select_rows,
    selection_from_table,
    store_table,
)
from gen5dask.train.models import arch_spec, build_model
from gen5dask.train.normstats import store_norm_stats


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


def raw_decode_rate(path: Path, n: int, chunk: int) -> float:
    import zarr

    with quiet_zarr():
        arr = zarr.open_group(str(path), mode="r")["image"]
        arr[0:chunk]  # warm
        t0 = time.perf_counter()
        for a, b in chunk_bounds(n, chunk):
            arr[a:b]
        return n / (time.perf_counter() - t0)


def stream_for(path: Path, *, cached: bool, mask: bool = True) -> StampStream:
    table = store_table(path)
    sel = selection_from_table(path, table, select_rows(table, splits=["train"]))
    if cached:
        sel.stats = store_norm_stats(path, r_outer=16.0)[sel.rows]
    tt = TrainTransform(seed=1, rotate_flip=True, mask=mask)
    return StampStream([sel], batch_size=128, seed=1, shuffle=True, shuffle_buffer=1024,
                       transform=tt)


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_sample(path: Path, n: int, chunk: int, stream, loader, epoch: int) -> dict:
    """CPU microseconds per sample: raw decode, loader worker(s), receiving process."""
    c0 = time.process_time()
    raw_decode_rate(path, n, chunk)
    decode = (time.process_time() - c0) / n * 1e6
    pids = loader.worker_pids()
    w0 = [proc_cpu_s(p) for p in pids]
    c0 = time.process_time()
    stream.set_epoch(epoch)
    k = sum(len(b["sample"]) for b in loader)
    main = (time.process_time() - c0) / k * 1e6
    w1 = [proc_cpu_s(p) for p in pids]
    if not pids or None in w0 or None in w1:
        return {"raw_decode": decode, "receiving_process": main}
    worker = sum(b - a for a, b in zip(w0, w1, strict=True)) / k * 1e6
    return {"raw_decode": decode, "loader_worker": worker, "receiving_process": main}


def epoch_rate(stream: StampStream, loader, epoch: int, steady: list | None = None) -> float:
    """Samples/s over one cold epoch (first-batch fill included); appends to ``steady`` the
    rate after the first batch (the pipeline's sustained rate)."""
    stream.set_epoch(epoch)
    t0 = time.perf_counter()
    n, t1, n1 = 0, None, 0
    for b in loader:
        n += len(b["sample"])
        if t1 is None:
            t1, n1 = time.perf_counter(), n
    t2 = time.perf_counter()
    if steady is not None and t1 is not None and t2 > t1:
        steady.append((n - n1) / (t2 - t1))
    return n / (t2 - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--n", type=int, default=8192, help="stamps in the synthetic store")
    p.add_argument("--chunk", type=int, default=256, help="store chunk size")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    counts = sorted(set([1, *args.workers]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        make_store(path, args.n, args.chunk)
        t0 = time.perf_counter()
        store_norm_stats(path, r_outer=16.0)
        stats_rate = args.n / (time.perf_counter() - t0)
        streams = {w: stream_for(path, cached=True) for w in counts}
        loaders = {w: make_loader(streams[w], num_workers=w, speculate=False) for w in counts}
        slow = stream_for(path, cached=False)
        slow_loader = make_loader(slow, num_workers=1, speculate=False)
        plain = stream_for(path, cached=True, mask=False)
        plain_loader = make_loader(plain, num_workers=1, speculate=False)
        for w in counts:  # warm-up: worker start, numba load
            epoch_rate(streams[w], loaders[w], 0)
        epoch_rate(slow, slow_loader, 0)
        epoch_rate(plain, plain_loader, 0)
        decode, rates = [], {w: [] for w in counts}
        steady = {w: [] for w in counts}
        no_mask, no_mask_steady = [], []
        for r in range(args.rounds):
            decode.append(raw_decode_rate(path, args.n, args.chunk))
            for w in counts:
                rates[w].append(epoch_rate(streams[w], loaders[w], r + 1, steady[w]))
            no_mask.append(epoch_rate(plain, plain_loader, r + 1, no_mask_steady))
        no_cache = epoch_rate(slow, slow_loader, 1)
        slow_loader.close()
        plain_loader.close()
        cpu = [cpu_per_sample(path, args.n, args.chunk, streams[1], loaders[1], 20 + r)
               for r in range(args.rounds)]
        cpu_us = {k: min(c[k] for c in cpu) for k in cpu[0]}

        model = build_model(arch_spec("resnet_small")).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        s1 = streams[1]
        s1.set_epoch(50)
        wait, n_train = 0.0, 0
        t0 = tw = time.perf_counter()
        for b in loaders[1]:
            wait += time.perf_counter() - tw
            x = b["image"].contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_train += len(b["sample"])
            tw = time.perf_counter()
        total = time.perf_counter() - t0
        for ld in loaders.values():
            ld.close()
    best = {w: max(v) for w, v in rates.items()}
    raw = max(decode)
    out = {
        "n_samples": args.n, "chunk": args.chunk, "cpu_count": os.cpu_count(),
        "rounds": args.rounds,
        "raw_decode_samples_per_s": raw,
        "loader_samples_per_s": best[1],
        "ratio": best[1] / raw,
        "loader_samples_per_s_by_workers": {str(w): best[w] for w in counts},
        "speedup_over_one_worker": {str(w): best[w] / best[1] for w in counts},
        "ratio_by_workers": {str(w): best[w] / raw for w in counts},
        "steady_samples_per_s_by_workers": {str(w): max(v) for w, v in steady.items() if v},
        "steady_ratio_by_workers": {str(w): max(v) / raw for w, v in steady.items() if v},
        "no_mask_loader_samples_per_s": max(no_mask),
        "no_mask_ratio": max(no_mask) / raw,
        "no_mask_steady_ratio": max(no_mask_steady) / raw if no_mask_steady else None,
        "stats_once_samples_per_s": stats_rate,
        "loader_no_cache_samples_per_s": no_cache,
        "cpu_us_per_sample": cpu_us,
        "cpu_ratio": (cpu_us["raw_decode"] / cpu_us["loader_worker"]
                      if "loader_worker" in cpu_us else None),
        "cpu_ratio_worker_plus_receiver": (
            cpu_us["raw_decode"] / (cpu_us["loader_worker"] + cpu_us["receiving_process"])
            if "loader_worker" in cpu_us else None),
        "model_step_wait_frac": wait / total,
        "train_samples_per_s": n_train / total,
        "all_rounds": {"raw_decode": decode, **{f"workers_{w}": v for w, v in rates.items()}},
    }
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

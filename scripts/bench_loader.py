"""Loader throughput vs raw Zarr decode of the same store, per loader-worker count.

Builds a synthetic store (``--n`` 64x64 grz stamps of fake data, chunk ``--chunk``) and
measures in the same run, best of ``--rounds`` interleaved rounds (the machine may be shared;
absolute rates vary, the ratios are what to compare):

* ``raw_decode_samples_per_s``: sequential decode of the ``image`` chunks through the zarr
  API (``arr[a:b]``, array opened once, in this process): the issue's reference;
* ``direct_decode_samples_per_s``: the same chunks decoded the way the loader's workers do
  it (:class:`gen5dask.train.chunkdecode.ChunkDecoder`: the chunk file mapped and the array's
  Blosc codec run in this thread, one Blosc thread, into a reused buffer; no zarr thread hops
  or copy) — the stricter reference, since the loader no longer pays zarr's overhead;
  ``ratio_vs_direct_decode`` = loader / it;
* ``loader_samples_per_s``: the training :class:`StampStream` exactly as the trainer builds it
  (cached normalisation statistics, centre mask, D4, shuffle depth 1024, channels-last,
  persistent forkserver workers) through :func:`make_loader` with one worker, delivered to
  this process as finished batches (the normalise/D4/channels-last pass included) to a
  consumer that does nothing but take them; ``ratio`` = loader / raw decode (goal >= 0.9).
  Prefetching of the next epoch is off (``speculate=False``), so every timed epoch starts
  cold and no work is done outside the timer;
* ``loader_samples_per_s_by_workers``, ``speedup_over_one_worker``, ``ratio_by_workers``: the
  same per ``--workers`` count with the default ``assemble="auto"`` (``assembled_by``: the
  consumer assembles with one worker, the workers with two or more);
  ``cpu_us_per_sample_by_workers``: CPU microseconds per sample of all the workers together
  and of the consumer (best round; Linux ``/proc``); ``steady_*``: the rates after each
  epoch's first batch (without the first batch's fill of the shuffle, which the trainer hides
  by prefetching across epochs);
* ``workers_assemble_*``: every worker count with ``assemble="workers"`` (the consumer only
  copies finished batches out): the path whose rate grows with the number of workers;
* ``no_mask_*``: one worker without the centre mask (the arms that do not mask);
* ``stats_once_samples_per_s``: computing the statistics cache (once per store, not per epoch);
  ``loader_no_cache_samples_per_s``: one worker recomputing them every epoch (the old way);
* ``cpu_us_per_sample``: CPU time per sample (all threads) of the raw and the direct decode
  (this process), of the one loader worker and of the consumer; ``cpu_ratio`` = raw decode /
  worker CPU time (what one worker can sustain, less sensitive to other load than the rates)
  and ``cpu_ratio_worker_plus_receiver`` = raw decode / (worker + consumer) CPU time (all the
  loader's work per sample);
* ``model_step_wait_frac``: fraction of ``--train-batches`` ``resnet_small`` training steps
  (one worker, intra-op threads = cores - 1) spent waiting for the next batch;
* ``loadavg_1min_at_end``: the machine's load when the run ended (a loaded machine lowers the
  two-process loader's wall rate more than a one-process decode's).

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
from gen5dask.train.chunkdecode import ChunkDecoder
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


def direct_decode_rate(path: Path, n: int, chunk: int) -> float:
    """Samples/s of the loader's own chunk decode (:class:`ChunkDecoder`: the chunk file read
    and its Blosc codec run in this thread, one Blosc thread, into one reused buffer) over
    the same chunks: the decode alone, without zarr's thread hops and copy."""
    import zarr

    with quiet_zarr():
        dec = ChunkDecoder(zarr.open_group(str(path), mode="r")["image"])
    buf = dec.read(0, min(chunk, n))  # warm
    t0 = time.perf_counter()
    for a, b in chunk_bounds(n, chunk):
        dec.read(a, b, out=buf if b - a == buf.shape[0] else None)
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


def epoch_rate(stream: StampStream, loader, epoch: int, steady: list | None = None,
               cpu: list | None = None) -> float:
    """Samples/s over one cold epoch (first-batch fill included) of a consumer that only takes
    the batches; appends to ``steady`` the rate after the first batch (the pipeline's
    sustained rate) and to ``cpu`` the CPU microseconds per sample of the workers (all of
    them) and of this process."""
    stream.set_epoch(epoch)
    pids = loader.worker_pids()
    w0 = [proc_cpu_s(p) for p in pids]
    c0 = time.process_time()
    t0 = time.perf_counter()
    n, t1, n1 = 0, None, 0
    for b in loader:
        n += len(b["sample"])
        if t1 is None:
            t1, n1 = time.perf_counter(), n
    t2 = time.perf_counter()
    c1 = time.process_time()
    pids = pids or loader.worker_pids()
    w1 = [proc_cpu_s(p) for p in pids]
    if steady is not None and t1 is not None and t2 > t1:
        steady.append((n - n1) / (t2 - t1))
    if cpu is not None and n and len(w0) == len(w1) and None not in w0 + w1:
        cpu.append({"workers": sum(b - a for a, b in zip(w0, w1, strict=True)) / n * 1e6,
                    "consumer": (c1 - c0) / n * 1e6})
    return n / (t2 - t0)


def timed(fn, *a) -> tuple[float, float]:
    """(samples/s, CPU microseconds per sample of this process) of ``fn(*a)``, which returns
    samples/s and processes ``a[1]`` samples."""
    c0 = time.process_time()
    rate = fn(*a)
    return rate, (time.process_time() - c0) / a[1] * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--n", type=int, default=8192, help="stamps in the synthetic store")
    p.add_argument("--chunk", type=int, default=256, help="store chunk size")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    p.add_argument("--train-batches", type=int, default=24,
                   help="resnet_small steps for model_step_wait_frac")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))  # one core for the worker
    counts = sorted(set([1, *args.workers]))
    modes = ("auto", "workers")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        make_store(path, args.n, args.chunk)
        t0 = time.perf_counter()
        store_norm_stats(path, r_outer=16.0)
        stats_rate = args.n / (time.perf_counter() - t0)
        streams = {(m, w): stream_for(path, cached=True) for m in modes for w in counts}
        loaders = {(m, w): make_loader(streams[m, w], num_workers=w, speculate=False,
                                       assemble=m) for m, w in streams}
        slow = stream_for(path, cached=False)
        slow_loader = make_loader(slow, num_workers=1, speculate=False)
        plain = stream_for(path, cached=True, mask=False)
        plain_loader = make_loader(plain, num_workers=1, speculate=False)
        for key in loaders:  # warm-up: worker start, numba load
            epoch_rate(streams[key], loaders[key], 0)
        epoch_rate(slow, slow_loader, 0)
        epoch_rate(plain, plain_loader, 0)
        decode, direct, rates = [], [], {key: [] for key in loaders}
        steady = {key: [] for key in loaders}
        cpu_w = {key: [] for key in loaders}
        no_mask, no_mask_steady = [], []
        for r in range(args.rounds):
            decode.append(timed(raw_decode_rate, path, args.n, args.chunk))
            direct.append(timed(direct_decode_rate, path, args.n, args.chunk))
            for key in loaders:
                rates[key].append(epoch_rate(streams[key], loaders[key], r + 1, steady[key],
                                             cpu_w[key]))
            no_mask.append(epoch_rate(plain, plain_loader, r + 1, no_mask_steady))
        no_cache = epoch_rate(slow, slow_loader, 1)
        slow_loader.close()
        plain_loader.close()

        model = build_model(arch_spec("resnet_small")).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        s1 = streams["auto", 1]
        s1.set_epoch(50)
        wait, n_train = 0.0, 0
        t0 = tw = time.perf_counter()
        for i, b in enumerate(loaders["auto", 1]):
            wait += time.perf_counter() - tw
            x = b["image"].contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_train += len(b["sample"])
            tw = time.perf_counter()
            if i + 1 >= args.train_batches:
                break
        total = time.perf_counter() - t0
        for ld in loaders.values():
            ld.close()
    best = {key: max(v) for key, v in rates.items()}
    raw = max(r for r, _ in decode)
    raw_direct = max(r for r, _ in direct)
    cpu_by = {key: {k: min(c[k] for c in v) for k in v[0]} for key, v in cpu_w.items() if v}
    one = best["auto", 1]
    cpu_us = {"raw_decode": min(c for _, c in decode), "direct_decode": min(c for _, c in direct)}
    if ("auto", 1) in cpu_by:
        cpu_us["loader_worker"] = cpu_by["auto", 1]["workers"]
        cpu_us["receiving_process"] = cpu_by["auto", 1]["consumer"]

    def by_w(mode, fn):
        return {str(w): fn(mode, w) for w in counts}

    out = {
        "n_samples": args.n, "chunk": args.chunk, "cpu_count": os.cpu_count(),
        "rounds": args.rounds,
        "raw_decode_samples_per_s": raw,
        "loader_samples_per_s": one,
        "ratio": one / raw,
        "direct_decode_samples_per_s": raw_direct,
        "ratio_vs_direct_decode": one / raw_direct,
        "assembled_by": by_w("auto", lambda m, w: "workers" if loaders[m, w].in_workers
                             else "consumer"),
        "loader_samples_per_s_by_workers": by_w("auto", lambda m, w: best[m, w]),
        "speedup_over_one_worker": by_w("auto", lambda m, w: best[m, w] / one),
        "ratio_by_workers": by_w("auto", lambda m, w: best[m, w] / raw),
        "cpu_us_per_sample_by_workers": by_w("auto", lambda m, w: cpu_by.get((m, w))),
        "steady_samples_per_s_by_workers": by_w("auto", lambda m, w: max(steady[m, w])),
        "steady_ratio_by_workers": by_w("auto", lambda m, w: max(steady[m, w]) / raw),
        "workers_assemble_samples_per_s_by_workers": by_w("workers", lambda m, w: best[m, w]),
        "workers_assemble_speedup_over_one_worker": by_w(
            "workers", lambda m, w: best[m, w] / best[m, 1]),
        "workers_assemble_cpu_us_per_sample_by_workers": by_w(
            "workers", lambda m, w: cpu_by.get((m, w))),
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
        "loadavg_1min_at_end": os.getloadavg()[0],
        "all_rounds": {"raw_decode": [r for r, _ in decode],
                       "direct_decode": [r for r, _ in direct],
                       **{f"{m}_workers_{w}": v for (m, w), v in rates.items()}},
    }
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU training throughput of the demo model, before and after the loader/trainer rework.

Builds a synthetic store (``--n`` 64x64 grz stamps, chunk 256) and trains ``resnet_small``
(batch 128, AdamW, the demo's centre mask + D4 augmentation) for ``--epochs`` timed epochs
after one warm-up epoch, for each arm, interleaving the arms over ``--rounds`` rounds and
keeping each arm's best round (the machine may be shared: compare ratios, not absolute rates):

* ``before``: the loader and training step of commit ``--before-rev`` (default ``edac7e5``,
  the last commit before the rework), read from git: per-epoch median/MAD statistics, copies
  through the shuffle buffer, loading in the training process (its default ``num_workers: 0``),
  NCHW batches converted to channels-last in the step;
* ``after``: the trainer's defaults now (cached statistics, fused normalise + D4 written
  channels-last, one persistent forkserver worker, torch threads = cores);
* one knob changed at a time from ``after``: ``workers_0``, ``workers_2``, ``threads_minus_1``
  (cores - workers), ``no_channels_last``, ``cpu_bf16`` (bf16 autocast), ``compile``
  (``torch.compile``; its compile time is in the warm-up epoch and reported separately);
  ``threads_1``, ``workers_0_threads_1``, ``compile_threads_1``: one torch thread.

Each arm reports samples/s over the timed epochs and ``data_wait_frac`` (time waiting for the
next batch / epoch time, as in the trainer's log). No GPU is used (``--device cuda`` runs the
``after`` arms on a GPU when one is present).

Usage: ``python scripts/bench_train.py --json bench_train.json [--n 3072] [--arms ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import make_store  # noqa: E402

from gen5dask.train.dataset import (  # noqa: E402
    StampStream,
    make_loader,
    select_rows,
    selection_from_table,
    store_table,
)
from gen5dask.train.models import arch_spec, build_model  # noqa: E402
from gen5dask.train.normstats import store_norm_stats  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AUG = {"rotate_flip": True, "mask": True}
ARMS = ("before", "after", "workers_0", "workers_2", "threads_minus_1", "no_channels_last",
        "cpu_bf16", "compile", "threads_1", "workers_0_threads_1", "compile_threads_1")


def load_before(rev: str) -> types.ModuleType | None:
    """The ``gen5dask.train.dataset`` and ``augment`` modules of ``rev``, from git (or None)."""
    import importlib.util

    mods = {}
    where = Path(tempfile.mkdtemp(prefix="gen5dask_before_"))  # numba caches need real files
    sys.path.insert(0, str(where))  # loader workers (forkserver/spawn) import them by name
    for name in ("augment", "dataset"):
        try:
            src = subprocess.check_output(
                ["git", "-C", str(ROOT), "show", f"{rev}:gen5dask/train/{name}.py"],
                stderr=subprocess.DEVNULL, text=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        modname = f"gen5dask_before_{name}"
        if name == "dataset":
            src = src.replace("from gen5dask.train.augment import network_input",
                              "from gen5dask_before_augment import network_input")
        f = where / f"{modname}.py"
        f.write_text(src)
        spec = importlib.util.spec_from_file_location(modname, f)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    mods["dataset"].before_augment = mods["augment"]
    return mods["dataset"]


def selection(path: Path, stats: bool):
    table = store_table(path)
    sel = selection_from_table(path, table, select_rows(table, splits=["train"]))
    if stats:
        sel.stats = store_norm_stats(path, r_outer=16.0)[sel.rows]
    return sel


class Arm:
    """One configuration: a loader and a model/optimiser, trained epoch by epoch."""

    def __init__(self, name: str, path: Path, before, device: torch.device,
                 threads: int | None = None):
        self.name, self.device = name, device
        cores = os.cpu_count() or 1
        self.workers = {"workers_0": 0, "workers_2": 2, "workers_0_threads_1": 0}.get(name, 1)
        self.threads = max(1, cores - self.workers) if name == "threads_minus_1" else cores
        if name.endswith("threads_1"):
            self.threads = 1
        self.channels_last = name != "no_channels_last"
        self.bf16 = name == "cpu_bf16"
        if threads is not None:
            self.threads = threads
        if name == "before":
            # a revision whose loader caches the statistics runs as its trainer would (one
            # worker); older ones load in the training process (their default)
            cached = "stats" in getattr(before.Selection, "__dataclass_fields__", {})
            self.workers = 1 if cached else 0
            sel = before.Selection(*[getattr(selection(path, False), f) for f in (
                "path", "rows", "sample", "label", "meta", "psfsize_r", "name")])
            if cached:
                sel.stats = selection(path, True).stats
            tt = before.before_augment.TrainTransform(seed=1, **AUG)
            self.stream = before.StampStream([sel], batch_size=128, seed=1, shuffle=True,
                                             shuffle_buffer=1024, transform=tt)
            self.loader = before.make_loader(self.stream, num_workers=self.workers)
        else:
            from gen5dask.train.augment import TrainTransform

            self.stream = StampStream([selection(path, True)], batch_size=128, seed=1,
                                      shuffle=True, shuffle_buffer=1024,
                                      transform=TrainTransform(seed=1, **AUG),
                                      channels_last=self.channels_last)
            self.loader = make_loader(self.stream, num_workers=self.workers, speculate=False,
                                      pin_memory=device.type == "cuda")
        torch.manual_seed(0)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.fmt = fmt
        self.model = build_model(arch_spec("resnet_small")).to(device).to(memory_format=fmt)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.net = torch.compile(self.model) if name.startswith("compile") else self.model
        self.epoch = 0

    def run_epoch(self) -> tuple[float, float, int]:
        torch.set_num_threads(self.threads)
        self.stream.set_epoch(self.epoch)
        self.epoch += 1
        self.net.train()
        wait, n = 0.0, 0
        ac = (torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16
              else contextlib.nullcontext())
        t0 = tw = time.perf_counter()
        for b in self.loader:
            wait += time.perf_counter() - tw
            x = b["image"].to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
            y = b["label"].to(self.device, non_blocking=True)
            with ac:
                logits = self.net(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            n += int(y.shape[0])
            tw = time.perf_counter()
        return time.perf_counter() - t0, wait, n

    def close(self):
        if hasattr(self.loader, "close"):
            self.loader.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--n", type=int, default=3072, help="stamps in the synthetic store")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per arm and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best is kept)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--before-rev", default="edac7e5", help="git revision of 'before'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of every arm (default: per arm, see above)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    before = load_before(args.before_rev) if "before" in args.arms else None
    arms_wanted = [a for a in args.arms if a != "before" or before is not None]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        make_store(path, args.n, 256)
        t0 = time.perf_counter()
        store_norm_stats(path, r_outer=16.0)
        stats_s = time.perf_counter() - t0
        arms = {}
        for name in arms_wanted:
            try:
                arms[name] = Arm(name, path, before, device, args.threads)
                t0 = time.perf_counter()
                arms[name].run_epoch()  # warm-up (numba load, worker start, compile)
                results[name] = {"warmup_s": time.perf_counter() - t0, "rounds": []}
            except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for compile
                results[name] = {"error": repr(exc)}
                arms.pop(name, None)
        for _ in range(args.rounds):
            for name, arm in arms.items():
                secs, wait, n = 0.0, 0.0, 0
                for _e in range(args.epochs):
                    s, w, k = arm.run_epoch()
                    secs, wait, n = secs + s, wait + w, n + k
                results[name]["rounds"].append(
                    {"samples_per_s": n / secs, "data_wait_frac": wait / secs})
        for arm in arms.values():
            arm.close()
    for r in results.values():
        if r.get("rounds"):
            best = max(r["rounds"], key=lambda x: x["samples_per_s"])
            r.update(best)
    out = {"n_samples": args.n, "cpu_count": os.cpu_count(), "device": str(device),
           "torch": torch.__version__, "before_rev": args.before_rev if before else None,
           "stats_cache_once_s": stats_s, "arms": results}
    ref = results.get("after", {}).get("samples_per_s")
    if ref:
        out["vs_after"] = {k: v["samples_per_s"] / ref for k, v in results.items()
                           if "samples_per_s" in v}
    if ref and "samples_per_s" in results.get("before", {}):
        out["after_over_before"] = ref / results["before"]["samples_per_s"]
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

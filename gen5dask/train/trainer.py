"""Train one ablation arm: AdamW + per-batch cosine/one-cycle schedule, checkpoints, selection.

Flow of :func:`train_arm`:

1. build the arm's training and validation selections (:func:`gen5dask.train.dataset.
   arm_selection`) and the metadata standardisation (training-selection mean/std);
2. seed torch/numpy from (seed, arm); resume from the newest checkpoint of
   ``cfg.layout.checkpoint_dir(arm)`` if its fingerprint (train config, arm, seed, input stores)
   matches, else start fresh;
3. each epoch: stream the training set (augmented), step the optimiser, evaluate the val set
   (no augmentation), log a JSON line, write a checkpoint (model, optimiser, schedule, torch and
   numpy RNG states, epoch, best-so-far, history);
4. select the epoch with the best ``train.selection_metric`` (``val_auc``: higher is better;
   ``val_loss``: lower is better), stop early after ``early_stopping_patience`` epochs without
   improvement, and write ``cfg.layout.model(arm)``: a dict of tensors and primitives loadable
   with ``torch.load(path, weights_only=True)``.

On CPU the run is exactly resumable: training 2 epochs straight equals training 1, resuming
and training 1 more (same weights bit for bit), because the data order and augmentation are
keyed by (seed, epoch) and the RNG states are checkpointed. Under DDP (torchrun) only rank 0
writes files; every rank computes the same validation metrics from gathered scores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gen5dask import __version__
from gen5dask.kernels.rng import key
from gen5dask.log import get_logger, progress_bar
from gen5dask.provenance import config_hash, config_yaml, git_sha, utc_now
from gen5dask.store import fingerprint
from gen5dask.train.augment import EvalTransform, TrainTransform
from gen5dask.train.dataset import ArmData, StampStream, arm_selection, make_loader
from gen5dask.train.models import arch_spec, build_model
from gen5dask.train.normstats import store_norm_stats

log = get_logger(__name__)

HIGHER_IS_BETTER = {"val_auc": True, "val_loss": False}
KEEP_CHECKPOINTS = 2


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        msg = "device 'cuda' requested but torch.cuda.is_available() is False"
        raise RuntimeError(msg)
    return torch.device(name)


class LRSchedule:
    """Per-batch learning rate as a pure function of training progress (identical on all ranks).

    Progress ``p = (epoch + batch / n_batches) / epochs`` in [0, 1). ``cosine``: ``lr_min +
    (lr - lr_min) (1 + cos(pi p)) / 2``; ``onecycle``: linear warm-up from ``lr / 25`` to ``lr``
    over ``p < warmup_frac``, then the cosine over the rest.
    """

    def __init__(self, *, lr: float, epochs: int, kind: str = "cosine", warmup_frac: float = 0.1,
                 min_lr_frac: float = 0.01):
        self.lr, self.epochs, self.kind = float(lr), int(epochs), kind
        self.warmup_frac, self.min_lr_frac = float(warmup_frac), float(min_lr_frac)
        self.last_lr = float(lr)

    def lr_at(self, epoch: int, batch: int, n_batches: int) -> float:
        p = (epoch + batch / max(n_batches, 1)) / self.epochs
        lo = self.lr * self.min_lr_frac
        if self.kind == "onecycle" and self.warmup_frac > 0:
            if p < self.warmup_frac:
                start = self.lr / 25.0
                return start + (self.lr - start) * p / self.warmup_frac
            p = (p - self.warmup_frac) / (1.0 - self.warmup_frac)
        return lo + (self.lr - lo) * 0.5 * (1.0 + math.cos(math.pi * min(p, 1.0)))

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, batch: int,
              n_batches: int) -> float:
        self.last_lr = self.lr_at(epoch, batch, n_batches)
        for g in optimizer.param_groups:
            g["lr"] = self.last_lr
        return self.last_lr

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def _is_dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank_world() -> tuple[int, int]:
    if _is_dist():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not _is_dist():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _gather(arr: np.ndarray) -> np.ndarray:
    if not _is_dist():
        return arr
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, arr)
    return np.concatenate(parts)


def _autocast(device: torch.device, precision: str, *, cpu_bf16: bool = False):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``."""
    return torch.channels_last if channels_last else torch.contiguous_format


def predict_logits(model: torch.nn.Module, loader, device: torch.device, *,
                   precision: str = "fp32", cpu_bf16: bool = False,
                   channels_last: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eval-mode logits of every batch of ``loader``: ``(sample ids, labels, logits)``."""
    model.eval()
    ids, labels, logits = [], [], []
    fmt = memory_format(channels_last)
    with torch.no_grad():
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            x = x.contiguous(memory_format=fmt)
            meta = batch["meta"].to(device, non_blocking=True)
            with _autocast(device, precision, cpu_bf16=cpu_bf16):
                out = model(x, meta if meta.shape[1] else None)
            logits.append(out.float().cpu().numpy())
            labels.append(batch["label"].numpy())
            ids.append(batch["sample"].numpy())
    if not logits:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(ids), np.concatenate(labels), np.concatenate(logits)


def binary_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Mean BCE-with-logits loss and ROC AUC (NaN when one class is absent)."""
    if labels.size == 0:
        return {"loss": math.nan, "auc": math.nan}
    lt = torch.from_numpy(logits.astype(np.float64))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        lt, torch.from_numpy(labels.astype(np.float64))).item()
    auc = math.nan
    if 0 < labels.sum() < labels.size:
        auc = float(roc_auc_score(labels, logits))
    return {"loss": float(loss), "auc": auc}


def meta_standardisation(data: ArmData, n_meta: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (std 0 -> 1) of the metadata columns over a training selection."""
    if n_meta == 0:
        return np.zeros(0, np.float32), np.ones(0, np.float32)
    meta = np.concatenate([s.meta for s in data.selections]).astype(np.float64)
    if not np.isfinite(meta).all():
        bad = np.flatnonzero(~np.isfinite(meta).all(axis=0)).tolist()
        msg = f"train.metadata_columns: non-finite values in column index(es) {bad}"
        raise ValueError(msg)
    mean = meta.mean(axis=0)
    std = meta.std(axis=0)
    std[~(std > 0)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def store_parents(cfg, arm) -> list[dict]:
    """Fingerprints of what an arm trains on: ``train.zarr``, ``hardneg.zarr`` and, for an arm
    with ``init_from``, the parent arm's model file (its training fingerprint)."""
    out = [fingerprint(cfg.layout.train)]
    if arm.hard_negatives and Path(cfg.layout.hardneg).exists():
        out.append(fingerprint(cfg.layout.hardneg))
    if arm.init_from is not None:
        out.append(parent_model_fingerprint(cfg, arm))
    return out


def parent_model_fingerprint(cfg, arm) -> dict:
    """``{"path", "config_hash", "n_samples"}`` of the model file ``arm.init_from`` names
    (``config_hash``: its training fingerprint; ``n_samples``: its selected epoch)."""
    path = cfg.layout.model(arm.init_from)
    if not Path(path).exists():
        msg = (f"arm {arm.name!r} starts from arm {arm.init_from!r} (init_from), but its model "
               f"file {path} does not exist; train {arm.init_from!r} first")
        raise FileNotFoundError(msg)
    payload = load_model_file(path)
    return {"path": str(path), "config_hash": str(payload["fingerprint"]),
            "n_samples": int(payload["epoch"])}


def initial_weights(cfg, arm, spec: dict) -> dict | None:
    """State dict that starts ``arm`` (the ``init_from`` arm's selected weights), or ``None``.

    Raises ``ValueError`` when the parent's architecture differs from ``spec``."""
    if arm.init_from is None:
        return None
    path = cfg.layout.model(arm.init_from)
    payload = load_model_file(path)
    if {"crop": 0, **payload["arch"]} != {"crop": 0, **spec}:
        msg = (f"arm {arm.name!r}: init_from model {path} has architecture {payload['arch']}, "
               f"this arm builds {spec}; both arms must use the same train.model, bands, "
               "train.metadata_columns and train.crop")
        raise ValueError(msg)
    return payload["state_dict"]


def arm_fingerprint(cfg, arm, parents: list[dict]) -> str:
    """Hash deciding whether a checkpoint/model belongs to this training run."""
    return config_hash({
        "train": cfg.train.model_dump(mode="json", exclude={
            "progress", "num_workers", "arms", "loader_start_method", "norm_stats_cache"}),
        "arm": arm.model_dump(mode="json"), "seed": cfg.seed, "stamp_size": cfg.stamp_size,
        "bands": list(cfg.bands),
        "parents": [{k: p.get(k) for k in ("path", "config_hash", "n_samples")} for p in parents],
    })


def norm_stats_dir(cfg) -> Path:
    """Cache directory of the per-store normalisation statistics (``models/norm_stats``)."""
    return cfg.layout.models_dir / "norm_stats"


def attach_norm_stats(selections, *, r_outer: float, cache_dir: Path | None,
                      threads: int | None = None, lens_light: str = "none") -> None:
    """Give every selection its rows' cached normalisation statistics (``sel.stats``; with a
    lens-light model, followed by the rows' lens-light profiles).

    Under DDP rank 0 computes and caches a missing store's statistics while the others wait,
    then every rank reads the file.
    """
    threads = threads or torch.get_num_threads()
    paths = sorted({s.path for s in selections})
    if cache_dir is not None and _is_dist():
        if torch.distributed.get_rank() == 0:
            for p in paths:
                store_norm_stats(p, r_outer=r_outer, cache_dir=cache_dir, threads=threads,
                                 lens_light=lens_light)
        torch.distributed.barrier()
    stats = {p: store_norm_stats(p, r_outer=r_outer, cache_dir=cache_dir, threads=threads,
                                 lens_light=lens_light)
             for p in paths}
    for s in selections:
        s.stats = np.ascontiguousarray(stats[s.path][s.rows])


def _checkpoints(ckdir: Path) -> list[Path]:
    return sorted(ckdir.glob("epoch_*.pt"))


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["val_loss"] for h in history], "s-", label="val")
    a1.set_xlabel("epoch")
    a1.set_ylabel("BCE loss")
    a1.legend()
    a2.plot(ep, [h["val_auc"] for h in history], "o-")
    a2.set_xlabel("epoch")
    a2.set_ylabel("val AUC")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def curves_path(cfg, arm_name: str) -> Path:
    """PNG of the training curves of an arm (next to its log)."""
    return cfg.layout.models_dir / f"{arm_name}_curves.png"


def _numpy_state_to(state) -> dict:
    """numpy's global RNG state as tensors and primitives (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from(d: dict):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"],
            d["cached"])


def train_arm(
    cfg,
    arm,
    *,
    provenance: dict | None = None,
    stop_after: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Train one arm and write its model file (rank 0).

    Parameters
    ----------
    cfg : gen5dask.config.Config
        Run configuration (``train`` section, seed, layout).
    arm : gen5dask.config.ablation.ArmConfig
        The arm (brightness, hard_negatives, center_mask).
    provenance : dict, optional
        Extra primitive-only provenance stored in the model file (e.g. gate overrides).
    stop_after : int, optional
        Run at most this many epochs in this call, then return (checkpointed; a later call
        resumes). Used to test and to split long runs.
    progress : bool, optional
        Progress bar (default ``cfg.train.progress``).

    Returns
    -------
    dict
        ``status`` ("done" or "paused"), ``model`` path, ``best_epoch``, ``selection_metric``,
        ``selection_value``, ``history`` (list of log rows), ``counts``.
    """
    tc = cfg.train
    rank, world = _rank_world()
    device = resolve_device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if device.type == "cpu":
        torch.set_num_threads(tc.torch_threads or os.cpu_count() or 1)
    fmt = memory_format(tc.channels_last)
    show = (tc.progress if progress is None else progress) and rank == 0
    layout = cfg.layout
    parents = store_parents(cfg, arm)
    fp = arm_fingerprint(cfg, arm, parents)

    tables: dict = {}
    common = {
        "train_path": layout.train, "hardneg_path": layout.hardneg,
        "inject_mode": arm.brightness, "hard_negatives": arm.hard_negatives,
        "metadata_columns": tc.metadata_columns, "seed": cfg.seed, "tables": tables,
        "replicates": arm.replicates,
    }
    tr = arm_selection(split="train", hard_negative_fraction=tc.hard_negative_fraction,
                       positive_fraction=tc.positive_fraction, **common)
    va = arm_selection(split="val", **common)
    for what, d in (("train", tr), ("val", va)):
        n_pos = d.counts["injection"]
        n_neg = d.counts["control"] + d.counts["hard_negative"]
        if n_pos == 0 or n_neg == 0:
            msg = (
                f"arm {arm.name!r}: the {what} split has {n_pos} positives (injections, "
                f"inject_mode {arm.brightness!r}) and {n_neg} negatives in {layout.train}; "
                "run the inject and split stages first"
            )
            raise ValueError(msg)
    n_meta = len(tc.metadata_columns)
    meta_mean, meta_std = meta_standardisation(tr, n_meta)
    attach_norm_stats([*tr.selections, *va.selections], r_outer=tc.norm_r_outer,
                      cache_dir=norm_stats_dir(cfg) if tc.norm_stats_cache else None,
                      lens_light=tc.lens_light)

    aug = TrainTransform(
        seed=cfg.seed, rotate_flip=tc.rotate_flip, mask=arm.center_mask,
        mask_prob=tc.center_mask_prob, mask_law=tc.center_mask_law,
        mask_rmin=tc.center_mask_rmin, mask_rmax=tc.center_mask_rmax,
        mask_annulus=tc.center_mask_annulus, pixscale=cfg.pixscale,
        r_outer=tc.norm_r_outer, clip=tc.norm_clip, lens_light=tc.lens_light,
    )
    evt = EvalTransform(r_outer=tc.norm_r_outer, clip=tc.norm_clip, lens_light=tc.lens_light)
    train_stream = StampStream(tr.selections, batch_size=tc.batch_size, seed=cfg.seed,
                               shuffle=True, shuffle_buffer=tc.shuffle_buffer, transform=aug,
                               meta_mean=meta_mean, meta_std=meta_std,
                               channels_last=tc.channels_last)
    val_stream = StampStream(va.selections, batch_size=tc.eval_batch_size, seed=cfg.seed,
                             shuffle=False, transform=evt, meta_mean=meta_mean,
                             meta_std=meta_std, channels_last=tc.channels_last)
    pin = device.type == "cuda"
    train_loader = make_loader(train_stream, num_workers=tc.num_workers, pin_memory=pin,
                               start_method=tc.loader_start_method)
    val_loader = make_loader(val_stream, num_workers=tc.num_workers, pin_memory=pin,
                             start_method=tc.loader_start_method)
    try:
        return _train_loop(cfg, arm, tc, device, rank, world, show, layout, parents, fp, tr, va,
                           n_meta, meta_mean, meta_std, spec_args=(tc.model, len(cfg.bands)),
                           streams=(train_stream, val_stream),
                           loaders=(train_loader, val_loader), fmt=fmt,
                           provenance=provenance, stop_after=stop_after)
    finally:
        train_loader.close()
        val_loader.close()


def _train_loop(cfg, arm, tc, device, rank, world, show, layout, parents, fp, tr, va, n_meta,
                meta_mean, meta_std, *, spec_args, streams, loaders, fmt, provenance,
                stop_after):
    train_stream, val_stream = streams
    train_loader, val_loader = loaders

    init_seed = key(cfg.seed, f"train_init:{arm.name}", 0) & 0x7FFFFFFFFFFFFFFF
    torch.manual_seed(init_seed)
    np.random.seed(init_seed % (2**32))  # noqa: NPY002 - global state for third-party code
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    spec = arch_spec(spec_args[0], in_channels=spec_args[1], n_meta=n_meta, crop=tc.crop)
    model = build_model(spec)
    start = initial_weights(cfg, arm, spec)
    if start is not None:
        model.load_state_dict(start)
        if rank == 0:
            log.info(f"[train {arm.name}] starting from the weights of arm {arm.init_from!r}")
    model = model.to(device).to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    n_epochs = arm.epochs if arm.epochs is not None else tc.epochs
    sched = LRSchedule(lr=tc.lr, epochs=n_epochs, kind=tc.schedule,
                       warmup_frac=tc.warmup_frac, min_lr_frac=tc.min_lr_frac)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tc.precision == "fp16")
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if tc.compile:
        net = torch.compile(net)

    metric = tc.selection_metric
    higher = HIGHER_IS_BETTER[metric]
    ckdir = layout.checkpoint_dir(arm.name)
    start_epoch, history, best, bad_epochs = 0, [], None, 0
    cks = _checkpoints(ckdir)
    if cks:
        ck = torch.load(cks[-1], map_location="cpu", weights_only=True)
        if ck.get("fingerprint") == fp:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["schedule"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            torch.set_rng_state(ck["torch_rng"])
            np.random.set_state(_numpy_state_from(ck["numpy_rng"]))  # noqa: NPY002
            start_epoch, history = int(ck["epoch"]), list(ck["history"])
            best, bad_epochs = ck["best"], int(ck["bad_epochs"])
            if rank == 0:
                log.info(f"[train {arm.name}] resuming after epoch {start_epoch} from {cks[-1]}")
        elif rank == 0:
            log.warning(f"[train {arm.name}] checkpoints in {ckdir} belong to another "
                        "configuration; starting fresh")
            for p in cks:
                p.unlink()
    log_path = layout.train_log(arm.name)
    if rank == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    stopped = best is not None and tc.early_stopping_patience is not None and (
        bad_epochs >= tc.early_stopping_patience)
    epochs_run = 0
    epoch = start_epoch
    while epoch < n_epochs and not stopped:
        if stop_after is not None and epochs_run >= stop_after:
            return {"status": "paused", "epoch": epoch, "history": history,
                    "counts": {"train": tr.counts, "val": va.counts}}
        t0 = time.perf_counter()
        net.train()
        train_stream.set_epoch(epoch)
        nb = train_stream.num_batches()
        wait = 0.0
        loss_sum, n_seen = 0.0, 0
        bar = progress_bar(total=nb, desc=f"{arm.name} epoch {epoch + 1}/{n_epochs}",
                           unit="batch", disable=not show, leave=False)
        t_w = time.perf_counter()
        for j, batch in enumerate(train_loader):
            wait += time.perf_counter() - t_w
            sched.apply(opt, epoch, j, nb)
            x = batch["image"].to(device, non_blocking=True)
            x = x.contiguous(memory_format=fmt)  # no copy: the loader writes this layout
            y = batch["label"].to(device, non_blocking=True)
            meta = batch["meta"].to(device, non_blocking=True)
            with _autocast(device, tc.precision, cpu_bf16=tc.cpu_bf16):
                logits = net(x, meta if n_meta else None)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            n = int(y.shape[0])
            loss_sum += float(loss.detach()) * n
            n_seen += n
            el = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(n_seen, 1):.4f}",
                            samples_s=f"{n_seen / max(el, 1e-9):.0f}")
            t_w = time.perf_counter()
        bar.close()
        loss_sum, n_all = _all_sum([loss_sum, float(n_seen)], device)
        train_seconds = time.perf_counter() - t0
        val_stream.set_epoch(epoch)
        _, vlab, vlog = predict_logits(model, val_loader, device, precision=tc.precision,
                                       cpu_bf16=tc.cpu_bf16, channels_last=tc.channels_last)
        vlab, vlog = _gather(vlab), _gather(vlog)
        vm = binary_metrics(vlab, vlog)
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1, "train_loss": loss_sum / max(n_all, 1.0),
            "val_loss": vm["loss"], "val_auc": vm["auc"], "lr": sched.last_lr,
            "samples_per_s": n_all / max(train_seconds, 1e-9), "seconds": seconds,
            "data_wait_frac": wait / max(train_seconds, 1e-9), "n_train": int(n_all),
            "n_val": int(vlab.size),
        }
        history.append(row)
        value = row[metric]
        improved = best is None or (
            math.isfinite(value)
            and (not math.isfinite(best["value"])
                 or (value > best["value"] if higher else value < best["value"])))
        if improved:
            best = {"value": value, "epoch": epoch + 1,
                    "state_dict": {k: v.detach().cpu().clone()
                                   for k, v in model.state_dict().items()}}
            bad_epochs = 0
        else:
            bad_epochs += 1
        epoch += 1
        epochs_run += 1
        stopped = tc.early_stopping_patience is not None and bad_epochs >= (
            tc.early_stopping_patience)
        if rank == 0:
            with log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            log.info(f"[train {arm.name}] epoch {epoch}: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                if k != "epoch"))
            _atomic_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(), "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": _numpy_state_to(np.random.get_state()),  # noqa: NPY002
                "epoch": epoch, "history": history, "best": best, "bad_epochs": bad_epochs,
                "fingerprint": fp, "arm": arm.name,
            }, ckdir / f"epoch_{epoch:03d}.pt")
            for old in _checkpoints(ckdir)[:-KEEP_CHECKPOINTS]:
                old.unlink()
            _plot_curves(history, curves_path(cfg, arm.name), f"{arm.name} ({tc.model})")
        if _is_dist():
            torch.distributed.barrier()

    out = layout.model(arm.name)
    result = {"status": "done", "model": str(out), "best_epoch": best["epoch"],
              "selection_metric": metric, "selection_value": best["value"],
              "history": history, "counts": {"train": tr.counts, "val": va.counts},
              "early_stopped": bool(stopped and epoch < n_epochs)}
    if rank == 0:
        payload = {
            "state_dict": best["state_dict"],
            "arch": spec,
            "arm": arm.model_dump(mode="json"),
            "selection_metric": metric,
            "selection_value": float(best["value"]),
            "epoch": int(best["epoch"]),
            "epochs_run": int(epoch),
            "early_stopped": result["early_stopped"],
            "norm": {"function": "gen5dask.train.augment.network_input",
                     "r_outer": float(tc.norm_r_outer), "clip": float(tc.norm_clip),
                     "lens_light": tc.lens_light},
            "metadata_columns": list(tc.metadata_columns),
            "meta_mean": [float(v) for v in meta_mean],
            "meta_std": [float(v) for v in meta_std],
            "bands": list(cfg.bands),
            "stamp_size": int(cfg.stamp_size),
            "config": config_yaml(cfg),
            "fingerprint": fp,
            "history": history,
            "provenance": {
                "gen5dask_version": __version__, "git_sha": git_sha(), "created": utc_now(),
                "seed": int(cfg.seed), "parents": json.dumps(parents, default=str),
                "counts": json.dumps(result["counts"]), "world_size": int(world),
                "device": str(device), "metadata_columns": list(tc.metadata_columns),
                **(provenance or {}),
            },
        }
        _atomic_save(payload, out)
    return result


def load_model_file(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a model file with ``weights_only=True`` (tensors and primitives only)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


RECIPE_KEYS = ("epochs", "batch_size", "lr", "schedule", "torch_threads", "rotate_flip")
"""``train`` settings :func:`model_summary` reports (from the model file's config)."""


def model_summary(path: str | Path) -> dict:
    """Primitive description of how a model file was trained (for the report).

    Keys: ``arm`` (the arm's recipe: brightness, hard_negatives, center_mask, init_from,
    replicates),
    ``model`` (architecture name), ``n_parameters``, ``stamp_size`` and ``crop`` (pixels; crop 0:
    whole stamp), ``lens_light`` (the lens-light model subtracted from the input), ``bands``,
    ``epoch`` (selected), ``epochs_run``, ``early_stopped``, ``selection_metric``,
    ``selection_value``, ``counts`` (training/validation selection sizes per kind) and ``train``
    (the :data:`RECIPE_KEYS` settings)."""
    import yaml

    info = load_model_file(path)
    cfg = yaml.safe_load(info.get("config") or "") or {}
    train = cfg.get("train") or {}
    counts = json.loads(info.get("provenance", {}).get("counts") or "{}")
    return {
        "arm": dict(info["arm"]), "model": str(info["arch"]["name"]),
        "n_parameters": int(sum(v.numel() for k, v in info["state_dict"].items()
                                if "running_" not in k and "num_batches" not in k)),
        "stamp_size": int(info["stamp_size"]), "crop": int(info["arch"].get("crop", 0)),
        "lens_light": str(info.get("norm", {}).get("lens_light", "none")),
        "bands": list(info["bands"]), "epoch": int(info["epoch"]),
        "epochs_run": int(info["epochs_run"]),
        "early_stopped": bool(info["early_stopped"]),
        "selection_metric": str(info["selection_metric"]),
        "selection_value": float(info["selection_value"]),
        "counts": counts, "train": {k: train.get(k) for k in RECIPE_KEYS}
        | ({"epochs": info["arm"]["epochs"]} if info["arm"].get("epochs") else {}),
    }


__all__ = [
    "HIGHER_IS_BETTER",
    "LRSchedule",
    "arm_fingerprint",
    "attach_norm_stats",
    "binary_metrics",
    "curves_path",
    "load_model_file",
    "memory_format",
    "meta_standardisation",
    "model_summary",
    "initial_weights",
    "norm_stats_dir",
    "parent_model_fingerprint",
    "predict_logits",
    "resolve_device",
    "store_parents",
    "train_arm",
]

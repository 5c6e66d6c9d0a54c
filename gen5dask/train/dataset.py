"""Streaming training data from contract stores: whole chunks, sharded, shuffled, exactly once.

A :class:`StampStream` holds store *paths* and per-sample index lists (plus the few per-sample
scalars the loss needs: label, metadata, psfsize_r) — never pixel arrays. Each DataLoader worker
opens the stores itself (lazily, through :func:`gen5dask.store.read_samples`), reads whole store
chunks (single-sample random reads are ~50x slower), drops the unselected rows, transforms the
chunk in one vectorised call (augmentation + the shared normalisation), and feeds an in-memory
shuffle buffer from which it emits batches.

Epoch plan (:func:`plan_epoch`), a pure function of (seed, epoch, world size, worker count):

1. the work units — (source, store chunk) pairs with at least one selected row — are permuted
   with a generator keyed by (seed, epoch);
2. units are dealt to ranks, then within a rank to loader workers, greedily to the least-loaded
   one, so every unit (hence every selected sample) goes to exactly one (rank, worker): each
   sample is seen exactly once per epoch whatever the number of workers or ranks (gate 7);
3. batch sizes are fixed in advance; under DDP every rank gets the same number of batches (a
   rank with fewer samples makes smaller batches), so collective ops never hang and the
   learning-rate schedule is identical on every rank.

Row selection uses :func:`select_rows` on the ``read_table`` columns (kind, split, inject_mode,
eval_only); :func:`arm_selection` builds an arm's training or validation set with deterministic,
keyed subsampling for class balance and the hard-negative fraction (DESIGN §5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gen5dask.kernels._jit import jit
from gen5dask.kernels.rng import generator, keys_for, stage_id, uniform
from gen5dask.store import read_samples, read_table, store_geometry
from gen5dask.store.zarrstore import chunk_bounds

SELECT_STAGE = "train_select"
SHUFFLE_STAGE = "loader_shuffle"
BUFFER_STAGE = "loader_buffer"


@dataclass
class Selection:
    """Selected rows of one store and their per-sample scalars.

    Attributes
    ----------
    path : str
        Store path.
    rows : numpy.ndarray
        int64 ``(n,)`` sorted store positions (not sample ids).
    sample : numpy.ndarray
        int64 ``(n,)`` sample ids of those rows (checked against the chunk on read).
    label : numpy.ndarray
        float32 ``(n,)`` 1 lens / 0 non-lens.
    meta : numpy.ndarray
        float32 ``(n, m)`` raw metadata columns (standardised later by the model's mean/std).
    psfsize_r : numpy.ndarray
        float32 ``(n,)`` r-band PSF FWHM, arcsec (for the psf-law centre mask).
    name : str
        Short description for logs (e.g. ``train.zarr:injection``).
    """

    path: str
    rows: np.ndarray
    sample: np.ndarray
    label: np.ndarray
    meta: np.ndarray
    psfsize_r: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return int(self.rows.size)

    def subset(self, keep: np.ndarray) -> Selection:
        """The rows where boolean ``keep`` is true."""
        return Selection(self.path, self.rows[keep], self.sample[keep], self.label[keep],
                         self.meta[keep], self.psfsize_r[keep], self.name)


def store_table(path: str | Path) -> pd.DataFrame:
    """Per-sample table of a store (``read_table``) with optional selection columns filled.

    Missing ``inject_mode`` -> ``""``, ``eval_only`` -> 0, ``tier``/``subtype`` -> ``""``.
    """
    df = read_table(path)
    for col, default in (("inject_mode", ""), ("eval_only", 0), ("tier", ""), ("subtype", "")):
        if col not in df.columns:
            df[col] = default
    return df


def select_rows(
    table: pd.DataFrame,
    *,
    kinds: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    inject_modes: Sequence[str] | None = None,
    eval_only: int | None = None,
) -> np.ndarray:
    """Boolean row mask: kind in ``kinds``, split in ``splits``, inject_mode in ``inject_modes``,
    eval_only == ``eval_only`` (``None`` = no condition on that column)."""
    m = np.ones(len(table), dtype=bool)
    if kinds is not None:
        m &= table["kind"].isin(list(kinds)).to_numpy()
    if splits is not None:
        m &= table["split"].isin(list(splits)).to_numpy()
    if inject_modes is not None:
        if "inject_mode" not in table.columns:
            return np.zeros(len(table), dtype=bool)
        m &= table["inject_mode"].isin(list(inject_modes)).to_numpy()
    if eval_only is not None:
        if "eval_only" in table.columns:
            m &= table["eval_only"].to_numpy().astype(int) == int(eval_only)
        elif int(eval_only) != 0:
            return np.zeros(len(table), dtype=bool)
    return m


def selection_from_table(
    path: str | Path,
    table: pd.DataFrame,
    mask: np.ndarray,
    *,
    metadata_columns: Sequence[str] = (),
    name: str = "",
) -> Selection:
    """A :class:`Selection` of the rows of ``table`` (a store's ``read_table``) where ``mask``."""
    missing = [c for c in metadata_columns if c not in table.columns]
    if missing:
        msg = (
            f"train.metadata_columns {missing} not in store {path} "
            f"(available: {sorted(table.columns)})"
        )
        raise ValueError(msg)
    rows = np.flatnonzero(np.asarray(mask, dtype=bool)).astype(np.int64)
    sub = table.iloc[rows]
    meta = (
        sub[list(metadata_columns)].to_numpy(np.float32)
        if metadata_columns
        else np.zeros((rows.size, 0), np.float32)
    )
    psf = (
        sub["psfsize_r"].to_numpy(np.float32)
        if "psfsize_r" in sub.columns
        else np.full(rows.size, np.nan, np.float32)
    )
    return Selection(
        path=str(path),
        rows=rows,
        sample=sub["sample"].to_numpy(np.int64),
        label=sub["label"].to_numpy().astype(np.float32),
        meta=meta,
        psfsize_r=psf,
        name=name,
    )


@jit
def _uniform_of(keys, out):
    for i in range(keys.shape[0]):
        out[i] = uniform(keys[i], 0)


def keyed_subsample(ids: np.ndarray, n_keep: int, *, seed: int, what: str) -> np.ndarray:
    """Boolean mask keeping the ``n_keep`` ids of smallest keyed uniform draw.

    Deterministic in (seed, ``what``, sample id): independent of row order and chunking, and a
    larger ``n_keep`` keeps a superset.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n_keep = int(max(0, min(n_keep, ids.size)))
    u = np.empty(ids.size)
    _uniform_of(keys_for(int(seed), stage_id(f"{SELECT_STAGE}:{what}"), ids, 0, 0), u)
    keep = np.zeros(ids.size, dtype=bool)
    keep[np.argsort(u, kind="stable")[:n_keep]] = True
    return keep


@dataclass
class ArmData:
    """Selections of one arm and split, with counts for the logs and provenance."""

    selections: list[Selection]
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(len(s) for s in self.selections)


def arm_selection(
    *,
    train_path: str | Path,
    hardneg_path: str | Path | None,
    split: str,
    inject_mode: str,
    hard_negatives: bool,
    hard_negative_fraction: float = 0.15,
    positive_fraction: float | None = None,
    metadata_columns: Sequence[str] = (),
    seed: int = 0,
    tables: dict[str, pd.DataFrame] | None = None,
) -> ArmData:
    """Training or validation samples of one ablation arm.

    Positives: ``train.zarr`` injections of ``split`` with ``inject_mode``. Negatives: controls of
    ``split``, plus (if ``hard_negatives``) ``hardneg.zarr`` hard negatives of ``split`` with
    ``eval_only == 0`` (the evaluation slice is never used for training or selection).

    Proportions (training split only; validation keeps its natural mix so the selection metric
    is not distorted): excess hard negatives are subsampled to ``hard_negative_fraction`` of
    the negatives; with ``positive_fraction`` the majority class is subsampled to reach it.
    Every subsample is :func:`keyed_subsample` (deterministic per sample id).
    """
    tables = tables if tables is not None else {}
    tpath = str(train_path)
    if tpath not in tables:
        tables[tpath] = store_table(tpath)
    ttab = tables[tpath]
    pos = selection_from_table(
        tpath, ttab,
        select_rows(ttab, kinds=["injection"], splits=[split], inject_modes=[inject_mode]),
        metadata_columns=metadata_columns, name=f"train:injection:{inject_mode}",
    )
    ctl = selection_from_table(
        tpath, ttab, select_rows(ttab, kinds=["control"], splits=[split]),
        metadata_columns=metadata_columns, name="train:control",
    )
    hn = None
    counts: dict[str, Any] = {"split": split, "injection_available": len(pos),
                              "control_available": len(ctl)}
    if hard_negatives:
        if hardneg_path is None or not Path(hardneg_path).exists():
            msg = f"arm uses hard negatives but the hard-negative store {hardneg_path} is missing"
            raise FileNotFoundError(msg)
        hpath = str(hardneg_path)
        if hpath not in tables:
            tables[hpath] = store_table(hpath)
        htab = tables[hpath]
        hn = selection_from_table(
            hpath, htab,
            select_rows(htab, kinds=["hard_negative"], splits=[split], eval_only=0),
            metadata_columns=metadata_columns, name="hardneg:hard_negative",
        )
        counts["hard_negative_available"] = len(hn)
        if split == "train" and len(hn):
            f = float(hard_negative_fraction)
            n_max = math.floor(f / (1.0 - f) * len(ctl)) if f < 1.0 else len(hn)
            if len(hn) > n_max:
                hn = hn.subset(keyed_subsample(hn.sample, n_max, seed=seed, what="hardneg"))
    if split == "train" and positive_fraction is not None:
        n_neg = len(ctl) + (len(hn) if hn is not None else 0)
        f = float(positive_fraction)
        want_pos = math.floor(f / (1.0 - f) * n_neg)
        if len(pos) > want_pos:
            pos = pos.subset(keyed_subsample(pos.sample, want_pos, seed=seed, what="positive"))
        else:
            want_neg = math.floor((1.0 - f) / f * len(pos))
            if n_neg > want_neg:
                frac = want_neg / max(n_neg, 1)
                ctl = ctl.subset(keyed_subsample(
                    ctl.sample, round(frac * len(ctl)), seed=seed, what="control"))
                if hn is not None:
                    hn = hn.subset(keyed_subsample(
                        hn.sample, round(frac * len(hn)), seed=seed, what="hardneg_balance"))
    sels = [s for s in (pos, ctl, hn) if s is not None and len(s)]
    n_hn = len(hn) if hn is not None else 0
    counts.update({
        "injection": len(pos), "control": len(ctl), "hard_negative": n_hn,
        "hard_negative_fraction_of_negatives": (n_hn / (n_hn + len(ctl))) if n_hn + len(ctl)
        else 0.0,
    })
    return ArmData(sels, counts)


# --------------------------------------------------------------------------------------------
# epoch plan


@dataclass(frozen=True)
class Unit:
    """One read: rows ``lo:hi`` of selection ``source`` all lie in store chunk [start, stop)."""

    source: int
    start: int
    stop: int
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


def make_units(selections: Sequence[Selection], chunk_sizes: Sequence[int],
               n_samples: Sequence[int]) -> list[Unit]:
    """Work units: per selection and store chunk with selected rows, one :class:`Unit`."""
    units = []
    for s, (sel, cs, n) in enumerate(zip(selections, chunk_sizes, n_samples, strict=True)):
        if not len(sel):
            continue
        if np.any(np.diff(sel.rows) <= 0):
            msg = f"selection {sel.name or s} of {sel.path}: rows must be strictly increasing"
            raise ValueError(msg)
        chunk = sel.rows // cs
        cuts = np.flatnonzero(np.diff(chunk)) + 1
        los = np.concatenate([[0], cuts])
        his = np.concatenate([cuts, [sel.rows.size]])
        bounds = chunk_bounds(n, cs)
        for lo, hi in zip(los, his, strict=True):
            a, b = bounds[int(chunk[lo])]
            units.append(Unit(s, a, b, int(lo), int(hi)))
    return units


def _natural_sizes(n: int, bs: int) -> list[int]:
    if n <= 0:
        return []
    k = math.ceil(n / bs)
    return [bs] * (k - 1) + [n - bs * (k - 1)]


def _even_sizes(n: int, k: int) -> list[int]:
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


def plan_epoch(
    unit_sizes: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    world_size: int = 1,
    num_workers: int = 1,
    batch_size: int = 128,
) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
    """Assign units to (rank, worker) and fix every batch size for one epoch.

    Parameters
    ----------
    unit_sizes : sequence of int
        Selected samples in each unit.
    seed, epoch : int
        Key of the unit permutation (``shuffle``).
    shuffle : bool
        Permute the units (training); otherwise keep their order (evaluation).
    world_size, num_workers : int
        Distributed ranks and loader workers per rank (0 workers counts as 1).
    batch_size : int
        Largest batch.

    Returns
    -------
    dict
        ``(rank, worker) -> (unit indices in reading order, batch sizes)``. Every unit appears
        exactly once; the batch sizes of a worker sum to its samples; every rank has the same
        number of batches.

    Raises
    ------
    ValueError
        If some rank cannot fill the common number of batches (fewer samples than batches).
    """
    nw = max(1, int(num_workers))
    ws = max(1, int(world_size))
    sizes = np.asarray(unit_sizes, dtype=np.int64)
    order = np.arange(sizes.size)
    if shuffle and sizes.size:
        order = generator(int(seed), SHUFFLE_STAGE, 0, 0, int(epoch)).permutation(sizes.size)
    rank_units: list[list[int]] = [[] for _ in range(ws)]
    rank_load = np.zeros(ws, dtype=np.int64)
    for u in order:
        r = int(np.argmin(rank_load))
        rank_units[r].append(int(u))
        rank_load[r] += sizes[u]
    plan: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    per_rank_batches = []
    worker_units: dict[tuple[int, int], list[int]] = {}
    worker_n: dict[tuple[int, int], int] = {}
    worker_k: dict[tuple[int, int], int] = {}
    for r in range(ws):
        load = np.zeros(nw, dtype=np.int64)
        lists: list[list[int]] = [[] for _ in range(nw)]
        for u in rank_units[r]:
            w = int(np.argmin(load))
            lists[w].append(u)
            load[w] += sizes[u]
        total = 0
        for w in range(nw):
            worker_units[(r, w)] = lists[w]
            worker_n[(r, w)] = int(load[w])
            worker_k[(r, w)] = math.ceil(int(load[w]) / batch_size)
            total += worker_k[(r, w)]
        per_rank_batches.append(total)
    k_all = max(per_rank_batches) if per_rank_batches else 0
    for r in range(ws):
        missing = k_all - per_rank_batches[r]
        while missing > 0:
            cands = [w for w in range(nw) if worker_n[(r, w)] > worker_k[(r, w)]]
            if not cands:
                msg = (
                    f"plan_epoch: rank {r} has {int(rank_load[r])} samples, too few for the "
                    f"{k_all} batches every rank must run; use fewer ranks or workers"
                )
                raise ValueError(msg)
            w = max(cands, key=lambda w: worker_n[(r, w)] / max(worker_k[(r, w)], 1))
            worker_k[(r, w)] += 1
            missing -= 1
        for w in range(nw):
            n, k = worker_n[(r, w)], worker_k[(r, w)]
            natural = _natural_sizes(n, batch_size)
            sizes_w = natural if len(natural) == k else _even_sizes(n, k)
            plan[(r, w)] = (worker_units[(r, w)], sizes_w)
    return plan


# --------------------------------------------------------------------------------------------
# the stream


class _Pool:
    """Shuffle buffer of transformed samples (fixed-capacity arrays, O(batch) removal)."""

    def __init__(self, rng: np.random.Generator | None):
        self.rng = rng
        self.cols: dict[str, np.ndarray] = {}
        self.n = 0

    def add(self, cols: dict[str, np.ndarray]) -> None:
        m = len(next(iter(cols.values())))
        if not self.cols:
            self.cols = {k: v.copy() for k, v in cols.items()}
            self.n = m
            return
        cap = len(next(iter(self.cols.values())))
        if self.n + m > cap:
            new_cap = max(self.n + m, 2 * cap)
            for k, v in self.cols.items():
                grown = np.empty((new_cap,) + v.shape[1:], dtype=v.dtype)
                grown[: self.n] = v[: self.n]
                self.cols[k] = grown
        for k, v in cols.items():
            self.cols[k][self.n : self.n + m] = v
        self.n += m

    def take(self, k: int) -> dict[str, np.ndarray]:
        n = self.n
        if self.rng is None:  # FIFO
            out = {c: v[:k].copy() for c, v in self.cols.items()}
            for v in self.cols.values():
                v[: n - k] = v[k:n]
        else:
            idx = self.rng.choice(n, size=k, replace=False)
            out = {c: v[idx] for c, v in self.cols.items()}
            keep = np.ones(n, dtype=bool)
            keep[idx] = False
            holes = idx[idx < n - k]
            movers = np.flatnonzero(keep[n - k :]) + (n - k)
            for v in self.cols.values():
                v[holes] = v[movers]
        self.n = n - k
        return out


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StampStream(IterableDataset):
    """Iterable of ready batches streamed from stores (use with ``DataLoader(batch_size=None)``).

    Parameters
    ----------
    selections : list of Selection
        Rows to stream (paths + index lists).
    batch_size : int
        Largest batch.
    seed : int
        Run seed (unit permutation, shuffle buffer, augmentation keys).
    shuffle : bool
        Training order (permuted units + shuffle buffer); False streams in store order.
    shuffle_buffer : int
        Samples held in the buffer before emitting (per worker).
    transform : callable, optional
        ``transform(images float32 (n,nb,H,W), ids int64 (n,), psfsize_r (n,), epoch) ->
        float32 (n,nb,H,W)``, applied per chunk (augmentation + normalisation). Must be
        picklable for worker processes. Default: :func:`gen5dask.train.augment.network_input`.
    meta_mean, meta_std : numpy.ndarray, optional
        Standardisation of the metadata columns (``(m,)``).
    rank, world_size : int, optional
        Distributed position (default: from ``torch.distributed`` when initialised).

    Yields
    ------
    dict
        ``image`` float32 tensor (n, nb, H, W), ``label`` float32 (n,), ``sample`` int64 (n,),
        ``meta`` float32 (n, m).
    """

    def __init__(
        self,
        selections: Sequence[Selection],
        *,
        batch_size: int,
        seed: int,
        shuffle: bool,
        shuffle_buffer: int = 1024,
        transform: Callable[..., np.ndarray] | None = None,
        meta_mean: np.ndarray | None = None,
        meta_std: np.ndarray | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.selections = list(selections)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer) if shuffle else 0
        self.transform = transform
        m = self.selections[0].meta.shape[1] if self.selections else 0
        self.meta_mean = np.zeros(m, np.float32) if meta_mean is None else np.asarray(
            meta_mean, np.float32)
        self.meta_std = np.ones(m, np.float32) if meta_std is None else np.asarray(
            meta_std, np.float32)
        self._rank = rank
        self._world = world_size
        self.epoch = 0
        self.num_workers = 0  # set by make_loader so the plan knows the worker count
        geoms = [store_geometry(s.path) for s in self.selections]
        self.units = make_units(self.selections, [g["chunk_size"] for g in geoms],
                                [g["n_samples"] for g in geoms])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (permutation and augmentation keys); call before iterating."""
        self.epoch = int(epoch)

    @property
    def rank_world(self) -> tuple[int, int]:
        r, w = _dist_rank_world()
        return (self._rank if self._rank is not None else r,
                self._world if self._world is not None else w)

    def plan(self) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
        """This epoch's :func:`plan_epoch` for every (rank, worker)."""
        _, world = self.rank_world
        return plan_epoch(
            [u.size for u in self.units], seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
            world_size=world, num_workers=self.num_workers, batch_size=self.batch_size,
        )

    def num_batches(self) -> int:
        """Batches this rank yields this epoch (the same on every rank)."""
        rank, _ = self.rank_world
        return sum(len(v[1]) for (r, _w), v in self.plan().items() if r == rank)

    def num_samples(self) -> int:
        """Selected samples over all ranks."""
        return sum(len(s) for s in self.selections)

    def _read_unit(self, u: Unit) -> dict[str, np.ndarray]:
        sel = self.selections[u.source]
        data = read_samples(sel.path, slice(u.start, u.stop), ["sample", "image"])
        local = sel.rows[u.lo : u.hi] - u.start
        ids = data["sample"][local]
        if not np.array_equal(ids, sel.sample[u.lo : u.hi]):
            msg = (
                f"{sel.path}: sample ids of rows {u.start}+{local[:3].tolist()}... changed since "
                "the selection was built (store rewritten during training?)"
            )
            raise RuntimeError(msg)
        images = np.ascontiguousarray(data["image"][local], dtype=np.float32)
        psf = sel.psfsize_r[u.lo : u.hi]
        if self.transform is None:
            from gen5dask.train.augment import network_input

            x = network_input(images)
        else:
            x = self.transform(images, ids, psf, self.epoch)
        meta = (sel.meta[u.lo : u.hi] - self.meta_mean) / self.meta_std
        return {"image": x, "label": sel.label[u.lo : u.hi], "sample": ids,
                "meta": meta.astype(np.float32)}

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rank, _ = self.rank_world
        units, sizes = self.plan().get((rank, worker), ([], []))
        rng = None
        if self.shuffle:
            rng = generator(self.seed, BUFFER_STAGE, rank * 65536 + worker, 0, self.epoch)
        pool = _Pool(rng)
        j = 0
        for ui in units:
            pool.add(self._read_unit(self.units[ui]))
            while j < len(sizes) and pool.n >= self.shuffle_buffer + sizes[j]:
                yield _to_torch(pool.take(sizes[j]))
                j += 1
        while j < len(sizes):
            yield _to_torch(pool.take(sizes[j]))
            j += 1


def _to_torch(cols: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cols.items()}


def make_loader(stream: StampStream, *, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int = 4) -> DataLoader:
    """A DataLoader over a :class:`StampStream` (batches come ready from the stream)."""
    stream.num_workers = int(num_workers)
    kw: dict[str, Any] = {}
    if num_workers > 0:
        kw["prefetch_factor"] = prefetch_factor
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      **kw)


__all__ = [
    "ArmData",
    "Selection",
    "StampStream",
    "Unit",
    "arm_selection",
    "keyed_subsample",
    "make_loader",
    "make_units",
    "plan_epoch",
    "select_rows",
    "selection_from_table",
    "store_table",
]

"""Streaming training data from contract stores: whole chunks, sharded, shuffled, exactly once.

A :class:`StampStream` holds store *paths* and per-sample index lists (plus the few per-sample
scalars the loss needs: label, metadata, psfsize_r, and optionally the cached normalisation
statistics of :mod:`gen5dask.train.normstats`) — never pixel arrays. Each loader worker opens
the stores itself (once per process), decodes whole store chunks (single-sample random reads
are ~50x slower), centre-masks the selected rows in place, and keeps (chunk, row) entries in a
shuffle buffer; each batch is then normalised, D4-rotated and written channels-last in one pass
(:func:`gen5dask.kernels.normalize.apply_norm_into`). Per sample that is the decode plus about
one pass over the pixels; the statistics (the old per-epoch median/MAD, ~110 us per stamp) are
computed once per store.

Workers (:func:`make_loader`) are persistent processes started by ``forkserver`` (or
``spawn``), never forked from the training process (fork after zarr's event-loop thread or a
Dask client has started is a known deadlock). They write each batch into an output slot in
shared memory allocated once by the training process, which copies it out (into pinned
memory for a GPU) and hands the slot back: no per-batch shared-memory allocation or pickling
of pixels.

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

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gen5dask.kernels._jit import jit
from gen5dask.kernels.normalize import apply_norm_into
from gen5dask.kernels.rng import generator, keys_for, stage_id, uniform
from gen5dask.store import read_table, store_geometry
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
    stats : numpy.ndarray, optional
        float32 ``(n, nband, 2)`` cached normalisation statistics of the rows
        (:func:`gen5dask.train.normstats.store_norm_stats`); None: computed per chunk read.
    """

    path: str
    rows: np.ndarray
    sample: np.ndarray
    label: np.ndarray
    meta: np.ndarray
    psfsize_r: np.ndarray
    name: str = ""
    stats: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def subset(self, keep: np.ndarray) -> Selection:
        """The rows where boolean ``keep`` is true."""
        return Selection(self.path, self.rows[keep], self.sample[keep], self.label[keep],
                         self.meta[keep], self.psfsize_r[keep], self.name,
                         None if self.stats is None else self.stats[keep])


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


class _Chunk:
    """One decoded store chunk in the shuffle buffer: the whole chunk's pixels (masked in place)
    and, per selected row, its position in the chunk, statistics, D4 code and scalars."""

    __slots__ = ("codes", "ids", "images", "label", "live", "local", "meta", "stats")

    def __init__(self, images, local, stats, codes, ids, label, meta):
        self.images, self.local, self.stats, self.codes = images, local, stats, codes
        self.ids, self.label, self.meta = ids, label, meta
        self.live = int(local.size)


class _Pool:
    """Shuffle buffer of decoded chunks; a batch is normalised straight into its output.

    Entries are (chunk, row) index pairs, so adding a chunk copies no pixels; :meth:`take`
    draws ``k`` entries (uniformly without replacement, or FIFO without ``rng``), removes them
    in O(k) and writes their network input with one
    :func:`gen5dask.kernels.normalize.apply_norm_into` call per chunk involved. A chunk is
    dropped once all its rows are taken. Memory stays bounded: when the chunks held have more
    than ``2 x`` (pending entries + one chunk) rows, the remaining rows of the chunks that are
    less than half used are copied into one compact chunk (each row is copied O(1) times on
    average).
    """

    def __init__(self, rng: np.random.Generator | None, *, clip: float, channels_last: bool):
        self.rng = rng
        self.clip = clip
        self.channels_last = channels_last
        self.chunks: list[_Chunk | None] = []
        self.cid = np.zeros(0, np.int64)
        self.pos = np.zeros(0, np.int64)
        self.n = 0
        self.held = 0  # rows of the chunk arrays held (selected or not)
        self.max_chunk = 0

    def _compact(self) -> None:
        live = [c for c, ch in enumerate(self.chunks) if ch is not None]
        sparse = [c for c in live
                  if 2 * self.chunks[c].live < self.chunks[c].images.shape[0]]
        if len(sparse) < 2:
            return
        ent = np.flatnonzero(np.isin(self.cid[: self.n], sparse))
        cids, poss = self.cid[ent], self.pos[ent]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "images", "stats", "codes", "ids", "label", "meta")}
        for c in sparse:
            ch = self.chunks[c]
            p = poss[cids == c]
            parts["images"].append(ch.images[ch.local[p]])
            for k in ("stats", "codes", "ids", "label", "meta"):
                parts[k].append(getattr(ch, k)[p])
            self.held -= ch.images.shape[0]
            self.chunks[c] = None
        order = np.concatenate([np.flatnonzero(cids == c) for c in sparse])
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        m = cat["images"].shape[0]
        new = _Chunk(cat["images"], np.arange(m, dtype=np.int64), cat["stats"], cat["codes"],
                     cat["ids"], cat["label"], cat["meta"])
        self.chunks.append(new)
        self.held += m
        self.cid[ent[order]] = len(self.chunks) - 1
        self.pos[ent[order]] = np.arange(m)

    def add(self, ch: _Chunk) -> None:
        self.held += ch.images.shape[0]
        self.max_chunk = max(self.max_chunk, ch.images.shape[0])
        m = ch.live
        c = len(self.chunks)
        self.chunks.append(ch)
        if self.n + m > self.cid.size:
            cap = max(self.n + m, 2 * self.cid.size)
            for name in ("cid", "pos"):
                grown = np.empty(cap, np.int64)
                grown[: self.n] = getattr(self, name)[: self.n]
                setattr(self, name, grown)
        self.cid[self.n : self.n + m] = c
        self.pos[self.n : self.n + m] = np.arange(m)
        self.n += m
        if self.held > 2 * (self.n + self.max_chunk):
            self._compact()

    def take(self, k: int, out: np.ndarray, n_meta: int) -> dict[str, np.ndarray]:
        n = self.n
        if self.rng is None:  # FIFO
            cids, poss = self.cid[:k].copy(), self.pos[:k].copy()
            self.cid[: n - k] = self.cid[k:n]
            self.pos[: n - k] = self.pos[k:n]
        else:
            idx = self.rng.choice(n, size=k, replace=False)
            cids, poss = self.cid[idx], self.pos[idx]
            keep = np.ones(n, dtype=bool)
            keep[idx] = False
            holes = idx[idx < n - k]
            movers = np.flatnonzero(keep[n - k :]) + (n - k)
            self.cid[holes] = self.cid[movers]
            self.pos[holes] = self.pos[movers]
        self.n = n - k
        label = np.empty(k, np.float32)
        ids = np.empty(k, np.int64)
        meta = np.empty((k, n_meta), np.float32)
        for c in np.unique(cids):
            m = np.flatnonzero(cids == c)
            ch = self.chunks[int(c)]
            p = poss[m]
            apply_norm_into(ch.images, ch.local[p], ch.stats[p], out, m, codes=ch.codes[p],
                            clip=self.clip, channels_last=self.channels_last)
            label[m] = ch.label[p]
            ids[m] = ch.ids[p]
            meta[m] = ch.meta[p]
            ch.live -= m.size
            if ch.live == 0:
                self.held -= ch.images.shape[0]
                self.chunks[int(c)] = None
        return {"label": label, "sample": ids, "meta": meta}


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _Legacy:
    """Adapter for a plain ``transform(images, ids, psfsize_r, epoch) -> array`` callable: the
    stream applies it to the selected rows and emits its output unchanged (location 0, scale
    1, no clip)."""

    clip = None

    def __init__(self, fn: Callable[..., np.ndarray]):
        self.fn = fn

    def prepare(self, images, local, ids, psfsize_r, stats, epoch):
        x = np.ascontiguousarray(self.fn(images[local], ids, psfsize_r, epoch), np.float32)
        images[local] = x
        st = np.zeros((local.size, images.shape[1], 2), np.float32)
        st[..., 1] = 1.0
        return st, np.zeros(local.size, np.int64)


#: slots per loader worker beyond the prefetch depth (see :func:`make_loader`)
_SLOT_SLACK = 2
#: seconds a worker waits for a free output slot before reporting a stalled consumer
SLOT_TIMEOUT_S = 600.0


class StampStream(IterableDataset):
    """Iterable of ready batches streamed from stores (use through :func:`make_loader`).

    Per store chunk a worker decodes the pixels once (store arrays opened once per worker),
    applies the transform's ``prepare`` to the chunk in place (centre mask, normalisation
    statistics — cached per sample when the selections carry ``stats`` — and D4 codes) and
    puts (chunk, row) entries in the shuffle buffer; each batch is then normalised, D4-rotated
    and laid out (channels-last by default) in one pass into its output. Per sample that is
    the decode plus about one pass over the pixels.

    Parameters
    ----------
    selections : list of Selection
        Rows to stream (paths + index lists, optionally cached normalisation statistics).
    batch_size : int
        Largest batch.
    seed : int
        Run seed (unit permutation, shuffle buffer, augmentation keys).
    shuffle : bool
        Training order (permuted units + shuffle buffer); False streams in store order.
    shuffle_buffer : int
        Samples held in the buffer before emitting (per worker).
    transform : object, optional
        :class:`gen5dask.train.augment.TrainTransform` or ``EvalTransform`` (anything with
        ``prepare`` and ``clip``), or a plain ``transform(images, ids, psfsize_r, epoch)``
        callable. Must be picklable for worker processes. Default: ``EvalTransform()`` (the
        shared normalisation, :func:`gen5dask.train.augment.network_input`).
    meta_mean, meta_std : numpy.ndarray, optional
        Standardisation of the metadata columns (``(m,)``).
    rank, world_size : int, optional
        Distributed position (default: from ``torch.distributed`` when initialised; fixed
        when :func:`make_loader` is called, since spawned workers do not share the group).
    channels_last : bool
        Emit images in channels-last memory layout (an NCHW tensor with NHWC strides, what the
        model consumes; no conversion copy in the training process).

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
        transform: Any = None,
        meta_mean: np.ndarray | None = None,
        meta_std: np.ndarray | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        channels_last: bool = True,
    ):
        super().__init__()
        self.selections = list(selections)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer) if shuffle else 0
        self.transform = transform
        self.channels_last = bool(channels_last)
        m = self.selections[0].meta.shape[1] if self.selections else 0
        self.meta_mean = np.zeros(m, np.float32) if meta_mean is None else np.asarray(
            meta_mean, np.float32)
        self.meta_std = np.ones(m, np.float32) if meta_std is None else np.asarray(
            meta_std, np.float32)
        self._rank = rank
        self._world = world_size
        self._epoch = torch.zeros(1, dtype=torch.int64)  # shared with persistent workers
        self.num_workers = 0  # set by make_loader so the plan knows the worker count
        self._slots: torch.Tensor | None = None
        self._released: Any = None
        self._arrays: dict[str, Any] = {}
        geoms = [store_geometry(s.path) for s in self.selections]
        self.geometry = (len(geoms[0]["bands"]), geoms[0]["stamp_size"]) if geoms else (0, 0)
        for s, g in zip(self.selections, geoms, strict=True):
            if (len(g["bands"]), g["stamp_size"]) != self.geometry:
                msg = (f"selection {s.name or s.path}: {len(g['bands'])} bands x "
                       f"{g['stamp_size']} px, others {self.geometry[0]} x {self.geometry[1]}")
                raise ValueError(msg)
        self.units = make_units(self.selections, [g["chunk_size"] for g in geoms],
                                [g["n_samples"] for g in geoms])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = {}  # open store handles stay in their process
        return state

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (permutation and augmentation keys); call before iterating.

        Seen by persistent loader workers too (the epoch lives in shared memory)."""
        self._epoch[0] = int(epoch)

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

    def _transform(self):
        t = self.transform
        if t is None:
            from gen5dask.train.augment import EvalTransform

            return EvalTransform()
        return t if hasattr(t, "prepare") else _Legacy(t)

    def _array(self, path: str, name: str):
        k = f"{path}::{name}"
        if k not in self._arrays:
            import zarr

            from gen5dask.store.zarrstore import quiet_zarr

            with quiet_zarr():
                self._arrays[k] = zarr.open_group(str(path), mode="r")[name]
        return self._arrays[k]

    def _check_ids(self, units: Sequence[int]) -> None:
        """Once per epoch and worker: the selected rows still hold the selected sample ids."""
        for src in sorted({self.units[u].source for u in units}):
            sel = self.selections[src]
            ids = np.asarray(self._array(sel.path, "sample")[:])
            if ids.shape[0] <= int(sel.rows[-1]) or not np.array_equal(ids[sel.rows], sel.sample):
                bad = np.flatnonzero(ids[sel.rows[sel.rows < ids.shape[0]]]
                                     != sel.sample[sel.rows < ids.shape[0]])[:3]
                msg = (
                    f"{sel.path}: sample ids of rows {sel.rows[bad].tolist()}... changed since "
                    "the selection was built (store rewritten during training?)"
                )
                raise RuntimeError(msg)

    def _read_unit(self, u: Unit, transform) -> _Chunk:
        sel = self.selections[u.source]
        images = np.asarray(self._array(sel.path, "image")[u.start : u.stop])
        if images.dtype != np.float32 or not images.flags.c_contiguous or not (
                images.flags.writeable):
            images = np.ascontiguousarray(images, dtype=np.float32).copy()
        local = sel.rows[u.lo : u.hi] - u.start
        ids = sel.sample[u.lo : u.hi]
        stats = None if sel.stats is None else sel.stats[u.lo : u.hi]
        st, codes = transform.prepare(images, local, ids, sel.psfsize_r[u.lo : u.hi], stats,
                                      self.epoch)
        meta = ((sel.meta[u.lo : u.hi] - self.meta_mean) / self.meta_std).astype(np.float32)
        return _Chunk(images, local, st, codes, ids, sel.label[u.lo : u.hi], meta)

    def _out_shape(self, k: int) -> tuple[int, ...]:
        nb, size = self.geometry
        return (k, size, size, nb) if self.channels_last else (k, nb, size, size)

    def _image_tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 3, 1, 2) if self.channels_last else t

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rank, _ = self.rank_world
        units, sizes = self.plan().get((rank, worker), ([], []))
        if units:
            self._check_ids(units)
        rng = None
        if self.shuffle:
            rng = generator(self.seed, BUFFER_STAGE, rank * 65536 + worker, 0, self.epoch)
        transform = self._transform()
        pool = _Pool(rng, clip=transform.clip, channels_last=self.channels_last)
        use_slots = info is not None and self._slots is not None
        fill = self._released_count(worker) if use_slots else 0
        n_meta = self.meta_mean.shape[0]

        def emit(k: int) -> dict:
            nonlocal fill
            if not use_slots:
                t = torch.empty(self._out_shape(k), dtype=torch.float32)
                cols = pool.take(k, t.numpy(), n_meta)
                return {"image": self._image_tensor(t),
                        **{c: torch.from_numpy(v) for c, v in cols.items()}}
            slot = self._wait_slot(worker, fill)
            cols = pool.take(k, self._slots[worker, slot, :k].numpy(), n_meta)
            fill += 1
            return {"slot": slot, "worker": worker, "n": k, **cols}

        j = 0
        for ui in units:
            pool.add(self._read_unit(self.units[ui], transform))
            while j < len(sizes) and pool.n >= self.shuffle_buffer + sizes[j]:
                yield emit(sizes[j])
                j += 1
        while j < len(sizes):
            yield emit(sizes[j])
            j += 1

    # -- output slots shared with the training process (loader workers only)

    def _released_count(self, worker: int) -> int:
        with self._released.get_lock():
            return int(self._released[worker])

    def _wait_slot(self, worker: int, fill: int) -> int:
        n_slots = self._slots.shape[1]
        t0 = time.monotonic()
        while fill - self._released_count(worker) >= n_slots:
            if time.monotonic() - t0 > SLOT_TIMEOUT_S:
                msg = (f"loader worker {worker}: no output slot released for {SLOT_TIMEOUT_S:.0f}"
                       " s (the training process stopped consuming batches?)")
                raise RuntimeError(msg)
            time.sleep(0.0005)
        return fill % n_slots


def _identity(batch):
    return batch


class StreamLoader:
    """Iterable over a :class:`StampStream` through a DataLoader (see :func:`make_loader`).

    Yields the stream's batches as tensors. With workers, a worker writes each batch's images
    into one of its output slots (shared memory allocated here, so no per-batch allocation,
    page faults or pickling of pixels); this process copies the batch out — into pinned memory
    with ``pin_memory`` — and hands the slot back before yielding.
    """

    def __init__(self, stream: StampStream, dataloader: DataLoader | None, *,
                 pin_memory: bool = False):
        self.stream = stream
        self.dataloader = dataloader
        self.pin_memory = bool(pin_memory)
        self._slot_stream = dataloader.dataset if dataloader is not None else None

    def __len__(self) -> int:
        return self.stream.num_batches()

    def __iter__(self):
        if self.dataloader is None:
            for b in self.stream:
                if self.pin_memory:
                    b = {k: v.pin_memory() for k, v in b.items()}
                yield b
            return
        ws = self._slot_stream
        for msg in self.dataloader:
            w, slot, n = msg["worker"], msg["slot"], msg["n"]
            src = ws._slots[w, slot, :n]
            raw = torch.empty(src.shape, dtype=src.dtype, pin_memory=self.pin_memory)
            np.copyto(raw.numpy(), src.numpy())  # one memcpy, no intra-op thread wake-up
            img = ws._image_tensor(raw)
            with ws._released.get_lock():
                ws._released[w] += 1
            out = {"image": img}
            for c in ("label", "sample", "meta"):
                t = torch.from_numpy(msg[c])
                out[c] = t.pin_memory() if self.pin_memory else t
            yield out

    def close(self) -> None:
        """Stop the persistent worker processes (also happens when the loader is collected)."""
        dl, self.dataloader = self.dataloader, None
        it = getattr(dl, "_iterator", None) if dl is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


START_METHODS = ("forkserver", "spawn")


def loader_context(start_method: str = "forkserver"):
    """multiprocessing context of the loader workers.

    ``forkserver`` (default where available): workers fork from a clean server process that
    has already imported torch, zarr and the kernels (fast start, nothing inherited from the
    training process — fork after zarr's event-loop thread or a Dask client has started is a
    known deadlock); ``spawn``: fresh interpreters (slower start, always available).
    """
    import multiprocessing as mp

    if start_method not in START_METHODS:
        msg = f"loader start method must be one of {START_METHODS}, got {start_method!r}"
        raise ValueError(msg)
    if start_method == "forkserver" and "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["gen5dask.train.dataset", "gen5dask.train.augment"])
        return ctx
    return mp.get_context("spawn")


def make_loader(stream: StampStream, *, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int = 4, start_method: str = "forkserver") -> StreamLoader:
    """A loader over a :class:`StampStream` (batches come ready from the stream).

    Parameters
    ----------
    stream : StampStream
        The stream; its ``num_workers`` is set so that its plan and ``num_batches`` match.
    num_workers : int
        Worker processes (0: load in this process). Workers are persistent (started once,
        reused every epoch) and started with ``start_method`` (see :func:`loader_context`).
    pin_memory : bool
        Copy batches into pinned (page-locked) memory for asynchronous host-to-GPU copies.
    prefetch_factor : int
        Batches each worker prepares ahead.
    """
    stream.num_workers = int(num_workers)
    if num_workers <= 0:
        return StreamLoader(stream, None, pin_memory=pin_memory)
    rank, world = stream.rank_world
    stream._rank, stream._world = rank, world  # spawned workers have no process group
    stream._epoch.share_memory_()
    ctx = loader_context(start_method)
    ws = copy.copy(stream)
    n_slots = int(prefetch_factor) + _SLOT_SLACK
    ws._slots = torch.empty((int(num_workers), n_slots, *ws._out_shape(stream.batch_size)),
                            dtype=torch.float32).share_memory_()
    ws._released = ctx.Array("q", int(num_workers))
    dl = DataLoader(ws, batch_size=None, num_workers=int(num_workers), collate_fn=_identity,
                    multiprocessing_context=ctx, persistent_workers=True,
                    prefetch_factor=int(prefetch_factor))
    return StreamLoader(stream, dl, pin_memory=pin_memory)


__all__ = [
    "START_METHODS",
    "ArmData",
    "Selection",
    "StampStream",
    "StreamLoader",
    "Unit",
    "arm_selection",
    "keyed_subsample",
    "loader_context",
    "make_loader",
    "make_units",
    "plan_epoch",
    "select_rows",
    "selection_from_table",
    "store_table",
]

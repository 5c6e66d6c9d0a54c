"""Streaming training data from contract stores: whole chunks, sharded, shuffled, exactly once.

A :class:`StampStream` holds store *paths* and per-sample index lists (plus the few per-sample
scalars the loss needs: label, metadata, psfsize_r, and optionally the cached normalisation
statistics of :mod:`gen5dask.train.normstats`) — never pixel arrays.

Work is split between the loader workers and the training process
(:class:`StreamLoader`, :mod:`gen5dask.train.workerpool`):

* a worker decodes one store chunk (a *work unit*; single-sample random reads are ~50x
  slower; :class:`gen5dask.train.chunkdecode.ChunkDecoder`, the store's codec run in the
  worker's thread) — straight into a shared ring of prepared rows when every row is selected, else
  keeping the selected rows — and centre-masks them in place; per sample that is the decode
  and, for partial chunks, one copy. It writes the rows' normalisation statistics (the cached
  ones wherever the mask cannot change them) and D4 codes next to them;
* the training process shuffles the rank's sample sequence — each sample gets the key
  ``arrival index + U[0, 1) * 2 * shuffle_buffer`` and samples are emitted in key order, a
  sliding shuffle that holds ~``shuffle_buffer`` samples on average (like a shuffle buffer of
  that size) and frees ring rows oldest first — and writes every batch's network input
  (normalised, D4-rotated, channels-last) straight into the batch tensor with one
  :func:`gen5dask.kernels.normalize.apply_norm_into` call (the
  arithmetic scoring uses), then releases the ring rows. The batch is the only copy made in
  the training process.

That split (``assemble="consumer"``, the default with one worker) shares the work between the
worker and the training process. With two or more workers and cores to spare
(``assemble="workers"``, :func:`auto_assemble_in_workers`) the training process would limit
the rate, so the workers assemble too: the emission order of the
sliding shuffle is a pure function of the plan, so it is computed up front, and each worker
runs the same kernel call on its unit straight into a ring in emission order; the training
process only copies each finished batch out. The batches are the same bits either way.

Workers are persistent processes started by ``forkserver`` (or ``spawn``), never forked from
the training process (fork after zarr's event-loop thread or a Dask client has started is a
known deadlock). When an epoch starts, the next epoch's units are queued as well, so workers
keep reading across the epoch boundary (during validation) and the first batches of the next
epoch are ready when it starts.

Epoch plan (:func:`plan_epoch`), a pure function of (seed, epoch, world size):

1. the work units — (source, store chunk) pairs with at least one selected row — are permuted
   with a generator keyed by (seed, epoch) and dealt to the least-loaded rank, so every unit
   (hence every selected sample) goes to exactly one rank: each sample is seen exactly once
   per epoch whatever the number of workers or ranks (gate 7);
2. batch sizes are fixed in advance; under DDP every rank gets the same number of batches (a
   rank with fewer samples makes smaller batches), so collective ops never hang and the
   learning-rate schedule is identical on every rank;
3. a rank's units and batches are dealt round-robin to its loader workers and merged back in
   the same order (:func:`merge_plan`); the shuffle keys are keyed by (seed, rank, unit place,
   epoch). So the batches — order and content — do not depend on the number of workers, and
   training results are the same for 0, 1 or more workers.

Row selection uses :func:`select_rows` on the ``read_table`` columns (kind, split, inject_mode,
eval_only); :func:`arm_selection` builds an arm's training or validation set with deterministic,
keyed subsampling for class balance and the hard-negative fraction (DESIGN §5).
"""

from __future__ import annotations

import collections
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gen5dask.injection.ids import decode
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
    replicates: int | None = None,
) -> ArmData:
    """Training or validation samples of one ablation arm.

    Positives: ``train.zarr`` injections of ``split`` with ``inject_mode``. Negatives: controls of
    ``split``, plus (if ``hard_negatives``) ``hardneg.zarr`` hard negatives of ``split`` with
    ``eval_only == 0`` (the evaluation slice is never used for training or selection).

    Proportions (training split only; validation keeps its natural mix so the selection metric
    is not distorted): excess hard negatives are subsampled to ``hard_negative_fraction`` of
    the negatives; with ``positive_fraction`` the majority class is subsampled to reach it.
    Every subsample is :func:`keyed_subsample` (deterministic per sample id).

    ``replicates`` (``ablation.arms[].replicates``) keeps only the injections of replicate
    ``< replicates`` (decoded from the sample id, :func:`gen5dask.injection.ids.decode`), in
    every split; ``None`` keeps them all.
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
    if replicates is not None and len(pos):
        pos = pos.subset(decode(pos.sample)["replicate"] < int(replicates))
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

    Each rank's reading order (the units in permuted order, dealt to the least-loaded rank) and
    batch sizes do not depend on ``num_workers``: units and batches are dealt round-robin to
    the workers, and :func:`merge_plan` interleaves them back into the rank's sequence. So the
    training order and results are the same for any number of loader workers.

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
        ``(rank, worker) -> (unit indices the worker reads, in order; its share of the rank's
        batch sizes)``. Every unit appears exactly once; per rank the batch sizes sum to its
        samples; every rank has the same number of batches.

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
    k_all = max(math.ceil(int(n) / batch_size) for n in rank_load)
    plan: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for r in range(ws):
        n = int(rank_load[r])
        if n < k_all:
            msg = (f"plan_epoch: rank {r} has {n} samples, too few for the {k_all} batches "
                   "every rank must run; use fewer ranks")
            raise ValueError(msg)
        natural = _natural_sizes(n, batch_size)
        bsz = natural if len(natural) == k_all else _even_sizes(n, k_all)
        for w in range(nw):
            plan[(r, w)] = (rank_units[r][w::nw], bsz[w::nw])
    return plan


def _round_robin(lists: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Interleave lists (skipping exhausted ones): values and the list each came from."""
    vals, owner = [], []
    for i in range(max((len(x) for x in lists), default=0)):
        for w, x in enumerate(lists):
            if i < len(x):
                vals.append(int(x[i]))
                owner.append(w)
    return vals, owner


def merge_plan(plan: dict[tuple[int, int], tuple[list[int], list[int]]], rank: int
               ) -> tuple[list[int], list[int], list[int]]:
    """One rank's reading sequence from a :func:`plan_epoch` plan.

    Returns ``(units, owners, batch_sizes)``: the rank's units in reading order (round-robin
    over its workers' lists), the worker that reads each, and its batch sizes (round-robin
    over the workers' shares).
    """
    ws = sorted(w for (r, w) in plan if r == rank)
    units, owners = _round_robin([plan[(rank, w)][0] for w in ws])
    sizes, _ = _round_robin([plan[(rank, w)][1] for w in ws])
    return units, [ws[o] for o in owners], sizes


# --------------------------------------------------------------------------------------------
# the stream


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


class StampStream:
    """Batches streamed from stores, in an order fixed by (seed, epoch, world size).

    The work is split in two (see the module docstring):

    * :meth:`write_unit` (run by the loader workers): decode one store chunk — straight into
      the ring when all its rows are selected — keep the selected rows, apply the transform's
      ``prepare`` in place (centre mask, normalisation statistics: the cached ones unless the
      mask can change them, D4 codes);
    * the consumer (:class:`StreamLoader`, in the training process) cuts the rank's sample
      sequence (sliding shuffle, see the module docstring) and writes every batch's network
      input — normalised, D4-rotated, channels-last — with one
      :func:`gen5dask.kernels.normalize.apply_norm_into` call.

    Parameters
    ----------
    selections : list of Selection
        Rows to stream (paths + index lists, optionally cached normalisation statistics).
    batch_size : int
        Largest batch.
    seed : int
        Run seed (unit permutation, shuffle keys, augmentation keys).
    shuffle : bool
        Training order (permuted units + sliding shuffle); False streams in store order.
    shuffle_buffer : int
        Shuffle depth, samples (per rank): a sample is emitted on average this many places after
        its arrival in the rank's unit sequence, at most 3x (key: arrival + U[0, 1) * 2 depth).
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
        self._epoch = 0
        self.num_workers = 0  # set by make_loader (the plan deals units to this many workers)
        self._arrays: dict[str, Any] = {}
        self._xform: Any = None
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
        state["_xform"] = None
        return state

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (permutation and augmentation keys); call before iterating."""
        self._epoch = int(epoch)

    @property
    def rank_world(self) -> tuple[int, int]:
        r, w = _dist_rank_world()
        return (self._rank if self._rank is not None else r,
                self._world if self._world is not None else w)

    def plan(self, epoch: int | None = None) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
        """The :func:`plan_epoch` of ``epoch`` (default: the current one), every (rank, worker)."""
        _, world = self.rank_world
        return plan_epoch(
            [u.size for u in self.units], seed=self.seed,
            epoch=self.epoch if epoch is None else int(epoch), shuffle=self.shuffle,
            world_size=world, num_workers=self.num_workers, batch_size=self.batch_size,
        )

    def num_batches(self) -> int:
        """Batches this rank yields this epoch (the same on every rank)."""
        rank, _ = self.rank_world
        return sum(len(v[1]) for (r, _w), v in self.plan().items() if r == rank)

    def num_samples(self) -> int:
        """Selected samples over all ranks."""
        return sum(len(s) for s in self.selections)

    def max_unit(self) -> int:
        """Rows of the largest work unit."""
        return max((u.size for u in self.units), default=0)

    def transform_obj(self):
        """The transform as an object with ``prepare`` and ``clip``."""
        if self._xform is None:
            t = self.transform
            if t is None:
                from gen5dask.train.augment import EvalTransform

                t = EvalTransform()
            self._xform = t if hasattr(t, "prepare") else _Legacy(t)
        return self._xform

    def _array(self, path: str, name: str):
        k = f"{path}::{name}"
        if k not in self._arrays:
            import zarr

            from gen5dask.store.zarrstore import quiet_zarr

            with quiet_zarr():
                self._arrays[k] = zarr.open_group(str(path), mode="r")[name]
        return self._arrays[k]

    def _decoder(self, path: str, name: str):
        """Whole-chunk reader of a store array (:class:`gen5dask.train.chunkdecode.ChunkDecoder`),
        one per process."""
        k = f"{path}::{name}::decoder"
        if k not in self._arrays:
            from gen5dask.train.chunkdecode import ChunkDecoder

            self._arrays[k] = ChunkDecoder(self._array(path, name))
        return self._arrays[k]

    def _scratch(self, dec, k: int) -> np.ndarray:
        """A reused buffer for ``k`` rows of a decoder's array (partial-chunk reads)."""
        shape = (k, *dec.arr.shape[1:])
        dt = np.dtype(dec.arr.dtype)
        buf = self._arrays.get("::scratch")
        if buf is None or buf.dtype != dt or buf.size < int(np.prod(shape)):
            buf = np.empty(int(np.prod((dec.chunk_shape[0], *shape[1:]))), dt)
            self._arrays["::scratch"] = buf
        return buf[: int(np.prod(shape))].reshape(shape)

    # -- worker side (gen5dask.train.workerpool.UnitWriter)

    def begin_epoch(self, epoch: int, units: list[int]) -> None:
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

    def write_unit(self, unit: int, epoch: int, arrays: dict[str, np.ndarray], row: int) -> None:
        """Prepared rows of work unit ``unit`` into ``arrays`` rows ``row : row + size``.

        ``arrays``: ``image`` float32 ``(cap, nb, H, W)`` (flux after the transform's
        ``prepare``: centre-masked), ``stats`` float32 ``(cap, nb, 2)`` and ``codes`` int64
        ``(cap,)``.
        """
        u = self.units[unit]
        sel = self.selections[u.source]
        k = u.size
        dst = arrays["image"][row : row + k]
        dec = self._decoder(sel.path, "image")
        if k == u.stop - u.start and dec.arr.dtype == np.float32:
            dec.read(u.start, u.stop, out=dst)  # decode straight into the ring
        else:
            chunk = dec.read(u.start, u.stop, out=self._scratch(dec, u.stop - u.start))
            local = sel.rows[u.lo : u.hi] - u.start
            if chunk.dtype == np.float32:
                np.take(chunk, local, axis=0, out=dst)
            else:
                dst[...] = chunk[local]
        stats = None if sel.stats is None else sel.stats[u.lo : u.hi]
        st, codes = self.transform_obj().prepare(
            dst, np.arange(k, dtype=np.int64), sel.sample[u.lo : u.hi],
            sel.psfsize_r[u.lo : u.hi], stats, epoch)
        arrays["stats"][row : row + k] = st
        arrays["codes"][row : row + k] = codes

    def write_assembled(self, unit: int, epoch: int, arrays: dict[str, np.ndarray],
                        rows: np.ndarray) -> None:
        """Finished network input of work unit ``unit`` into ``arrays["out"]`` at ``rows``.

        The chunk is decoded into this process's scratch buffer, the transform's ``prepare``
        runs on its selected rows (centre mask, statistics, D4 codes: as in
        :meth:`write_unit`) and one :func:`gen5dask.kernels.normalize.apply_norm_into` call
        writes the normalised, D4-rotated samples in the batch layout (:meth:`out_shape`) at
        ``rows`` (one per selected row, in order). The same kernel on the same rows as the
        consumer's assembly, so the batches are bit-identical.
        """
        u = self.units[unit]
        sel = self.selections[u.source]
        dec = self._decoder(sel.path, "image")
        chunk = dec.read(u.start, u.stop, out=self._scratch(dec, u.stop - u.start))
        if chunk.dtype != np.float32:
            chunk = chunk.astype(np.float32)
        local = sel.rows[u.lo : u.hi] - u.start
        stats = None if sel.stats is None else sel.stats[u.lo : u.hi]
        xf = self.transform_obj()
        st, codes = xf.prepare(chunk, local, sel.sample[u.lo : u.hi],
                               sel.psfsize_r[u.lo : u.hi], stats, epoch)
        apply_norm_into(chunk, local, st, arrays["out"], np.asarray(rows, np.int64),
                        codes=codes, clip=xf.clip, channels_last=self.channels_last)

    # -- consumer side

    def out_shape(self, k: int) -> tuple[int, ...]:
        """Memory shape of a batch of ``k`` images (``(k, H, W, nb)`` channels-last)."""
        nb, size = self.geometry
        return (k, size, size, nb) if self.channels_last else (k, nb, size, size)

    def image_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """The ``(k, nb, H, W)`` view of a batch tensor of :meth:`out_shape`."""
        return t.permute(0, 3, 1, 2) if self.channels_last else t

    def ring_shapes(self, cap: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        nb, size = self.geometry
        return {"image": ((cap, nb, size, size), torch.float32),
                "stats": ((cap, nb, 2), torch.float32), "codes": ((cap,), torch.int64)}

    def out_ring_shapes(self, cap: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        """The ring of assembled samples (workers assemble): ``cap`` rows of the batch layout."""
        return {"out": (self.out_shape(cap), torch.float32)}

    def ring_rows(self, prefetch_batches: int = 4) -> int:
        """Ring capacity, rows: three times the shuffle depth, a batch and three units (enough
        that the consumer never waits on space it holds itself), plus ``prefetch_batches``
        batches."""
        s = max(self.shuffle_buffer, 1)
        return 3 * s + (1 + int(prefetch_batches)) * self.batch_size + 3 * max(self.max_unit(), 1)

    def unit_scalars(self, unit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample ids, labels and standardised metadata of a unit's rows."""
        u = self.units[unit]
        sel = self.selections[u.source]
        meta = ((sel.meta[u.lo : u.hi] - self.meta_mean) / self.meta_std).astype(np.float32)
        return sel.sample[u.lo : u.hi], sel.label[u.lo : u.hi], meta

    def __iter__(self):
        loader = StreamLoader(self, 0)
        try:
            yield from loader
        finally:
            loader.close()


class _Run:
    """One epoch's work queued in the pool: the rank's units, their ring positions, job
    sequence numbers and batch sizes; when the workers assemble, also the emission order."""

    __slots__ = ("arrival", "asm", "end", "epoch", "pos", "seq", "sizes", "units")

    def __init__(self, epoch, units, pos, seq, sizes, end, arrival, asm=None):
        self.epoch, self.units, self.pos, self.seq = epoch, units, pos, seq
        self.sizes, self.end, self.arrival, self.asm = sizes, end, arrival, asm


@dataclass
class _Assembly:
    """Where every sample of a run goes when the workers assemble the batches.

    ``order``: arrival indices in emission order (the consumer's shuffle, computed up front);
    ``dest``: per unit, the ring positions of its samples; ``starts``: batch start positions
    (emission index, run-relative) and the run's end; ``touch``: per batch, the job sequence
    numbers of the units holding its samples; ``need``: ring rows without which a worker
    could wait for space that only a batch it has not written can free."""

    base: int
    order: np.ndarray
    dest: list[np.ndarray]
    starts: np.ndarray
    touch: list[np.ndarray]
    need: int


ASSEMBLE = ("auto", "consumer", "workers")


def auto_assemble_in_workers(num_workers: int, cores: int | None = None) -> bool:
    """``assemble="auto"``: the workers assemble when there are 2 or more of them *and* a core
    for each plus two (the training process and its model).

    Assembling in the workers moves the ~20 us per 64x64 grz sample of the normalise + D4 +
    channels-last pass out of the training process but adds a copy out of the ring (~10 us,
    memory-bound), so it only pays when the training process, not the core count, is the
    limit (``scripts/bench_loader.py``: on 2 cores, 2 workers assembling gave 0.70x the rate
    of 1 worker with the consumer assembling).
    """
    import os

    cores = (os.cpu_count() or 1) if cores is None else int(cores)
    return int(num_workers) >= 2 and cores >= int(num_workers) + 2


class StreamLoader:
    """Iterable of a :class:`StampStream`'s batches through persistent loader workers.

    Workers (:mod:`gen5dask.train.workerpool`) decode work units into a shared ring. The
    shuffle (sliding, keyed by seed, rank, unit place and epoch) and the batch assembly (one
    fused normalise + D4 + channels-last kernel call) happen in one of two places, with the
    same result bit for bit:

    * ``assemble="consumer"`` (``auto`` with 0 or 1 worker, or too few cores, see
      :func:`auto_assemble_in_workers`): workers write prepared rows
      (masked flux, statistics, D4 codes); this process orders them and writes each batch's
      network input into a new tensor with the kernel. The work splits between the worker and
      the training process, which is what keeps one worker level with a raw decode;
    * ``assemble="workers"`` (``auto`` with 2 or more and spare cores): the emission order is
      computed up front
      (it is a pure function of the plan, see :meth:`_assembly`), and the workers run the same
      kernel call on their units straight into a ring in emission order; this process only
      copies each finished batch out. Its work per sample is then one copy, so the rate grows
      with the number of workers.

    When an epoch starts, the next epoch's units are queued too, so the workers keep
    reading across the epoch boundary (during validation, say); if another epoch is asked
    for, that work is dropped. The order and content of the batches depend only on (seed,
    epoch, world size) — not on the number of workers or where the batches are assembled.
    """

    def __init__(self, stream: StampStream, num_workers: int = 0, *, pin_memory: bool = False,
                 prefetch_factor: int = 4, start_method: str = "forkserver",
                 speculate: bool = True, assemble: str = "auto"):
        if assemble not in ASSEMBLE:
            msg = f"loader assemble must be one of {ASSEMBLE}, got {assemble!r}"
            raise ValueError(msg)
        self.stream = stream
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.start_method = start_method
        self.speculate = bool(speculate)
        self.prefetch_factor = int(prefetch_factor)
        self.in_workers = assemble == "workers" or (
            assemble == "auto" and auto_assemble_in_workers(self.num_workers))
        self.cap = (stream.ring_rows(prefetch_factor) if not self.in_workers else 0)
        self._pool: Any = None
        self._ring: dict[str, torch.Tensor] = {}
        self._runs: collections.deque[_Run] = collections.deque()
        self._next_pos = 0
        self._next_seq = 0
        self._dirty = False
        self._finalizer: Any = None

    def __len__(self) -> int:
        return self.stream.num_batches()

    def _ensure_pool(self, rows: int = 0) -> None:
        """Start the pool; when the workers assemble, with a ring of at least ``rows`` rows
        (a pool with a smaller ring is stopped and restarted)."""
        if self._pool is not None and rows <= self.cap:
            return
        if self._pool is not None:
            self.close()
            self._next_pos = self._next_seq = 0
        from gen5dask.train.workerpool import InlinePool, WorkerPool, ring_arrays

        shared = self.num_workers > 0
        if self.in_workers:
            self.cap = max(self.cap, int(rows), 1)
            shapes = self.stream.out_ring_shapes(self.cap)
        else:
            shapes = self.stream.ring_shapes(self.cap)
        self._ring = ring_arrays(shapes, shared=shared)
        if shared:
            self._pool = WorkerPool(self.stream, self.num_workers, self._ring,
                                    loader_context(self.start_method))
        else:
            self._pool = InlinePool(self.stream, self._ring)
        self._finalizer = weakref.finalize(self, self._pool.close)

    def _merged(self, epoch: int) -> tuple[list[int], list[int], list[int]]:
        rank, _ = self.stream.rank_world
        units, owners, sizes = merge_plan(self.stream.plan(epoch), rank)
        n_units = sum(self.stream.units[u].size for u in units)
        if sum(sizes) != n_units:
            msg = (f"epoch plan of epoch {epoch}: batch sizes sum to {sum(sizes)} but the "
                   f"units hold {n_units} samples")
            raise ValueError(msg)
        return units, owners, sizes

    def _unit_keys(self, epoch: int, n_total: int, i: int, a0: int, k: int) -> np.ndarray:
        """Shuffle keys of the ``k`` samples of the ``i``-th unit of a run (arrival indices
        ``a0 ...``): ``floor(a) + U[0, 1) * 2 * shuffle_buffer`` (:meth:`_key_floor`), ``U``
        keyed by (seed, rank, unit place, epoch): on average a sample waits
        ``shuffle_buffer`` places, as in a shuffle buffer of that size, and never more than 3x
        that."""
        st = self.stream
        keys = self._key_floor(n_total, a0 + np.arange(k, dtype=np.float64))
        if st.shuffle and st.shuffle_buffer > 0:
            rank, _ = st.rank_world
            keys = keys + 2 * st.shuffle_buffer * generator(
                st.seed, BUFFER_STAGE, rank, i, epoch).random(k)
        return keys

    def _assembly(self, epoch: int, units: list[int], sizes: list[int], arrival: np.ndarray,
                  seqs: list[int], base: int) -> _Assembly:
        """Emission order of a run, computed up front.

        The consumer's streaming shuffle emits the samples in increasing key order (stable in
        arrival order: a batch is cut only once no later arrival can have a smaller key), so
        the order is a stable sort of every key of the run. Ring need: the lowest unfinished
        unit ``u*`` must fit while the consumer waits for the batch holding the earliest
        sample of any unit after it, ``max_g(u*) + 1 - batch_start(min_{u >= u*} min_g(u))``.
        """
        st = self.stream
        ks = [st.units[u].size for u in units]
        n = int(sum(ks))
        keys = (np.concatenate([self._unit_keys(epoch, n, i, int(arrival[i]), k)
                                for i, k in enumerate(ks)]) if ks else np.zeros(0))
        order = np.argsort(keys, kind="stable")
        g = np.empty(n, np.int64)
        g[order] = np.arange(n, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        dest, touch_pairs, need = [], [], 0
        bounds = np.concatenate([[0], np.cumsum(ks)]).astype(np.int64)
        gmax = np.zeros(len(ks), np.int64)
        gmin = np.zeros(len(ks), np.int64)
        for i in range(len(ks)):
            gi = g[bounds[i] : bounds[i + 1]]
            dest.append(base + gi)
            gmax[i], gmin[i] = gi.max(), gi.min()
            b = np.unique(np.searchsorted(starts, gi, side="right") - 1)
            touch_pairs.append(np.stack([b, np.full(b.size, seqs[i])], axis=1))
        if ks:
            suffix = np.minimum.accumulate(gmin[::-1])[::-1]
            bstart = starts[np.searchsorted(starts, suffix, side="right") - 1]
            need = int((gmax + 1 - bstart).max())
            pairs = np.concatenate(touch_pairs)
            pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
            cut = np.searchsorted(pairs[:, 0], np.arange(len(sizes) + 1))
            touch = [pairs[cut[b] : cut[b + 1], 1] for b in range(len(sizes))]
        else:
            touch = [np.zeros(0, np.int64) for _ in sizes]
        return _Assembly(base, order, dest, starts, touch, need)

    def _submit(self, epoch: int, *, speculative: bool = False) -> _Run | None:
        units, owners, sizes = self._merged(epoch)
        cap, p = self.cap, self._next_pos
        arrival = np.cumsum([0] + [self.stream.units[u].size for u in units])[:-1]
        jobs: list[list[tuple]] = [[] for _ in range(max(self.num_workers, 1))]
        if self.in_workers:
            seq = list(range(self._next_seq, self._next_seq + len(units)))
            asm = self._assembly(epoch, units, sizes, arrival, seq, p)
            rows = asm.need + (1 + self.prefetch_factor) * self.stream.batch_size
            if self._pool is None or rows > cap:
                if speculative:
                    return None  # the ring would have to grow: do it when the epoch starts
                # a ring for this epoch with one unit of slack for the next ones (another
                # epoch that needs more restarts the workers with a larger ring)
                self._ensure_pool(rows + self.stream.max_unit())
                self._reset()
                return self._submit(epoch)
            pos = [int(d.min()) if d.size else p for d in asm.dest]
            for i, (u, w) in enumerate(zip(units, owners, strict=True)):
                d = asm.dest[i]
                top = int(d.max()) + 1 if d.size else p
                jobs[w % len(jobs)].append((seq[i], u, top, 0, d))
            self._next_seq += len(units)
            p += int(asm.starts[-1])
        else:
            asm = None
            pos, seq = [], []
            for u, w in zip(units, owners, strict=True):
                k = self.stream.units[u].size
                if p % cap + k > cap:  # never split a unit across the ring's end
                    p = (p // cap + 1) * cap
                pos.append(p)
                seq.append(self._next_seq)
                jobs[w % len(jobs)].append((self._next_seq, u, p, k, None))
                self._next_seq += 1
                p += k
        self._next_pos = p
        self._pool.submit(epoch, jobs)
        return _Run(epoch, units, pos, seq, sizes, p, arrival.tolist(), asm)

    def _reset(self) -> None:
        if self._pool is not None:
            self._pool.abort()
        self._runs.clear()
        self._next_pos = 0
        self._next_seq = 0

    def __iter__(self):
        if not self.in_workers:
            self._ensure_pool()  # (when the workers assemble, the first plan sizes the ring)
        epoch = self.stream.epoch
        run = self._runs[0] if self._runs else None
        if (self._dirty or run is None or run.epoch != epoch
                or (run.units, run.sizes) != tuple(self._merged(epoch)[::2])):
            self._reset()
            run = self._submit(epoch)
        else:
            self._runs.popleft()
        if self.speculate:
            nxt = self._submit(epoch + 1, speculative=True)
            if nxt is not None:
                self._runs.append(nxt)
        self._dirty = True
        yield from (self._assembled(run) if run.asm is not None else self._batches(run))
        self._dirty = False

    def _key_floor(self, n_total: int, a):
        """Smallest shuffle key of a sample with arrival index ``a``: ``a`` clipped to
        ``[D, N - D]`` (``D`` the shuffle depth, ``N`` the rank's samples), so the first and
        the last ``D`` arrivals are mixed like the rest (no start/end transient); without
        shuffling, ``a``."""
        d = self.stream.shuffle_buffer if self.stream.shuffle else 0
        if d <= 0:
            return a
        return np.minimum(np.maximum(a, d), n_total - d)

    def _unit_entries(self, run: _Run, i: int) -> list[np.ndarray]:
        """Wait for unit ``i`` of the run; its rows' shuffle keys (:meth:`_unit_keys`), ring
        rows and scalars."""
        st = self.stream
        self._pool.wait(run.seq[i])
        u = run.units[i]
        k = st.units[u].size
        keys = self._unit_keys(run.epoch, sum(run.sizes), i, run.arrival[i], k)
        rows = run.pos[i] % self.cap + np.arange(k, dtype=np.int64)
        return [keys, rows, *st.unit_scalars(u),
                np.full(k, run.pos[i], dtype=np.int64)]

    def _batches(self, run: _Run):
        """The run's batches: samples in shuffle-key order (each one displaced by less than
        ``3 * shuffle_buffer`` places from its arrival, so what is held stays bounded and ring
        rows can be released oldest first). A batch is emitted once no later arrival can have
        a smaller key."""
        st = self.stream
        clip = st.transform_obj().clip
        img, stats, codes = (self._ring[k].numpy() for k in ("image", "stats", "codes"))
        n_units = len(run.units)
        n_total = sum(run.sizes)
        # pending entries sorted by key: key, ring row, id, label, meta, unit ring position
        pend: list[np.ndarray] | None = None
        nxt = 0
        for s in run.sizes:
            while nxt < n_units and (pend is None or pend[0].shape[0] < s
                                     or pend[0][s - 1] >= self._key_floor(
                                         n_total, run.arrival[nxt])):
                cols = self._unit_entries(run, nxt)
                nxt += 1
                if pend is not None:
                    cols = [np.concatenate([p, c]) for p, c in zip(pend, cols, strict=True)]
                order = np.argsort(cols[0], kind="stable")
                pend = [c[order] for c in cols]
            if pend is None or pend[0].shape[0] < s:
                msg = "epoch plan: more batch samples than selected samples"
                raise RuntimeError(msg)
            _, src, ids, lab, meta, _ = (c[:s] for c in pend)
            pend = [c[s:] for c in pend]
            out = torch.empty(st.out_shape(s), dtype=torch.float32, pin_memory=self.pin_memory)
            apply_norm_into(img, src, stats[src], out.numpy(), np.arange(s, dtype=np.int64),
                            codes=codes[src], clip=clip, channels_last=st.channels_last)
            # ring rows before the oldest unit with a pending sample are all in batches
            if pend[0].shape[0]:
                self._pool.release(int(pend[5].min()))
            else:
                self._pool.release(run.pos[nxt - 1] + st.units[run.units[nxt - 1]].size
                                   if nxt else run.pos[0] if n_units else 0)
            yield {"image": st.image_tensor(out), "label": torch.from_numpy(lab),
                   "sample": torch.from_numpy(ids), "meta": torch.from_numpy(meta)}
        if nxt != n_units or (pend is not None and pend[0].shape[0]):
            msg = "epoch plan: fewer batch samples than selected samples"
            raise RuntimeError(msg)

    def _assembled(self, run: _Run):
        """The run's batches when the workers assemble them: wait for the units holding each
        batch's samples, copy the batch out of the ring, release its rows."""
        st = self.stream
        asm = run.asm
        ring = self._ring["out"].numpy()
        scal = [st.unit_scalars(u) for u in run.units]
        if scal:
            ids_all, lab_all, meta_all = (np.concatenate(c) for c in zip(*scal, strict=True))
        waited: set[int] = set()
        for b, s in enumerate(run.sizes):
            for q in asm.touch[b].tolist():
                if q not in waited:
                    self._pool.wait(q)
                    waited.add(q)
            a0 = asm.base + int(asm.starts[b])
            out = torch.empty(st.out_shape(s), dtype=torch.float32, pin_memory=self.pin_memory)
            r0 = a0 % self.cap
            if r0 + s <= self.cap:
                out.numpy()[...] = ring[r0 : r0 + s]
            else:
                np.take(ring, (a0 + np.arange(s)) % self.cap, axis=0, out=out.numpy())
            self._pool.release(a0 + s)
            sel = asm.order[asm.starts[b] : asm.starts[b] + s]
            yield {"image": st.image_tensor(out), "label": torch.from_numpy(lab_all[sel]),
                   "sample": torch.from_numpy(ids_all[sel]),
                   "meta": torch.from_numpy(meta_all[sel])}
        if len(waited) != len(run.units):
            msg = "epoch plan: batches do not hold every selected sample"
            raise RuntimeError(msg)

    def worker_pids(self) -> list[int]:
        """Process ids of the running loader workers (empty before the first iteration)."""
        return [p.pid for p in getattr(self._pool, "procs", [])]

    def close(self) -> None:
        """Stop the worker processes (also happens when the loader is collected)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = None
        self._runs.clear()
        self._dirty = False


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
                prefetch_factor: int = 4, start_method: str = "forkserver",
                speculate: bool = True, assemble: str = "auto") -> StreamLoader:
    """A loader over a :class:`StampStream`.

    Parameters
    ----------
    stream : StampStream
        The stream; its ``num_workers`` is set so that its plan deals units to the workers.
    num_workers : int
        Worker processes (0: load in this process). Workers are persistent (started at the
        first iteration, reused every epoch) and started with ``start_method`` (see
        :func:`loader_context`). The batches do not depend on the number.
    pin_memory : bool
        Write batches into pinned (page-locked) memory for asynchronous host-to-GPU copies.
    prefetch_factor : int
        Batches of ring space beyond what the shuffle needs (how far workers run ahead).
    speculate : bool
        When an epoch starts, queue the next epoch's work too (workers keep reading across
        the epoch boundary; dropped if another epoch is asked for).
    assemble : str
        Where batches are normalised and laid out: ``consumer`` (this process), ``workers``
        (the loader workers, straight into a ring in emission order) or ``auto``
        (:func:`auto_assemble_in_workers`: workers when there are 2 or more and a core for each
        plus two; see :class:`StreamLoader`). The batches are the same bits.
    """
    stream.num_workers = int(num_workers)
    rank, world = stream.rank_world
    stream._rank, stream._world = rank, world  # worker processes have no process group
    return StreamLoader(stream, num_workers, pin_memory=pin_memory,
                        prefetch_factor=prefetch_factor, start_method=start_method,
                        speculate=speculate, assemble=assemble)


__all__ = [
    "ASSEMBLE",
    "START_METHODS",
    "ArmData",
    "Selection",
    "StampStream",
    "StreamLoader",
    "Unit",
    "arm_selection",
    "auto_assemble_in_workers",
    "keyed_subsample",
    "loader_context",
    "make_loader",
    "make_units",
    "merge_plan",
    "plan_epoch",
    "select_rows",
    "selection_from_table",
    "store_table",
]

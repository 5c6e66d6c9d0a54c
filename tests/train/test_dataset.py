"""Streaming dataset: selection, epoch plan, exactly-once across workers and ranks."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.train.augment import EvalTransform
from gen5dask.train.dataset import (
    StampStream,
    arm_selection,
    keyed_subsample,
    make_loader,
    merge_plan,
    plan_epoch,
    select_rows,
    store_table,
)


def _ids(loader):
    out, sizes = [], []
    for b in loader:
        out.append(b["sample"].numpy())
        sizes.append(len(b["sample"]))
    return (np.concatenate(out) if out else np.zeros(0, np.int64)), sizes


def test_select_rows(stores):
    t = store_table(stores / "train.zarr")
    m = select_rows(t, kinds=["injection"], splits=["train"], inject_modes=["calibrated"])
    assert m.sum() == 24
    assert set(t.loc[m, "inject_mode"]) == {"calibrated"}
    h = store_table(stores / "hardneg.zarr")
    assert select_rows(h, kinds=["hard_negative"], eval_only=1).sum() == 10


def test_arm_selection_excludes_eval_slice_and_hits_fraction(stores):
    d = arm_selection(train_path=stores / "train.zarr", hardneg_path=stores / "hardneg.zarr",
                      split="train", inject_mode="calibrated", hard_negatives=True,
                      hard_negative_fraction=0.15, seed=1)
    assert d.counts["injection"] == 24 and d.counts["control"] == 24
    # floor(0.15 / 0.85 * 24) = 4 of the 20 available training-slice hard negatives
    assert d.counts["hard_negative"] == 4
    hn = [s for s in d.selections if "hardneg" in s.name][0]
    h = store_table(stores / "hardneg.zarr")
    assert (h.iloc[hn.rows]["eval_only"] == 0).all() and (h.iloc[hn.rows]["split"] == "train").all()
    # deterministic
    d2 = arm_selection(train_path=stores / "train.zarr", hardneg_path=stores / "hardneg.zarr",
                       split="train", inject_mode="calibrated", hard_negatives=True,
                       hard_negative_fraction=0.15, seed=1)
    hn2 = [s for s in d2.selections if "hardneg" in s.name][0]
    assert np.array_equal(hn.sample, hn2.sample)
    # validation keeps every training-slice val hard negative, never the eval slice
    v = arm_selection(train_path=stores / "train.zarr", hardneg_path=stores / "hardneg.zarr",
                      split="val", inject_mode="calibrated", hard_negatives=True, seed=1)
    assert v.counts["hard_negative"] == 6


def test_positive_fraction_balances(stores):
    d = arm_selection(train_path=stores / "train.zarr", hardneg_path=None, split="train",
                      inject_mode="uncalibrated", hard_negatives=False, positive_fraction=0.25,
                      seed=1)
    assert d.counts["injection"] == 8 and d.counts["control"] == 24


@pytest.mark.parametrize("split", ["train", "val"])
def test_arm_replicates_keeps_the_first_replicates(stores, split):
    """``ablation.arms[].replicates``: only injections whose sample id (host * 64 + 2 + 2 rep +
    calibrated) encodes a replicate below the cap; controls untouched; None keeps all."""
    kw = {"train_path": stores / "train.zarr", "hardneg_path": None, "split": split,
          "inject_mode": "calibrated", "hard_negatives": False, "seed": 1}
    full = arm_selection(**kw)
    for cap in (1, 3):
        d = arm_selection(**kw, replicates=cap)
        pos_full = np.sort(full.selections[0].sample)
        pos = np.sort(d.selections[0].sample)
        code = pos_full % 64  # independent decode of the id formula (these tiny stores number
        rep = np.where(code >= 2, (code - 2) // 2, 0)  # rows 0, 1, ...: codes 0/1 read as rep 0)
        want = pos_full[rep < cap]
        assert np.array_equal(pos, want) and 0 < len(pos) < len(pos_full)
        assert d.counts["injection"] == len(want)
        assert np.array_equal(d.selections[1].sample, full.selections[1].sample)


def test_arm_replicates_cannot_exceed_the_injections_made():
    from gen5dask.config import ConfigError, config_from_dict

    arms = [{"name": "baseline", "brightness": "uncalibrated", "hard_negatives": False,
             "center_mask": False, "replicates": 3}]
    with pytest.raises(ConfigError, match="inject.replicates"):
        config_from_dict({"inject": {"replicates": 2}, "ablation": {
            "arms": arms, "decision": {"masked_arm": "baseline"}}})
    arms[0]["replicates"] = 2
    cfg = config_from_dict({"inject": {"replicates": 2}, "ablation": {
        "arms": arms, "decision": {"masked_arm": "baseline"}}})
    assert cfg.ablation.arms[0].replicates == 2


def test_keyed_subsample_is_order_free_and_nested():
    ids = np.arange(1000, 1100)
    a = keyed_subsample(ids, 10, seed=3, what="x")
    b = keyed_subsample(ids[::-1], 10, seed=3, what="x")[::-1]
    assert np.array_equal(a, b) and a.sum() == 10
    assert (keyed_subsample(ids, 30, seed=3, what="x") >= a).all()


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_plan_epoch_partitions_units(world, workers):
    sizes = [16, 3, 16, 7, 16, 1, 9, 12, 16, 5]
    plan = plan_epoch(sizes, seed=1, epoch=2, shuffle=True, world_size=world,
                      num_workers=workers, batch_size=8)
    seen = sorted(u for units, _ in plan.values() for u in units)
    assert seen == list(range(len(sizes)))
    n_batches = set()
    for r in range(world):
        units, owners, bsz = merge_plan(plan, r)
        assert sum(bsz) == sum(sizes[u] for u in units)  # the rank's batches hold its samples
        assert all(0 < s <= 8 for s in bsz)
        assert all(u in plan[(r, w)][0] for u, w in zip(units, owners, strict=True))
        n_batches.add(len(bsz))
        # the rank's sequence does not depend on the number of loader workers
        one = merge_plan(plan_epoch(sizes, seed=1, epoch=2, shuffle=True, world_size=world,
                                    num_workers=1, batch_size=8), r)
        assert (units, bsz) == (one[0], one[2])
    assert len(n_batches) == 1  # same number of batches on every rank


def test_plan_epoch_order_depends_on_epoch():
    sizes = [4] * 20
    a = plan_epoch(sizes, seed=1, epoch=0, shuffle=True, batch_size=4)[(0, 0)][0]
    b = plan_epoch(sizes, seed=1, epoch=1, shuffle=True, batch_size=4)[(0, 0)][0]
    c = plan_epoch(sizes, seed=1, epoch=1, shuffle=True, batch_size=4)[(0, 0)][0]
    assert a != b and b == c


def _stream(stores, **kw):
    d = arm_selection(train_path=stores / "train.zarr", hardneg_path=stores / "hardneg.zarr",
                      split="train", inject_mode="uncalibrated", hard_negatives=True,
                      hard_negative_fraction=0.3, seed=1)
    s = StampStream(d.selections, batch_size=7, seed=5, shuffle=True, shuffle_buffer=10,
                    transform=EvalTransform(), **kw)
    return d, s


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_each_sample_once_per_epoch_any_workers(stores, workers):
    d, s = _stream(stores)
    want = np.sort(np.concatenate([x.sample for x in d.selections]))
    loader = make_loader(s, num_workers=workers)
    for epoch in (0, 1):
        s.set_epoch(epoch)
        got, sizes = _ids(loader)
        assert np.array_equal(np.sort(got), want)  # multiset equality: no repeats, no misses
        assert len(sizes) == s.num_batches()


def test_each_sample_once_across_two_ranks(stores):
    d, _ = _stream(stores)
    want = np.sort(np.concatenate([x.sample for x in d.selections]))
    for workers in (0, 2):
        parts, nbatches = [], []
        for rank in (0, 1):
            _, s = _stream(stores, rank=rank, world_size=2)
            s.set_epoch(3)
            ids, sizes = _ids(make_loader(s, num_workers=workers))
            parts.append(ids)
            nbatches.append(len(sizes))
        assert np.intersect1d(parts[0], parts[1]).size == 0
        assert np.array_equal(np.sort(np.concatenate(parts)), want)
        assert nbatches[0] == nbatches[1]


def test_shuffle_changes_order_and_labels_follow_samples(stores):
    d, s = _stream(stores)
    s.set_epoch(0)
    b0 = list(make_loader(s))
    s.set_epoch(1)
    b1 = list(make_loader(s))
    i0 = np.concatenate([b["sample"].numpy() for b in b0])
    i1 = np.concatenate([b["sample"].numpy() for b in b1])
    assert not np.array_equal(i0, i1)
    lab = {int(i): float(lab) for x in d.selections for i, lab in zip(x.sample, x.label,
                                                                       strict=True)}
    for b in b0:
        for i, lab_ in zip(b["sample"].numpy(), b["label"].numpy(), strict=True):
            assert lab[int(i)] == lab_
    assert b0[0]["image"].dtype.is_floating_point and b0[0]["image"].shape[1:] == (3, 32, 32)


def _batches(loader):
    return [(b["sample"].numpy().copy(), b["image"].numpy().copy()) for b in loader]


def test_batches_identical_for_any_worker_count(stores):
    """Same seed and epoch: the same batches, sample for sample and bit for bit, with 0, 1
    or 2 loader workers (the order does not depend on the worker count)."""
    from gen5dask.train.augment import TrainTransform

    got = {}
    for workers in (0, 1, 2):
        d, _ = _stream(stores)
        s = StampStream(d.selections, batch_size=7, seed=5, shuffle=True, shuffle_buffer=10,
                        transform=TrainTransform(seed=5, mask=True))
        loader = make_loader(s, num_workers=workers)
        try:
            got[workers] = []
            for epoch in (0, 1):
                s.set_epoch(epoch)
                got[workers].append(_batches(loader))
        finally:
            loader.close()
    for workers in (1, 2):
        for ep in range(2):
            assert len(got[workers][ep]) == len(got[0][ep])
            for (i0, x0), (i1, x1) in zip(got[0][ep], got[workers][ep], strict=True):
                assert np.array_equal(i0, i1)
                np.testing.assert_array_equal(x0, x1)
    assert not np.array_equal(np.concatenate([b[0] for b in got[0][0]]),
                              np.concatenate([b[0] for b in got[0][1]]))


@pytest.mark.parametrize("workers", [0, 2])
def test_prefetch_dropped_when_another_epoch_or_partial_iteration(stores, workers):
    """The loader queues epoch e+1 while e runs; asking for another epoch, repeating one, or
    abandoning an iteration half-way must still give exactly that epoch's batches."""
    d, s = _stream(stores)
    ref = {}
    for epoch in (0, 1, 4):
        s.set_epoch(epoch)
        ref[epoch] = [b[0] for b in _batches(make_loader(s))]
    d, s = _stream(stores)
    loader = make_loader(s, num_workers=workers, prefetch_factor=0)
    try:
        for epoch in (0, 1, 1, 4, 0):
            s.set_epoch(epoch)
            ids = [b[0] for b in _batches(loader)]
            assert len(ids) == len(ref[epoch])
            assert all(np.array_equal(a, b) for a, b in zip(ids, ref[epoch], strict=True))
            s.set_epoch(epoch + 1 if epoch != 4 else 1)
            next(iter(loader))  # abandoned after one batch
    finally:
        loader.close()


def test_worker_error_is_raised_with_its_message(stores, tmp_path):
    import shutil

    shutil.copytree(stores / "train.zarr", tmp_path / "train.zarr")
    d = arm_selection(train_path=tmp_path / "train.zarr", hardneg_path=None, split="train",
                      inject_mode="calibrated", hard_negatives=False, seed=1)
    s = StampStream(d.selections, batch_size=7, seed=5, shuffle=True, shuffle_buffer=10)
    loader = make_loader(s, num_workers=1)
    try:
        s.set_epoch(0)
        assert len(_batches(loader)) == s.num_batches()
        for f in (tmp_path / "train.zarr" / "image" / "c").rglob("*"):
            if f.is_file():
                f.write_bytes(b"not a blosc frame")  # corrupt every image chunk
        s.set_epoch(3)
        with pytest.raises(RuntimeError, match="loader worker 0 failed"):
            _batches(loader)
    finally:
        loader.close()


def test_sliding_shuffle_mixes_units_and_bounds_displacement(stores):
    """Each sample leaves at most 3x the shuffle depth (+ a batch) after its arrival in the
    rank's unit sequence, and the first batch already mixes several store chunks."""
    d, s = _stream(stores)
    s.set_epoch(2)
    loader = make_loader(s)
    units, _, _ = merge_plan(s.plan(), 0)
    arrival, unit_of = {}, {}
    for ui in units:
        u = s.units[ui]
        for sid in s.selections[u.source].sample[u.lo : u.hi]:
            arrival[int(sid)] = len(arrival)
            unit_of[int(sid)] = ui
    out = np.concatenate([b["sample"].numpy() for b in loader])
    depth = s.shuffle_buffer
    disp = np.array([i - arrival[int(sid)] for i, sid in enumerate(out)])
    assert disp.max() < 3 * depth + s.batch_size
    assert len({unit_of[int(sid)] for sid in out[: s.batch_size]}) >= 3
    assert not np.array_equal(out, np.array(sorted(arrival, key=arrival.get)))


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_assembly_in_workers_is_bit_identical(stores, workers):
    """Batches assembled by the workers (emission order computed up front, one kernel call per
    unit into an ordered ring) equal the consumer's assembly sample for sample and bit for
    bit — training (mask, D4, shuffle) and evaluation order — also when an epoch is repeated,
    skipped or abandoned, and when the ring has to grow."""
    from gen5dask.train.augment import TrainTransform

    epochs = (0, 1, 1, 4)
    for shuffle in (True, False):
        got = {}
        for asm in ("consumer", "workers"):
            d, _ = _stream(stores)
            s = StampStream(d.selections, batch_size=7, seed=5, shuffle=shuffle,
                            shuffle_buffer=10, transform=TrainTransform(seed=5, mask=True))
            loader = make_loader(s, num_workers=workers, assemble=asm)
            assert loader.in_workers == (asm == "workers")
            try:
                got[asm] = []
                for i, epoch in enumerate(epochs):
                    s.set_epoch(epoch)
                    got[asm].append(_batches(loader))
                    if i == 1 and asm == "workers":
                        loader.cap = 8  # pretend the ring is too small: workers restart
                        s.set_epoch(9)
                        next(iter(loader))  # abandoned after one batch
            finally:
                loader.close()
        for ep in range(len(epochs)):
            assert len(got["workers"][ep]) == len(got["consumer"][ep]) > 1
            for (i0, x0), (i1, x1) in zip(got["consumer"][ep], got["workers"][ep], strict=True):
                assert np.array_equal(i0, i1)
                assert x0.tobytes() == x1.tobytes()


def test_assemble_choice():
    from gen5dask.train.dataset import StreamLoader, auto_assemble_in_workers

    assert not auto_assemble_in_workers(1, cores=64)
    assert auto_assemble_in_workers(2, cores=4) and auto_assemble_in_workers(8, cores=16)
    assert not auto_assemble_in_workers(2, cores=3) and not auto_assemble_in_workers(2, cores=2)
    s = StampStream([], batch_size=4, seed=0, shuffle=False)
    assert not StreamLoader(s, 0).in_workers and not StreamLoader(s, 1).in_workers
    assert StreamLoader(s, 2).in_workers == auto_assemble_in_workers(2)
    assert StreamLoader(s, 0, assemble="workers").in_workers
    assert not StreamLoader(s, 3, assemble="consumer").in_workers
    with pytest.raises(ValueError, match="assemble must be one of"):
        StreamLoader(s, 1, assemble="gpu")


def test_assembly_in_workers_across_two_ranks(stores):
    d, _ = _stream(stores)
    want = np.sort(np.concatenate([x.sample for x in d.selections]))
    parts, nbatches = [], []
    for rank in (0, 1):
        _, s = _stream(stores, rank=rank, world_size=2)
        s.set_epoch(3)
        ref = _ids(make_loader(s, num_workers=0))
        ids, sizes = _ids(make_loader(s, num_workers=0, assemble="workers"))
        assert np.array_equal(ids, ref[0]) and sizes == ref[1]
        parts.append(ids)
        nbatches.append(len(sizes))
    assert np.intersect1d(parts[0], parts[1]).size == 0
    assert np.array_equal(np.sort(np.concatenate(parts)), want)
    assert nbatches[0] == nbatches[1]

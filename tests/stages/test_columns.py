"""Store columns read one at a time, task-written scratch columns, keyed brightness subsample."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.columns import StoreColumns, create_scratch, write_scratch
from gen5dask.stages.audit import brightness_populations
from gen5dask.store import read_table
from gen5dask.store.schema import KINDS

from .synth_stores import make_all


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    cfg, *_ = make_all(tmp_path_factory.mktemp("cols"))
    return cfg


def test_store_columns_equal_read_table(stores):
    p = stores.layout.train
    c = StoreColumns(p)
    t = read_table(p)
    for name in ("sample", "ra", "host_sample", "psfsize_r", "psfdepth_z"):
        np.testing.assert_array_equal(c.get(name), t[name].to_numpy())
    code, legend = c.codes("kind")
    assert legend == KINDS
    np.testing.assert_array_equal(np.asarray(legend)[code], t["kind"].to_numpy())
    assert c.has("psfsize_g") and not c.has("psfsize_y") and not c.has("nope")
    assert np.isnan(c.get("nope", np.nan)).all() and c.get("nope", np.nan).size == c.n
    with pytest.raises(KeyError, match="nope"):
        c.get("nope")
    sc, sleg = StoreColumns(stores.layout.survey).codes("inject_mode")  # absent: all ''
    assert (np.asarray(sleg)[sc] == "").all()


def test_scratch_columns_written_by_slices(tmp_path, stores):
    d = create_scratch(tmp_path / "s", 10, {"a": ("f8", ()), "b": ("f8", ())})
    write_scratch(d, 0, {"a": np.arange(6.0)})
    write_scratch(d, 6, {"a": np.arange(6.0, 10.0), "b": np.ones(4)})
    np.testing.assert_array_equal(np.load(d / "a.npy"), np.arange(10.0))
    np.testing.assert_array_equal(np.load(d / "b.npy"), np.r_[np.zeros(6), np.ones(4)])
    with pytest.raises(ValueError, match="do not fit"):
        write_scratch(d, 8, {"a": np.zeros(3)})
    c = StoreColumns(stores.layout.train, d)
    assert c.has("a")
    np.testing.assert_array_equal(c.get("a"), np.arange(10.0))


def test_brightness_subsample_is_keyed_and_bounded(stores, tmp_path):
    c = StoreColumns(stores.layout.survey, tmp_path / "sv")
    create_scratch(c.scratch, c.n, {"core_brightness": ("f8", ())})
    write_scratch(c.scratch, 0, {"core_brightness": np.arange(c.n, dtype=np.float64)})
    full, tot = brightness_populations({"survey": c}, max_samples=None)
    part, tot2 = brightness_populations({"survey": c}, seed=3, max_samples=20)
    again, _ = brightness_populations({"survey": c}, seed=3, max_samples=20)
    other, _ = brightness_populations({"survey": c}, seed=4, max_samples=20)
    assert tot == tot2 and tot["hosts"] == full["hosts"].size > 20
    assert part["hosts"].size == 20 and set(part["hosts"]) <= set(full["hosts"])
    np.testing.assert_array_equal(part["hosts"], again["hosts"])
    assert not np.array_equal(part["hosts"], other["hosts"])

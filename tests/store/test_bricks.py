"""Ingest from DR10-style coadd bricks (compressed .fits.fz, real TAN WCS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gen5dask.config import config_from_dict
from gen5dask.stages.ingest import run_ingest
from gen5dask.store import bricks as B
from gen5dask.store import fitsio as F
from gen5dask.store import ingest as ing
from gen5dask.store import read_samples, read_table, validate
from tests.store.fitsfactory import catalog_frame, ingest_config, write_brick

S = 16
SIZE = 120


def _catalog(tmp_path, rows):
    """rows: [(id, brick, ra, dec)] -> catalogue CSV path."""
    df = catalog_frame(len(rows), seed=5)
    df["id"] = [r[0] for r in rows]
    df["brickname"] = [r[1] for r in rows]
    df["ra"] = [r[2] for r in rows]
    df["dec"] = [r[3] for r in rows]
    path = tmp_path / "cat.csv"
    df.to_csv(path, index=False)
    return path


def _world(brick_out, x, y):
    ra, dec = brick_out["wcs"].pixel_to_world_values(x, y)
    return float(ra), float(dec)


def _ref_stamp(plane, x, y, fill=0):
    """Slow, obvious reference: pad the plane and slice around (y, x)."""
    p = np.pad(plane, S, constant_values=fill)
    return p[y + S - S // 2 : y + S - S // 2 + S, x + S - S // 2 : x + S - S // 2 + S]


@pytest.mark.parametrize("layout", ["flat", "dr10"])
def test_brick_stamps_match_reference_and_are_centred(tmp_path, layout):
    b1 = "1501p020"
    src_xy = [(60, 60), (30, 75), (90, 22)]
    tmpw = write_brick(tmp_path / "probe", b1, ra=150.1, dec=2.0, size=SIZE)
    srcs = [(*_world(tmpw, x, y), 5.0) for x, y in src_xy]
    out1 = write_brick(tmp_path / "bricks", b1, ra=150.1, dec=2.0, size=SIZE, layout=layout,
                       sources=srcs)
    b2 = "1503p020"
    out2 = write_brick(tmp_path / "bricks", b2, ra=150.3, dec=2.0, size=SIZE, layout=layout)
    rows = [(10 + k, b1, ra, dec) for k, (ra, dec, _) in enumerate(srcs)]
    rows.insert(1, (99, b2, *_world(out2, 50, 44)))
    cat = _catalog(tmp_path, rows)
    cfg = config_from_dict(
        ingest_config(tmp_path, catalog=str(cat), bricks=str(tmp_path / "bricks"))
    )
    out = run_ingest(cfg)
    assert validate(out) == []
    d = read_samples(out, slice(0, 4), ["sample", "image", "invvar", "maskbits"])
    np.testing.assert_array_equal(d["sample"], [10, 99, 11, 12])  # catalogue order
    placements = [(out1, 60, 60), (out2, 50, 44), (out1, 30, 75), (out1, 90, 22)]
    for k, (bo, x, y) in enumerate(placements):
        for j, band in enumerate("grz"):
            np.testing.assert_array_equal(d["image"][k, j], _ref_stamp(bo[f"image-{band}"], x, y))
            np.testing.assert_array_equal(d["invvar"][k, j], _ref_stamp(bo[f"invvar-{band}"], x, y))
        np.testing.assert_array_equal(d["maskbits"][k], _ref_stamp(bo["maskbits"], x, y))
    for k in (0, 2, 3):  # the point source sits on the centre pixel (H//2, W//2)
        img = d["image"][k, 1]
        assert np.unravel_index(np.argmax(img), img.shape) == (S // 2, S // 2)
    assert set(read_table(out, ["quality"])["quality"]) == {"ok"}


def _edge_setup(tmp_path, policy):
    b = "1501p020"
    bo = write_brick(tmp_path / "bricks", b, ra=150.1, dec=2.0, size=SIZE)
    rows = [
        (1, b, *_world(bo, 60, 60)),  # full
        (2, b, *_world(bo, 3, 60)),  # partial (runs off the left edge)
        (3, b, *_world(bo, -40, 60)),  # centre off the brick
        (4, b, *_world(bo, 118, 117)),  # partial corner
    ]
    cat = _catalog(tmp_path, rows)
    cfg = config_from_dict(
        ingest_config(tmp_path, catalog=str(cat), bricks=str(tmp_path / "bricks"),
                      partial_overlap=policy)
    )
    return cfg, bo


def test_partial_overlap_flagged(tmp_path):
    cfg, bo = _edge_setup(tmp_path, "flag")
    out = run_ingest(cfg)
    tab = read_table(out, ["sample", "quality"])
    assert list(tab["sample"]) == [1, 2, 4]
    assert list(tab["quality"]) == ["ok", "partial_overlap", "partial_overlap"]
    d = read_samples(out, slice(1, 2), ["image", "invvar", "maskbits"])
    outside = np.zeros((S, S), bool)
    outside[:, : S // 2 - 3] = True  # x = 3 - 8 + col < 0  <=> col < 5
    assert (d["invvar"][0][:, outside] == 0).all() and (d["image"][0][:, outside] == 0).all()
    assert (d["maskbits"][0][outside] & F.NPRIMARY_BIT).all()
    np.testing.assert_array_equal(d["invvar"][0, 2], _ref_stamp(bo["invvar-z"], 3, 60))
    q = pd.read_csv(ing.side_paths(out)["quarantine"])
    assert list(q["id"]) == [3] and list(q["reason"]) == [F.OFF_EDGE]


def test_partial_overlap_rejected(tmp_path):
    cfg, _ = _edge_setup(tmp_path, "reject")
    out = run_ingest(cfg)
    assert list(read_table(out, ["sample"])["sample"]) == [1]
    q = pd.read_csv(ing.side_paths(out)["quarantine"])
    assert dict(zip(q["id"], q["reason"], strict=True)) == {
        2: F.PARTIAL, 3: F.OFF_EDGE, 4: F.PARTIAL
    }


def test_brick_problems_quarantine_their_rows(tmp_path):
    good = write_brick(tmp_path / "bricks", "1501p020", ra=150.1, dec=2.0, size=SIZE)
    noz = write_brick(tmp_path / "bricks", "1502p020", ra=150.2, dec=2.0, size=SIZE, bands="gr")
    badwcs = write_brick(tmp_path / "bricks", "1504p020", ra=150.4, dec=2.0, size=SIZE,
                         pixscale=0.5)
    rows = [
        (1, "1501p020", *_world(good, 50, 50)),
        (2, "1502p020", *_world(noz, 50, 50)),
        (3, "1504p020", *_world(badwcs, 50, 50)),
        (4, "1509p020", 150.9, 2.0),  # no such brick directory
    ]
    cat = _catalog(tmp_path, rows)
    cfg = config_from_dict(
        ingest_config(tmp_path, catalog=str(cat), bricks=str(tmp_path / "bricks"))
    )
    out = run_ingest(cfg)
    assert list(read_table(out, ["sample"])["sample"]) == [1]
    q = pd.read_csv(ing.side_paths(out)["quarantine"])
    assert dict(zip(q["id"], q["reason"], strict=True)) == {
        2: F.MISSING_BANDS, 3: F.BAD_WCS, 4: F.MISSING_FILE
    }


def test_each_brick_opened_once_per_task(tmp_path, monkeypatch):
    bo = write_brick(tmp_path / "bricks", "1501p020", ra=150.1, dec=2.0, size=SIZE)
    rows = [(k + 1, "1501p020", *_world(bo, 20 + 7 * k, 30 + 5 * k)) for k in range(10)]
    cat = _catalog(tmp_path, rows)
    d = ingest_config(tmp_path, catalog=str(cat), bricks=str(tmp_path / "bricks"))
    d["chunk_size"] = 32
    calls = []
    real = B.read_plane

    def counting(path, **kw):
        calls.append(path.name)
        return real(path, **kw)

    monkeypatch.setattr(B, "read_plane", counting)
    run_ingest(config_from_dict(d))
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 7  # 3 image, 3 invvar, maskbits


def test_plan_tasks_groups_bricks_and_bounds_task_size():
    from gen5dask.store.catalogs import Catalog

    n = 11
    bricks = np.array(["a", "b", "a", "c", "b", "a", "a", "a", "c", "b", "a"], dtype=object)
    cat = Catalog(
        source="x", ids=np.arange(n).astype(str), sample=np.arange(n), ra=np.zeros(n),
        dec=np.zeros(n), brickname=bricks, psfsize=np.ones((n, 3)), psfdepth=np.ones((n, 3)),
        host_mag_r=np.zeros(n), reason=np.full(n, "", dtype=object),
        detail=np.full(n, "", dtype=object),
    )
    cat.reason[4] = "bad psfsize"
    tasks = ing.plan_tasks(cat, mode="bricks", chunk_size=4)
    assert all(t.size <= 4 for t in tasks)
    flat = np.concatenate(tasks)
    assert sorted(flat.tolist()) == [i for i in range(n) if i != 4]
    for t in tasks:  # within a task, rows of one brick are contiguous
        b = bricks[t]
        assert len({x for x in b}) == len([x for i, x in enumerate(b) if i == 0 or b[i - 1] != x])
    assert [t.tolist() for t in ing.plan_tasks(cat, mode="cutouts", chunk_size=4)] == [
        [0, 1, 2, 3], [5, 6, 7, 8], [9, 10]
    ]

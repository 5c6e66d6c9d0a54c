"""Two-pass, resumable, hole-free ingest of FITS cutouts or DR10 bricks into a contract store.

Pass A (one task per group of catalogue rows; :func:`stage_task`) reads and validates each row's
pixels and writes the good ones to a per-task staging directory
``<stem>.staging/task_NNNNNN/`` (``rows.npy``, ``image.npy``, ``invvar.npy``, ``maskbits.npy``,
``quality.npy``, ``status.json``) -- written under a temporary name and renamed, so a task is
either fully staged or not at all. The driver then orders the good rows by catalogue row
(:func:`build_plan`) and pass B (:func:`write_output_chunk`) writes the final store chunks from
the staged arrays (memory-mapped). Output order = catalogue order of good rows, whatever the
workers or the task layout, so stores are bit-identical across executors and chunkings.

Everything here works on paths and small dicts (picklable Dask task arguments); the workers
open the files themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.store import bricks as _bricks
from gen5dask.store import fitsio
from gen5dask.store.catalogs import Catalog
from gen5dask.store.fitsio import Rejected
from gen5dask.store.schema import QUALITY, SAMPLE, TRUTH_VARS
from gen5dask.store.zarrstore import chunk_bounds, store_geometry, write_chunk

STAGING_FORMAT = 1
LABEL_ONE_KINDS = ("injection", "anchor", "stress")
_Q = {name: i for i, name in enumerate(QUALITY)}


# --- file names -----------------------------------------------------------------------------
def side_paths(out: str | Path) -> dict[str, Path]:
    """Side files of an ingest output ``<stem>.zarr``: quarantine CSV, id map CSV, staging dir."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".zarr" else out
    return {
        "quarantine": Path(f"{stem}.quarantine.csv"),
        "ids": Path(f"{stem}.ids.csv"),
        "staging": Path(f"{stem}.staging"),
    }


def _task_dir(staging: Path, i: int) -> Path:
    return Path(staging) / f"task_{i:06d}"


def _save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _load(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


# --- task layout ----------------------------------------------------------------------------
def plan_tasks(cat: Catalog, *, mode: str, chunk_size: int) -> list[np.ndarray]:
    """Row indices of each pass-A task (usable rows only).

    ``cutouts``: consecutive runs of ``chunk_size`` usable rows. ``bricks``: rows grouped by
    brick (first-appearance order), a brick split into pieces of at most ``chunk_size`` rows,
    pieces packed into tasks of at most ``chunk_size`` rows, so each task opens each of its
    bricks once and holds at most ``chunk_size`` stamps.
    """
    rows = np.flatnonzero(cat.ok)
    if mode == "cutouts":
        return [rows[a : a + chunk_size] for a in range(0, rows.size, chunk_size)]
    groups: dict[str, list[int]] = {}
    for r in rows:
        groups.setdefault(str(cat.brickname[r]), []).append(int(r))
    tasks: list[np.ndarray] = []
    current: list[int] = []
    for members in groups.values():
        for a in range(0, len(members), chunk_size):
            piece = members[a : a + chunk_size]
            if current and len(current) + len(piece) > chunk_size:
                tasks.append(np.asarray(current, np.int64))
                current = []
            current.extend(piece)
    if current:
        tasks.append(np.asarray(current, np.int64))
    return tasks


def prepare_staging(staging: str | Path, cat: Catalog, tasks: list[np.ndarray], *, key: str):
    """Create (or keep, when ``key`` matches) the staging area: catalogue columns + task rows.

    A staging area from a different configuration/catalogue (``key`` differs) is wiped.
    """
    staging = Path(staging)
    man = staging / "manifest.json"
    if man.exists():
        try:
            old = json.loads(man.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("key") == key and old.get("format") == STAGING_FORMAT:
            return
    if staging.exists():
        for child in staging.iterdir():  # the lock we hold lives outside (store_workdir)
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    (staging / "catalog").mkdir(parents=True, exist_ok=True)
    c = staging / "catalog"
    _save(c / "sample.npy", cat.sample)
    _save(c / "ids.npy", np.asarray(cat.ids, dtype=str))
    _save(c / "ra.npy", cat.ra)
    _save(c / "dec.npy", cat.dec)
    _save(c / "brickname.npy", np.asarray(cat.brickname, dtype="U8"))
    _save(c / "psfsize.npy", cat.psfsize)
    _save(c / "psfdepth.npy", cat.psfdepth)
    _save(c / "host_mag_r.npy", cat.host_mag_r)
    lengths = np.asarray([t.size for t in tasks], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(tasks).astype(np.int64) if tasks else np.zeros(0, np.int64)
    _save(staging / "task_rows.npy", flat)
    _save(staging / "task_offsets.npy", offsets)
    tmp = man.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps({"key": key, "format": STAGING_FORMAT, "n_tasks": len(tasks)}))
    os.replace(tmp, man)


def n_tasks(staging: str | Path) -> int:
    """Number of pass-A tasks of a prepared staging area."""
    return int(json.loads((Path(staging) / "manifest.json").read_text())["n_tasks"])


def task_done(staging: str | Path, i: int) -> bool:
    """True when pass-A task ``i`` is fully staged."""
    return (_task_dir(Path(staging), i) / "status.json").exists()


def load_status(staging: str | Path, i: int) -> dict:
    """The ``status.json`` of a staged task: ``n_ok`` and ``rejected`` rows."""
    return json.loads((_task_dir(Path(staging), i) / "status.json").read_text())


# --- pass A ---------------------------------------------------------------------------------
class _Result:
    """Accumulates one task's good stamps and rejected rows."""

    def __init__(self, n: int, nb: int, s: int):
        self.image = np.zeros((n, nb, s, s), np.float32)
        self.invvar = np.zeros((n, nb, s, s), np.float32)
        self.maskbits = np.zeros((n, s, s), np.int32)
        self.quality = np.zeros(n, np.int8)
        self.good = np.ones(n, bool)
        self.rejected: list[list] = []

    def reject(self, k: int, row: int, exc: Rejected, source: str) -> None:
        if self.good[k]:
            self.good[k] = False
            self.rejected.append([int(row), exc.reason, exc.detail, source])


def _cutout_rows(rows, cols, settings, res: _Result) -> None:
    roots = [Path(r) for r in settings["roots"]]
    src = Path(settings["source_dir"])
    bands = tuple(settings["bands"])
    derive = settings["missing_invvar"] == "psfdepth"
    for k, row in enumerate(rows):
        fields = {
            "id": str(cols["ids"][row]),
            "sample": int(cols["sample"][row]),
            "brickname": str(cols["brickname"][row]),
            "row": int(row),
        }
        path = src / settings["pattern"].format(**fields)
        try:
            resolved = fitsio.resolve_within(path, roots)
            c = fitsio.read_cutout(
                resolved,
                bands=bands,
                stamp_size=settings["stamp_size"],
                max_bytes=settings["max_bytes"],
                pixscale=settings["pixscale"],
                pixscale_tolerance=settings["pixscale_tolerance"],
                require_invvar=not derive,
            )
        except Rejected as exc:
            res.reject(k, row, exc, str(path))
            continue
        res.image[k] = c.image
        res.maskbits[k] = c.maskbits
        if c.invvar is None:
            iv = fitsio.invvar_from_psfdepth(
                cols["psfdepth"][row], cols["psfsize"][row], pixscale=settings["pixscale"]
            )
            res.invvar[k] = iv[:, None, None]
            res.quality[k] = _Q["invvar_from_psfdepth"]
        else:
            res.invvar[k] = c.invvar


def _inside_mask(xi, yi, shape, s: int) -> np.ndarray:
    """``(n, s, s)`` bool: stamp pixels that fall on the brick image."""
    h, w = shape
    off = np.arange(s) - s // 2
    ys = yi[:, None] + off[None, :]
    xs = xi[:, None] + off[None, :]
    return ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]


def _brick_rows(rows, cols, settings, res: _Result) -> None:
    roots = [Path(r) for r in settings["roots"]]
    src = Path(settings["source_dir"])
    bands = tuple(settings["bands"])
    s = settings["stamp_size"]
    mb = settings["max_bytes"]
    derive = settings["missing_invvar"] == "psfdepth"
    groups: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        groups.setdefault(str(cols["brickname"][row]), []).append(k)
    for brick, ks in groups.items():
        ks_arr = np.asarray(ks)
        brows = np.asarray(rows)[ks_arr]
        ra = np.asarray(cols["ra"][brows])
        dec = np.asarray(cols["dec"][brows])
        source = str(src / brick)
        try:
            d = _bricks.brick_dir(src, brick)
            if d is None:
                raise Rejected(fitsio.MISSING_FILE, f"no brick directory for {brick} under {src}")
            d = fitsio.resolve_within(d, roots)
            source = str(d)
            ov = np.full(ks_arr.size, _bricks.FULL, np.int8)
            shape = None
            xi = yi = None
            for j, band in enumerate(bands):
                p = _bricks.brick_file(d, brick, "image", band)
                if p is None:
                    raise Rejected(fitsio.MISSING_BANDS, f"{d}: no image file for band {band!r}")
                p = fitsio.resolve_within(p, roots)
                data, hdr = _bricks.read_plane(p, max_bytes=mb, kind="f")
                wcs = fitsio.celestial_wcs(hdr, label=str(p))
                fitsio.check_pixscale(
                    wcs,
                    pixscale=settings["pixscale"],
                    tolerance=settings["pixscale_tolerance"],
                    label=str(p),
                )
                xi, yi = _bricks.pixel_positions(wcs, ra, dec)
                shape = data.shape
                ov = np.minimum(ov, _bricks.overlap(xi, yi, shape, s))
                use = np.flatnonzero(ov > _bricks.NONE)
                for u in use:
                    res.image[ks_arr[u], j] = _bricks.cut(data, xi[u], yi[u], s, 0.0)
                del data
                pi = _bricks.brick_file(d, brick, "invvar", band)
                if pi is None:
                    if not derive:
                        raise Rejected(fitsio.MISSING_FILE, f"{d}: no invvar file for {band!r}")
                    iv = fitsio.invvar_from_psfdepth(
                        cols["psfdepth"][brows, j], cols["psfsize"][brows, j],
                        pixscale=settings["pixscale"],
                    )
                    inside = _inside_mask(xi, yi, shape, s)
                    for u in use:
                        res.invvar[ks_arr[u], j] = np.where(inside[u], iv[u], 0.0)
                        if res.quality[ks_arr[u]] == 0:
                            res.quality[ks_arr[u]] = _Q["invvar_from_psfdepth"]
                    continue
                pi = fitsio.resolve_within(pi, roots)
                ivdata, _ = _bricks.read_plane(pi, max_bytes=mb, kind="f")
                if ivdata.shape != shape:
                    msg = f"{pi}: invvar shape {ivdata.shape} != image {shape}"
                    raise Rejected(fitsio.WRONG_SHAPE, msg)
                for u in use:
                    res.invvar[ks_arr[u], j] = _bricks.cut(ivdata, xi[u], yi[u], s, 0.0)
                del ivdata
            pm = _bricks.brick_file(d, brick, "maskbits")
            if pm is not None:
                pm = fitsio.resolve_within(pm, roots)
                mdata, _ = _bricks.read_plane(pm, max_bytes=mb, kind="i")
                if mdata.shape != shape:
                    msg = f"{pm}: maskbits shape {mdata.shape} != image {shape}"
                    raise Rejected(fitsio.WRONG_SHAPE, msg)
                for u in np.flatnonzero(ov > _bricks.NONE):
                    res.maskbits[ks_arr[u]] = _bricks.cut(
                        mdata, xi[u], yi[u], s, fitsio.NPRIMARY_BIT
                    )
            else:
                inside = _inside_mask(xi, yi, shape, s)
                res.maskbits[ks_arr] = np.where(inside, 0, fitsio.NPRIMARY_BIT)
        except Rejected as exc:
            for k, row in zip(ks_arr, brows, strict=True):
                res.reject(int(k), int(row), exc, source)
            continue
        for u, (k, row) in enumerate(zip(ks_arr, brows, strict=True)):
            if ov[u] == _bricks.NONE:
                detail = f"({ra[u]:.6f}, {dec[u]:.6f}) is off brick {brick}"
                res.reject(int(k), int(row), Rejected(fitsio.OFF_EDGE, detail), source)
            elif ov[u] == _bricks.PARTIAL:
                if settings["partial_overlap"] == "reject":
                    detail = f"stamp runs off brick {brick}"
                    res.reject(int(k), int(row), Rejected(fitsio.PARTIAL, detail), source)
                else:
                    res.quality[k] = _Q["partial_overlap"]
            if res.good[k] and not np.isfinite(res.image[k]).all():
                detail = f"{brick}: NaN/inf image pixels in the stamp"
                res.reject(int(k), int(row), Rejected(fitsio.NON_FINITE, detail), source)
            if res.good[k] and not (
                np.isfinite(res.invvar[k]).all() and (res.invvar[k] >= 0).all()
            ):
                detail = f"{brick}: NaN/inf/negative invvar in the stamp"
                res.reject(int(k), int(row), Rejected(fitsio.BAD_INVVAR, detail), source)


def stage_task(i: int, staging: str | Path, settings: dict) -> dict:
    """Pass A for task ``i``: validate and cut its rows, stage the good stamps.

    Returns (and stores) ``{"task": i, "n_ok": k, "rejected": [[row, reason, detail, source]]}``.
    Already-staged tasks return their stored status without re-reading any file.
    """
    staging = Path(staging)
    final = _task_dir(staging, i)
    if (final / "status.json").exists():
        return load_status(staging, i)
    offsets = _load(staging / "task_offsets.npy")
    rows = np.asarray(_load(staging / "task_rows.npy")[offsets[i] : offsets[i + 1]])
    c = staging / "catalog"
    cols = {
        name: _load(c / f"{name}.npy")
        for name in ("sample", "ids", "ra", "dec", "brickname", "psfsize", "psfdepth")
    }
    res = _Result(rows.size, len(settings["bands"]), settings["stamp_size"])
    if settings["mode"] == "cutouts":
        _cutout_rows(rows, cols, settings, res)
    else:
        _brick_rows(rows, cols, settings, res)
    good = res.good
    status = {
        "task": int(i),
        "n_ok": int(good.sum()),
        "rejected": sorted(res.rejected, key=lambda r: r[0]),
    }
    tmp = staging / f".task_{i:06d}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    np.save(tmp / "rows.npy", rows[good])
    np.save(tmp / "image.npy", res.image[good])
    np.save(tmp / "invvar.npy", res.invvar[good])
    np.save(tmp / "maskbits.npy", res.maskbits[good])
    np.save(tmp / "quality.npy", res.quality[good])
    (tmp / "status.json").write_text(json.dumps(status))
    try:
        os.rename(tmp, final)
    except OSError:  # a duplicate run of the same task (Dask retry) got there first
        shutil.rmtree(tmp, ignore_errors=True)
        return load_status(staging, i)
    return status


# --- between the passes ---------------------------------------------------------------------
def build_plan(staging: str | Path, statuses: list[dict]) -> np.ndarray:
    """Order the staged good rows by catalogue row; save ``plan_{row,task,local}.npy``.

    Returns the catalogue rows of the output samples, in output order.
    """
    staging = Path(staging)
    rows, task, local = [], [], []
    for st in statuses:
        i = st["task"]
        r = np.load(_task_dir(staging, i) / "rows.npy")
        if r.size != st["n_ok"]:
            msg = f"staging task {i}: {r.size} staged rows but status says {st['n_ok']}"
            raise RuntimeError(msg)
        rows.append(r)
        task.append(np.full(r.size, i, np.int64))
        local.append(np.arange(r.size, dtype=np.int64))
    cat_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    order = np.argsort(cat_rows, kind="stable")
    plan_task = np.concatenate(task)[order] if task else np.zeros(0, np.int64)
    plan_local = np.concatenate(local)[order] if local else np.zeros(0, np.int64)
    cat_rows = cat_rows[order]
    _save(staging / "plan_row.npy", cat_rows)
    _save(staging / "plan_task.npy", plan_task)
    _save(staging / "plan_local.npy", plan_local)
    return cat_rows


# --- pass B ---------------------------------------------------------------------------------
def write_output_chunk(i: int, out: str | Path, staging: str | Path, meta: dict) -> dict:
    """Pass B: gather output chunk ``i`` from the staged tasks and write it with ``write_chunk``.

    ``meta``: ``{"kind": str, "label": int}``. Memory: one output chunk (the staged arrays are
    memory-mapped).
    """
    staging = Path(staging)
    man = store_geometry(out)
    a, b = chunk_bounds(man["n_samples"], man["chunk_size"])[i]
    rows = np.asarray(_load(staging / "plan_row.npy")[a:b])
    ptask = np.asarray(_load(staging / "plan_task.npy")[a:b])
    plocal = np.asarray(_load(staging / "plan_local.npy")[a:b])
    n = b - a
    nb, s = len(man["bands"]), man["stamp_size"]
    image = np.empty((n, nb, s, s), np.float32)
    invvar = np.empty((n, nb, s, s), np.float32)
    maskbits = np.empty((n, s, s), np.int32)
    quality = np.empty(n, np.int8)
    for t in np.unique(ptask):
        sel = np.flatnonzero(ptask == t)
        d = _task_dir(staging, int(t))
        loc = plocal[sel]
        image[sel] = _load(d / "image.npy")[loc]
        invvar[sel] = _load(d / "invvar.npy")[loc]
        maskbits[sel] = _load(d / "maskbits.npy")[loc]
        quality[sel] = _load(d / "quality.npy")[loc]
    c = staging / "catalog"
    data = {
        SAMPLE: np.asarray(_load(c / "sample.npy")[rows]),
        "image": image,
        "invvar": invvar,
        "maskbits": maskbits,
        "ra": np.asarray(_load(c / "ra.npy")[rows]),
        "dec": np.asarray(_load(c / "dec.npy")[rows]),
        "brickname": np.asarray(_load(c / "brickname.npy")[rows]),
        "region": np.full(n, -1, np.int32),
        "split": np.zeros(n, np.int8),
        "label": np.full(n, int(meta["label"]), np.int8),
        "kind": np.full(n, meta["kind"]),
        "psfsize": np.asarray(_load(c / "psfsize.npy")[rows], np.float32),
        "psfdepth": np.asarray(_load(c / "psfdepth.npy")[rows], np.float32),
        "host_sample": np.full(n, -1, np.int64),
        "quality": quality,
        "host_mag_r": np.asarray(_load(c / "host_mag_r.npy")[rows], np.float32),
    }
    for name, _, _ in TRUTH_VARS:
        data[name] = np.full(n, np.nan, np.float32)
    data = {k: v for k, v in data.items() if k == SAMPLE or k in man["variables"]}
    write_chunk(out, i, data)
    return {"chunk": int(i), "n": int(n)}


# --- side files -----------------------------------------------------------------------------
def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_side_files(
    out: str | Path, cat: Catalog, statuses: list[dict], out_rows: np.ndarray
) -> tuple[int, int]:
    """Write ``<stem>.quarantine.csv`` (id, source, reason, detail, row) and ``<stem>.ids.csv``
    (row, id, sample, status, index, reason). Returns ``(n_ingested, n_quarantined)``."""
    paths = side_paths(out)
    n = cat.n_rows
    reason = cat.reason.copy()
    detail = cat.detail.copy()
    source = np.full(n, cat.source, dtype=object)
    for st in statuses:
        for row, rsn, det, src in st["rejected"]:
            reason[row], detail[row], source[row] = rsn, det, src
    index = np.full(n, -1, np.int64)
    index[out_rows] = np.arange(out_rows.size)
    quarantined = reason != ""
    overlap = quarantined & (index >= 0)
    if overlap.any():
        msg = f"rows {np.flatnonzero(overlap)[:5].tolist()} are both ingested and quarantined"
        raise RuntimeError(msg)
    q = pd.DataFrame(
        {
            "id": cat.ids[quarantined],
            "source": source[quarantined],
            "reason": reason[quarantined],
            "detail": detail[quarantined],
            "row": np.flatnonzero(quarantined),
        }
    )
    _atomic_csv(q, paths["quarantine"])
    status = np.where(index >= 0, "ingested", np.where(quarantined, "quarantined", "missing"))
    ids = pd.DataFrame(
        {
            "row": np.arange(n),
            "id": cat.ids,
            "sample": cat.sample,
            "status": status,
            "index": index,
            "reason": reason,
        }
    )
    _atomic_csv(ids, paths["ids"])
    return int((index >= 0).sum()), int(quarantined.sum())


def remove_outputs(out: str | Path) -> None:
    """Delete an ingest output store and its side files (``--force``)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    for p in side_paths(out).values():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


__all__ = [
    "build_plan",
    "load_status",
    "n_tasks",
    "plan_tasks",
    "prepare_staging",
    "remove_outputs",
    "side_paths",
    "stage_task",
    "task_done",
    "write_output_chunk",
    "write_side_files",
]

"""Tiny seeded contract stores (survey, train, anchors) for the split / hardneg / audit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gen5dask.config import config_from_dict
from gen5dask.store import chunk_bounds, create_store, finalize_store, write_chunk
from gen5dask.store.schema import brickname_for
from gen5dask.store.testing import fake_chunk

STAMP = 32
OPTIONAL = ["subtype", "inject_mode", "tier", "host_mag_r"]


def profile() -> np.ndarray:
    """Unit-peak Gaussian galaxy core (sigma 3 px)."""
    y, x = np.mgrid[:STAMP, :STAMP] - STAMP // 2
    return np.exp(-(x**2 + y**2) / (2 * 3.0**2)).astype("f4")


def _blob(n: int, rng: np.random.Generator, amp: np.ndarray) -> np.ndarray:
    img = rng.normal(0, 0.01, (n, 3, STAMP, STAMP))
    img += amp[:, None, None, None] * profile()[None, None]
    return img.astype("f4")


def ring(radius: float = 13.0, width: float = 1.0) -> np.ndarray:
    """A thin ring at ``radius`` pixels (unit peak), the stand-in of an injected arc."""
    y, x = np.mgrid[:STAMP, :STAMP] - STAMP // 2
    r = np.hypot(x, y)
    return np.exp(-((r - radius) ** 2) / (2 * width**2)).astype("f4")


def write_store(path: Path, data: dict, *, variables=OPTIONAL, chunk: int = 16,
                stage: str = "test") -> Path:
    """Create, fill and finalize a store from full-length arrays."""
    n = len(data["sample"])
    create_store(path, n_samples=n, stage=stage, config={"t": stage}, seed=0,
                 stamp_size=STAMP, chunk_size=chunk, variables=variables, overwrite=True)
    for i, (a, b) in enumerate(chunk_bounds(n, chunk)):
        write_chunk(path, i, {k: v[a:b] for k, v in data.items()})
    finalize_store(path)
    return path


def base(ids: np.ndarray, kind: str, seed: int, variables=OPTIONAL) -> dict:
    """fake_chunk over all ids (valid values for every variable)."""
    from gen5dask.store.schema import CODED, REQUIRED, decode_codes

    d = fake_chunk(np.asarray(ids, dtype=np.int64), variables=[*REQUIRED, *variables],
                   stamp_size=STAMP, seed=seed, kind=kind)
    for name in CODED:
        if name in d and d[name].dtype.kind in "iu":
            d[name] = decode_codes(name, d[name]).astype("U32")
    return d


def make_survey(path: Path, *, n_hosts: int = 60, n_hn: int = 12, n_anchor: int = 8,
                seed: int = 1) -> dict:
    """survey.zarr: hosts (0..), hard negatives (10000..), anchors (20000..), rings (30000..)."""
    rng = np.random.default_rng(seed)
    parts = []
    for kind, off, n in (("host", 0, n_hosts), ("hard_negative", 10000, n_hn),
                         ("anchor", 20000, n_anchor), ("ring", 30000, 4)):
        d = base(off + np.arange(n), kind, seed + off)
        d["ra"] = rng.uniform(150.0, 160.0, n)
        d["dec"] = rng.uniform(0.0, 6.0, n)
        d["image"] = _blob(n, rng, rng.uniform(0.02, 0.06, n))  # peak 2-6 sigma
        d["host_mag_r"] = rng.uniform(17, 20, n).astype("f4")
        if kind == "hard_negative":
            d["subtype"] = np.asarray(["ring_galaxy", "spiral", "merger", "edge_on"] * n)[:n]
        if kind == "anchor":
            d["image"] = _blob(n, rng, rng.uniform(0.005, 0.01, n)) + 0.03 * ring(10.0)
            d["tier"] = np.full(n, "A")
        parts.append(d)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    data["brickname"] = brickname_for(data["ra"], data["dec"])
    write_store(path, data, stage="simulate")
    return data


def make_train(path: Path, survey: dict, *, n_null: int = 6, arc_amp: float = 0.01,
               core_amp: float = 0.0, seed: int = 2) -> dict:
    """train.zarr: per host a control, a calibrated and an uncalibrated injection; nulls.

    Sample id = host id * 16 + code (0 control, 1 calibrated, 2 uncalibrated, 3 null).
    Injections add ``arc_amp`` x a ring at 13 px (outside the core) plus ``core_amp`` x a
    central blob (a core-only-separable training set when > 0).
    """
    rng = np.random.default_rng(seed)
    hosts = np.flatnonzero(survey["kind"] == "host")
    rows = []
    for j, h in enumerate(hosts):
        roles = [("control", 0, ""), ("injection", 1, "calibrated"),
                 ("injection", 2, "uncalibrated")]
        if j < n_null:
            roles.append(("null_injection", 3, "null"))
        for kind, code, mode in roles:
            rows.append((h, kind, code, mode))
    n = len(rows)
    ids = np.asarray([survey["sample"][h] * 16 + c for h, _, c, _ in rows], dtype=np.int64)
    d = base(ids, "control", seed)
    hidx = np.asarray([h for h, *_ in rows])
    for k in ("ra", "dec", "brickname", "psfsize", "psfdepth", "host_mag_r", "maskbits",
              "invvar"):
        d[k] = survey[k][hidx]
    d["image"] = survey["image"][hidx].copy()
    d["host_sample"] = survey["sample"][hidx]
    d["kind"] = np.asarray([r[1] for r in rows])
    d["label"] = (d["kind"] == "injection").astype("i1")
    d["inject_mode"] = np.asarray([r[3] for r in rows])
    d["subtype"] = np.full(n, "")
    inj = d["kind"] == "injection"
    ni = int(inj.sum())
    amp = arc_amp * rng.uniform(0.5, 1.5, ni).astype("f4")
    d["image"][inj] += amp[:, None, None, None] * ring()[None, None]
    if core_amp:
        d["image"][inj] += core_amp * profile()[None, None]
    d["theta_e"] = np.where(inj, rng.uniform(0.5, 2.5, n), np.nan).astype("f4")
    d["arc_snr"] = np.where(inj, rng.uniform(1, 20, n), np.nan).astype("f4")
    write_store(path, d, stage="inject")
    return d


def make_anchors(path: Path, survey: dict) -> dict:
    """anchors.zarr: the survey's anchors, same ids and positions."""
    sel = survey["kind"] == "anchor"
    d = {k: v[sel] for k, v in survey.items()}
    write_store(path, d, stage="anchors")
    return d


def make_cfg(out: Path, **sections) -> object:
    """A config rooted at ``out`` with small split/audit settings."""
    tree = {"output_dir": str(out), "seed": 7, "stamp_size": STAMP, "chunk_size": 16,
            "split": {"nside": 8, "min_regions": 8, "n_candidates": 300,
                      "max_region_frac": 0.3}}
    for k, v in sections.items():
        tree.setdefault(k, {}).update(v) if isinstance(v, dict) else tree.__setitem__(k, v)
    return config_from_dict(tree)


def make_all(out: Path, **train_kw) -> tuple[object, dict, dict]:
    """survey + train + anchors under ``out``; returns (cfg, survey data, train data)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = make_cfg(out)
    sv = make_survey(cfg.layout.survey)
    tr = make_train(cfg.layout.train, sv, **train_kw)
    make_anchors(cfg.layout.anchors, sv)
    return cfg, sv, tr

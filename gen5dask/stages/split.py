"""``gen5dask split``: region-disjoint train/val/test splits written into every store (DESIGN §6).

Steps:

1. Read the per-sample table (``sample, ra, dec, host_sample, kind, psfsize_r, psfdepth_r,
   theta_e, arc_snr``) of every existing store (train, survey, anchors, hardneg, hosts).
2. Link rows that must share a split into groups: every row with ``host_sample = h`` and the host
   row ``h`` of the host store (injections, controls and null injections go where their host
   goes), and positions closer than ``split.dup_radius_arcsec`` (near duplicates, across stores).
3. Build regions (:func:`gen5dask.regions.build_regions`) from each group's representative
   position (its first row), weighted by the group's row count; every row of a group gets the
   group's region (a near-duplicate group straddling a cell boundary is moved whole into one
   region, so it never straddles splits).
4. Assign whole regions to splits (:func:`gen5dask.regions.assign_splits`), matching the
   fractions and the distributions of ``split.proxies``; write ``region`` and ``split`` into every
   store with ``write_columns`` (holding each store's writer lock).
5. Write ``split/regions.json`` (region -> split, nside, ipix, centre, n, bricks),
   ``split/summary.json`` (fractions, sizes, exact KS per proxy per split pair) and
   ``split/region_map.png``.

Only per-sample scalars are read (never pixels), so the driver's memory is ~100 bytes a sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.config import Config
from gen5dask.provenance import config_hash
from gen5dask.regions import (
    PAIRS,
    SPLIT_NAMES,
    assign_splits,
    build_regions,
    cell_centres,
    ks_report,
    near_duplicate_groups,
    nuniq_to_cell,
    region_histograms,
)
from gen5dask.stages.declare import stage
from gen5dask.store import fingerprint, is_complete, read_table, store_geometry, write_columns
from gen5dask.store.zarrstore import store_lock

_COLUMNS = ("sample", "ra", "dec", "host_sample", "kind", "brickname")


def store_paths(cfg: Config) -> dict[str, Path]:
    """Existing, complete stores the split applies to (name -> path), in a fixed order."""
    lay = cfg.layout
    cands = {
        "train": lay.train,
        "survey": lay.survey,
        "anchors": lay.anchors,
        "hardneg": lay.hardneg,
        "hosts": lay.hosts,
    }
    return {k: p for k, p in cands.items() if p.exists() and is_complete(p)}


def host_store_name(cfg: Config, stores: dict[str, Path]) -> str | None:
    """Name of the store whose ``sample`` ids the train store's ``host_sample`` refers to."""
    hosts = getattr(cfg.inject, "hosts", None)
    if hosts:
        target = Path(str(hosts)).resolve()
        for name, p in stores.items():
            if p.resolve() == target:
                return name
    for name in ("survey", "hosts"):
        if name in stores:
            return name
    return None


def load_rows(stores: dict[str, Path]) -> pd.DataFrame:
    """One row per sample of every store: identity, position, host link and proxies."""
    frames = []
    for name, path in stores.items():
        man = store_geometry(path)
        have = set(man["variables"])
        cols = [c for c in _COLUMNS if c == "sample" or c in have]
        extra = [c for c in ("psfsize", "psfdepth", "theta_e", "arc_snr") if c in have]
        df = read_table(path, cols + extra)
        df.insert(0, "store", name)
        for c in ("psfsize_r", "psfdepth_r", "theta_e", "arc_snr"):
            if c not in df:
                df[c] = np.nan
        if "host_sample" not in df:
            df["host_sample"] = -1
        if "brickname" not in df:
            df["brickname"] = ""
        df["row"] = np.arange(len(df))
        frames.append(
            df[["store", "row", "sample", "ra", "dec", "host_sample", "kind", "brickname",
                "psfsize_r", "psfdepth_r", "theta_e", "arc_snr"]]
        )
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["theta_e_over_psf"] = out["theta_e"] / out["psfsize_r"]
    return out


def group_rows(rows: pd.DataFrame, *, host_store: str | None,
               dup_radius_arcsec: float) -> np.ndarray:
    """Group label per row: host links (``host_sample``) plus near-duplicate positions."""
    n = len(rows)
    hs = rows["host_sample"].to_numpy(np.int64)
    host_rows = (
        (rows["store"] == host_store).to_numpy() if host_store is not None else np.zeros(n, bool)
    )
    ids = np.unique(np.concatenate([hs[hs >= 0], rows["sample"].to_numpy(np.int64)[host_rows]]))
    a_list, b_list = [], []
    sel = np.flatnonzero(hs >= 0)
    a_list.append(sel)
    b_list.append(n + np.searchsorted(ids, hs[sel]))
    hsel = np.flatnonzero(host_rows)
    hsamp = rows["sample"].to_numpy(np.int64)[hsel]
    pos = np.searchsorted(ids, hsamp)
    a_list.append(hsel)
    b_list.append(n + pos)
    links = (np.concatenate(a_list), np.concatenate(b_list))
    return near_duplicate_groups(
        rows["ra"].to_numpy(), rows["dec"].to_numpy(), radius_arcsec=dup_radius_arcsec,
        links=links, n_extra_nodes=ids.size,
    )


def compute_split(rows: pd.DataFrame, cfg: Config, *,
                  host_store: str | None) -> tuple[pd.DataFrame, dict]:
    """Add ``group``, ``cell``, ``region`` and ``split`` columns to ``rows``; return the assignment.

    Pure given the table (no I/O): used by :func:`run_split` and by tests.
    """
    sc = cfg.split
    rows = rows.copy(deep=False)  # new columns only: the caller's table is not modified
    group = group_rows(rows, host_store=host_store, dup_radius_arcsec=sc.dup_radius_arcsec)
    rows["group"] = group
    ng = int(group.max()) + 1 if len(group) else 0
    first = np.full(ng, len(rows), dtype=np.int64)
    np.minimum.at(first, group, np.arange(len(rows)))
    gw = np.bincount(group, minlength=ng).astype(np.float64)
    ra = rows["ra"].to_numpy()
    dec = rows["dec"].to_numpy()
    g_region = build_regions(
        ra[first], dec[first], weights=gw, nside=sc.nside, max_nside=sc.max_nside,
        min_regions=sc.min_regions, max_region_frac=sc.max_region_frac,
    )
    rows["region"] = g_region[group]
    uniq, rinv = np.unique(rows["region"].to_numpy(), return_inverse=True)
    weights = np.bincount(rinv, minlength=uniq.size).astype(np.float64)
    proxies = {p: rows[p].to_numpy(np.float64) if p in rows else np.full(len(rows), np.nan)
               for p in sc.proxies}
    hist = region_histograms(rinv, uniq.size, proxies, sc.ks_bins)
    res = assign_splits(
        uniq, weights, hist=hist, fractions=sc.fractions, min_test_regions=sc.min_test_regions,
        min_val_regions=sc.min_val_regions, n_candidates=sc.n_candidates, seed=cfg.seed,
        fraction_weight=sc.fraction_weight, ks_weight=sc.ks_weight,
    )
    rows["split"] = np.asarray([res["split"][int(r)] for r in uniq])[rinv]
    res["region_weights"] = {int(r): float(w) for r, w in zip(uniq, weights, strict=True)}
    res["n_groups"] = ng
    res["n_multi_row_groups"] = int((gw > 1).sum())
    return rows, res


def region_bricks(region: np.ndarray, brickname: np.ndarray) -> dict[int, list[str]]:
    """Sorted distinct brick names of each region (``{region: [name, ...]}``).

    Factorises the names once and deduplicates ``(region, brick)`` pairs with integer codes
    (no per-row Python); the same lists as a per-region ``sorted(set(...))``.
    """
    codes, names = pd.factorize(pd.Series(brickname).astype(str), sort=True)
    regs, rinv = np.unique(np.asarray(region, dtype=np.int64), return_inverse=True)
    nn = max(len(names), 1)
    key = np.unique(rinv.ravel().astype(np.int64) * nn + codes)
    names = np.asarray(names, dtype=object)
    out: dict[int, list[str]] = {}
    if key.size == 0:
        return out
    rk, ck = key // nn, key % nn
    cut = np.flatnonzero(np.diff(rk)) + 1
    for r_idx, c_idx in zip(np.split(rk, cut), np.split(ck, cut), strict=True):
        out[int(regs[r_idx[0]])] = [str(x) for x in names[c_idx]]
    return out


def split_summary(rows: pd.DataFrame, res: dict, cfg: Config) -> tuple[dict, dict]:
    """``(summary, regions)`` JSON-ready dicts for a computed split."""
    total = len(rows)
    split_arr = rows["split"].to_numpy().astype(str)
    store_arr = rows["store"].to_numpy().astype(str)
    sizes = {s: int(np.count_nonzero(split_arr == s)) for s in SPLIT_NAMES}
    per_store = {}
    for name in pd.unique(store_arr):  # stores in order of appearance, as groupby(sort=False)
        sel = split_arr[store_arr == name]
        per_store[str(name)] = {s: int(np.count_nonzero(sel == s)) for s in SPLIT_NAMES}
    ks = {p: ks_report(rows[p].to_numpy(np.float64), split_arr)
          for p in cfg.split.proxies if p in rows}
    is_train = store_arr == "train"
    ks_train = {p: ks_report(rows[p].to_numpy(np.float64)[is_train], split_arr[is_train])
                for p in cfg.split.proxies if p in rows} if is_train.any() else {}
    reg = res["split"]
    by_split = {s: sorted(r for r, v in reg.items() if v == s) for s in SPLIT_NAMES}
    shares = {r: w / max(total, 1) for r, w in res["region_weights"].items()}
    summary = {
        "seed": cfg.seed,
        "config_hash": config_hash({"split": cfg.split.model_dump(), "seed": cfg.seed}),
        "target_fractions": list(cfg.split.fractions),
        "achieved_fractions": {s: sizes[s] / max(total, 1) for s in SPLIT_NAMES},
        "sizes": sizes,
        "sizes_by_store": per_store,
        "n_regions": len(reg),
        "n_regions_by_split": {s: len(v) for s, v in by_split.items()},
        "regions_by_split": by_split,
        "max_region_frac": max(shares.values()) if shares else None,
        "region_cap": cfg.split.max_region_frac,
        "n_groups": res["n_groups"],
        "n_multi_row_groups": res["n_multi_row_groups"],
        "dup_radius_arcsec": cfg.split.dup_radius_arcsec,
        "score": res["score"],
        "fraction_error": res.get("fraction_error"),
        "binned_ks_sum": res.get("binned_ks"),
        "ks": ks,
        "ks_train_store": ks_train,
        "ks_pairs": [f"{a}_vs_{b}" for a, b in PAIRS],
    }
    uniq = np.asarray(sorted(reg), dtype=np.int64)
    nside, ipix = nuniq_to_cell(uniq)
    cra, cdec = cell_centres(uniq)
    bricks = region_bricks(rows["region"].to_numpy(np.int64), rows["brickname"].to_numpy())
    regions = {
        str(int(r)): {
            "split": reg[int(r)],
            "nside": int(ns),
            "ipix": int(ip),
            "ra_centre": float(a),
            "dec_centre": float(d),
            "n": int(res["region_weights"][int(r)]),
            "frac": shares[int(r)],
            "bricks": bricks.get(int(r), []),
        }
        for r, ns, ip, a, d in zip(uniq, nside, ipix, cra, cdec, strict=True)
    }
    return summary, regions


def region_map_png(rows: pd.DataFrame, regions: dict, path: Path) -> Path:
    """RA/Dec scatter coloured by split with region ids at the cell centres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    m = min(len(rows), 200_000)
    sub = rows.iloc[np.linspace(0, len(rows) - 1, m).astype(int)] if m else rows
    for s, c in colours.items():
        g = sub[sub["split"] == s]
        ax.scatter(g["ra"], g["dec"], s=2, c=c, label=f"{s} ({(rows['split'] == s).sum()})",
                   alpha=0.6, rasterized=True)
    for rid, r in regions.items():
        ax.text(r["ra_centre"], r["dec_centre"], rid, fontsize=6, ha="center", va="center",
                color="k", alpha=0.8)
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    ax.invert_xaxis()
    ax.set_title(f"{len(regions)} regions (HEALPix NUNIQ ids)")
    ax.legend(markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _inputs_hash(stores: dict[str, Path]) -> str:
    return config_hash({k: fingerprint(p) for k, p in stores.items()})


@stage(
    "split",
    reads=("split", "inject.hosts", "seed", "chunk_size"),
    after=("inject", "anchors", "hardneg",),
)
def run_split(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Assign regions and splits to every store; returns ``cfg.layout.split_dir``.

    ``client`` is unused (the work is a few per-sample columns on the driver). Idempotent: when
    ``split/summary.json`` records the same split config, seed and input stores, nothing is
    redone unless ``force``.
    """
    del client
    out = cfg.layout.split_dir
    stores = store_paths(cfg)
    if not stores:
        msg = (
            f"split: no complete store found under {cfg.layout.root} "
            "(expected train.zarr, survey.zarr, anchors.zarr or hardneg.zarr)"
        )
        raise FileNotFoundError(msg)
    chash = config_hash({"split": cfg.split.model_dump(), "seed": cfg.seed})
    ihash = _inputs_hash(stores)
    summary_path = out / "summary.json"
    if not force and summary_path.exists():
        old = json.loads(summary_path.read_text())
        if old.get("config_hash") == chash and old.get("inputs_hash") == ihash:
            return out
    rows = load_rows(stores)
    if rows.empty:
        msg = "split: the stores hold no samples"
        raise ValueError(msg)
    hname = host_store_name(cfg, stores)
    rows, res = compute_split(rows, cfg, host_store=hname)
    summary, regions = split_summary(rows, res, cfg)
    summary["inputs_hash"] = ihash
    summary["host_store"] = hname
    summary["stores"] = {k: str(p) for k, p in stores.items()}
    for name, path in stores.items():
        g = rows[rows["store"] == name].sort_values("row")
        with store_lock(path):
            write_columns(path, {
                "region": g["region"].to_numpy(np.int64).astype(np.int32),
                "split": g["split"].to_numpy().astype(str),
            })
    out.mkdir(parents=True, exist_ok=True)
    (out / "regions.json").write_text(json.dumps(regions, indent=1))
    region_map_png(rows, regions, out / "region_map.png")
    summary_path.write_text(json.dumps(summary, indent=1))
    return out


__all__ = [
    "compute_split",
    "group_rows",
    "host_store_name",
    "load_rows",
    "region_bricks",
    "region_map_png",
    "run_split",
    "split_summary",
    "store_paths",
]

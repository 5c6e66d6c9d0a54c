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

Only per-sample scalars are read (never pixels), and never as a table of strings: the stage
works on a few numeric columns (:class:`SplitColumns`: sample, ra, dec, host_sample and an int8
store code, 33 bytes a row) plus one proxy column at a time, the union-find of the grouping (one
int64 per row, host and position) and int8 split codes, so the driver peak is ~110 bytes a row
above the interpreter (1.34 GB at 10^7 rows, measured by ``scripts/bench_driver.py``); brick
lists are built store by store in blocks of rows.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
    ks_report_codes,
    near_duplicate_groups,
    nuniq_to_cell,
    proxy_histogram,
)
from gen5dask.stages.declare import stage
from gen5dask.store import (
    StoreError,
    fingerprint,
    is_complete,
    read_samples,
    read_table,
    store_geometry,
    write_columns,
)
from gen5dask.store.schema import SPLITS
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


_PROXY_SOURCES = {"psfsize_r": ("psfsize", "r"), "psfdepth_r": ("psfdepth", "r"),
                  "theta_e": ("theta_e", None), "arc_snr": ("arc_snr", None)}
#: numeric per-row columns a proxy may name (the ``load_rows`` table's numeric columns)
PROXY_COLUMNS = ("psfsize_r", "psfdepth_r", "theta_e", "arc_snr", "theta_e_over_psf", "ra",
                 "dec", "sample", "host_sample", "row")
_BRICK_BLOCK = 1_000_000  # rows per block when collecting brick names


@dataclass
class SplitColumns:
    """The numeric per-row columns of every store the split needs, concatenated in store order.

    ``store`` is an int8 index into ``names``; for columns read from stores
    (:func:`load_columns`) ``offsets[k]:offsets[k+1]`` are the rows of store ``names[k]`` (in its
    sample order). ``proxy(name)`` returns one proxy column (float64) or
    ``None`` for a name that is not a per-row numeric column.
    """

    names: list[str]
    offsets: np.ndarray
    store: np.ndarray
    sample: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    host_sample: np.ndarray
    proxy: Callable[[str], np.ndarray | None]
    bricks: Callable[[np.ndarray], dict[int, list[str]]] | None = None

    @property
    def n(self) -> int:
        return int(self.sample.size)


def _store_column(path: Path, man: dict, name: str) -> np.ndarray | None:
    """Float64 values of a proxy source column of one store, or ``None`` if absent."""
    var, band = _PROXY_SOURCES[name]
    if var not in man["variables"]:
        return None
    if band is None:
        return read_samples(path, slice(0, man["n_samples"]), [var])[var].astype(np.float64)
    if band not in man["bands"]:
        return None
    j = man["bands"].index(band)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vals = read_samples(path, slice(0, man["n_samples"]), [var])[var]
    return np.ascontiguousarray(vals[:, j], dtype=np.float64)


def load_columns(stores: dict[str, Path]) -> SplitColumns:
    """:class:`SplitColumns` of every store: four numeric columns read whole, no strings.

    Proxies and brick names are read on demand, one column (or one block of rows) at a time.
    """
    names, sizes, mans = [], [], {}
    parts: dict[str, list[np.ndarray]] = {"sample": [], "ra": [], "dec": [], "host_sample": []}
    for name, path in stores.items():
        man = store_geometry(path)
        mans[name] = man
        n = man["n_samples"]
        have = set(man["variables"])
        cols = ["sample"] + [c for c in ("ra", "dec", "host_sample") if c in have]
        d = read_samples(path, slice(0, n), cols)
        parts["sample"].append(d["sample"].astype(np.int64))
        for c in ("ra", "dec"):
            if c not in d:
                msg = f"{path}: no variable {c!r} (split needs positions)"
                raise StoreError(msg)
            parts[c].append(d[c].astype(np.float64))
        parts["host_sample"].append(d["host_sample"].astype(np.int64) if "host_sample" in d
                                    else np.full(n, -1, dtype=np.int64))
        names.append(name)
        sizes.append(n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    store = np.repeat(np.arange(len(names), dtype=np.int8), sizes)
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    paths = dict(stores)

    def source(var: str) -> np.ndarray:
        out = np.full(int(offsets[-1]), np.nan)
        for k, nm in enumerate(names):
            v = _store_column(paths[nm], mans[nm], var)
            if v is not None:
                out[offsets[k]:offsets[k + 1]] = v
        return out

    def proxy(name: str) -> np.ndarray | None:
        if name in _PROXY_SOURCES:
            return source(name)
        if name == "theta_e_over_psf":
            te = source("theta_e")
            with np.errstate(divide="ignore", invalid="ignore"):
                te /= source("psfsize_r")
            return te
        if name in ("ra", "dec", "sample", "host_sample"):
            return cat[name].astype(np.float64)
        if name == "row":
            return (np.arange(int(offsets[-1])) - offsets[store]).astype(np.float64)
        return None

    def bricks(region: np.ndarray) -> dict[int, list[str]]:
        found: dict[int, set[str]] = {}
        for k, nm in enumerate(names):
            a0, b0 = int(offsets[k]), int(offsets[k + 1])
            has = "brickname" in mans[nm]["variables"]
            for a in range(a0, b0, _BRICK_BLOCK):
                b = min(a + _BRICK_BLOCK, b0)
                reg = region[a:b]
                if has:
                    bn = read_samples(paths[nm], slice(a - a0, b - a0), ["brickname"],
                                      decode=True)["brickname"]
                else:
                    bn = np.full(b - a, "")
                for r, lst in region_bricks(reg, bn).items():
                    found.setdefault(r, set()).update(lst)
        return {r: sorted(v) for r, v in found.items()}

    return SplitColumns(names=names, offsets=offsets, store=store, proxy=proxy, bricks=bricks,
                        **cat)


def columns_from_rows(rows: pd.DataFrame) -> SplitColumns:
    """:class:`SplitColumns` of a :func:`load_rows`-shaped table (tests, small inputs)."""
    names = list(pd.unique(rows["store"].astype(str)))
    code = pd.Categorical(rows["store"].astype(str), categories=names).codes.astype(np.int8)
    sizes = np.bincount(code, minlength=len(names)) if len(names) else np.zeros(0, int)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def proxy(name: str) -> np.ndarray | None:
        return rows[name].to_numpy(np.float64) if name in rows else None

    def bricks(region: np.ndarray) -> dict[int, list[str]]:
        bn = rows["brickname"].to_numpy() if "brickname" in rows else np.full(len(rows), "")
        return region_bricks(region, bn)

    return SplitColumns(
        names=names, offsets=offsets, store=code,
        sample=rows["sample"].to_numpy(np.int64), ra=rows["ra"].to_numpy(np.float64),
        dec=rows["dec"].to_numpy(np.float64), host_sample=rows["host_sample"].to_numpy(np.int64),
        proxy=proxy, bricks=bricks,
    )


def load_rows(stores: dict[str, Path]) -> pd.DataFrame:
    """One row per sample of every store: identity, position, host link and proxies.

    A pandas table for inspection and tests; :func:`run_split` works on
    :func:`load_columns` instead (no string columns).
    """
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


def group_columns(cols: SplitColumns, *, host_store: str | None,
                  dup_radius_arcsec: float) -> np.ndarray:
    """Group label per row: host links (``host_sample``) plus near-duplicate positions."""
    n = cols.n
    hs = cols.host_sample
    if host_store is not None and host_store in cols.names:
        hsel = np.flatnonzero(cols.store == cols.names.index(host_store))
    else:
        hsel = np.zeros(0, dtype=np.int64)
    sel = np.flatnonzero(hs >= 0)
    ids = np.unique(np.concatenate([hs[sel], cols.sample[hsel]]))
    a = np.concatenate([sel, hsel])
    b = n + np.searchsorted(ids, np.concatenate([hs[sel], cols.sample[hsel]]))
    del sel, hsel
    return near_duplicate_groups(cols.ra, cols.dec, radius_arcsec=dup_radius_arcsec,
                                 links=(a, b), n_extra_nodes=ids.size)


def group_rows(rows: pd.DataFrame, *, host_store: str | None,
               dup_radius_arcsec: float) -> np.ndarray:
    """Group label per row of a :func:`load_rows` table (see :func:`group_columns`)."""
    return group_columns(columns_from_rows(rows), host_store=host_store,
                         dup_radius_arcsec=dup_radius_arcsec)


def assign_columns(cols: SplitColumns, cfg: Config, *,
                   host_store: str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(region, split_code, assignment)`` of every row (int64 NUNIQ ids, int8 codes).

    ``split_code`` indexes :data:`gen5dask.regions.SPLIT_NAMES`. Pure given the columns.
    """
    sc = cfg.split
    n = cols.n
    group = group_columns(cols, host_store=host_store, dup_radius_arcsec=sc.dup_radius_arcsec)
    ng = int(group.max()) + 1 if n else 0
    # groups are numbered by first appearance: the first row of group g is where it first occurs
    first = np.flatnonzero(np.r_[True, group[1:] > np.maximum.accumulate(group)[:-1]])
    gw = np.bincount(group, minlength=ng).astype(np.float64)
    g_region = build_regions(
        cols.ra[first], cols.dec[first], weights=gw, nside=sc.nside, max_nside=sc.max_nside,
        min_regions=sc.min_regions, max_region_frac=sc.max_region_frac,
    )
    del first
    region = g_region[group]
    del group, g_region
    uniq, rinv = np.unique(region, return_inverse=True)
    rinv = rinv.ravel()
    weights = np.bincount(rinv, minlength=uniq.size).astype(np.float64)
    hist = np.zeros((uniq.size, len(sc.proxies), sc.ks_bins))
    for j, p in enumerate(sc.proxies):
        vals = cols.proxy(p)
        if vals is not None:
            hist[:, j, :] = proxy_histogram(rinv, uniq.size, vals, sc.ks_bins)
        del vals
    res = assign_splits(
        uniq, weights, hist=hist, fractions=sc.fractions, min_test_regions=sc.min_test_regions,
        min_val_regions=sc.min_val_regions, n_candidates=sc.n_candidates, seed=cfg.seed,
        fraction_weight=sc.fraction_weight, ks_weight=sc.ks_weight,
    )
    reg_code = np.asarray([SPLIT_NAMES.index(res["split"][int(r)]) for r in uniq], dtype=np.int8)
    split_code = reg_code[rinv]
    res["region_weights"] = {int(r): float(w) for r, w in zip(uniq, weights, strict=True)}
    res["n_groups"] = ng
    res["n_multi_row_groups"] = int((gw > 1).sum())
    return region, split_code, res


def compute_split(rows: pd.DataFrame, cfg: Config, *,
                  host_store: str | None) -> tuple[pd.DataFrame, dict]:
    """Add ``group``, ``region`` and ``split`` columns to a :func:`load_rows` table.

    Pure given the table (no I/O); the same assignment as :func:`assign_columns` on the
    columns of the stores (row order matters: a group's first row is its representative).
    """
    cols = columns_from_rows(rows)
    region, code, res = assign_columns(cols, cfg, host_store=host_store)
    out = rows.copy(deep=False)  # new columns only: the caller's table is not modified
    out["group"] = group_columns(cols, host_store=host_store,
                                 dup_radius_arcsec=cfg.split.dup_radius_arcsec)
    out["region"] = region
    out["split"] = np.asarray(SPLIT_NAMES)[code]
    return out, res


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


def summarize_columns(cols: SplitColumns, region: np.ndarray, split_code: np.ndarray,
                      res: dict, cfg: Config) -> tuple[dict, dict]:
    """``(summary, regions)`` JSON-ready dicts of a computed split (one proxy at a time)."""
    total = cols.n
    counts = np.bincount(cols.store.astype(np.int64) * 3 + split_code,
                         minlength=3 * len(cols.names)).reshape(len(cols.names), 3)
    sizes = {s: int(counts[:, j].sum()) for j, s in enumerate(SPLIT_NAMES)}
    per_store = {nm: {s: int(counts[k, j]) for j, s in enumerate(SPLIT_NAMES)}
                 for k, nm in enumerate(cols.names) if counts[k].sum() > 0}
    ks, ks_train = {}, {}
    is_train = (cols.store == cols.names.index("train")) if "train" in cols.names else None
    for p in cfg.split.proxies:
        vals = cols.proxy(p)
        if vals is None:
            continue
        ks[p] = ks_report_codes(vals, split_code)
        if is_train is not None and is_train.any():
            ks_train[p] = ks_report_codes(vals[is_train], split_code[is_train])
        del vals
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
    bricks = cols.bricks(region) if cols.bricks is not None else {}
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


def split_summary(rows: pd.DataFrame, res: dict, cfg: Config) -> tuple[dict, dict]:
    """``(summary, regions)`` of a :func:`compute_split` table (see :func:`summarize_columns`)."""
    code = np.full(len(rows), -1, dtype=np.int8)
    sp = rows["split"].to_numpy().astype(str)
    for k, s in enumerate(SPLIT_NAMES):
        code[sp == s] = k
    return summarize_columns(columns_from_rows(rows), rows["region"].to_numpy(np.int64), code,
                             res, cfg)


def region_map_png(ra: np.ndarray, dec: np.ndarray, split_code: np.ndarray, regions: dict,
                   path: Path) -> Path:
    """RA/Dec scatter (at most 200,000 evenly spaced rows) coloured by split, with region ids
    at the cell centres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    n = int(np.asarray(ra).size)
    m = min(n, 200_000)
    idx = np.linspace(0, n - 1, m).astype(int) if m else np.zeros(0, int)
    counts = np.bincount(np.asarray(split_code, dtype=np.int64)[split_code >= 0], minlength=3)
    for j, (s, c) in enumerate(colours.items()):
        sel = idx[split_code[idx] == j]
        ax.scatter(ra[sel], dec[sel], s=2, c=c, label=f"{s} ({counts[j]})", alpha=0.6,
                   rasterized=True)
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

    ``client`` is unused (a few numeric per-sample columns on the driver). Idempotent: when
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
    cols = load_columns(stores)
    if cols.n == 0:
        msg = "split: the stores hold no samples"
        raise ValueError(msg)
    hname = host_store_name(cfg, stores)
    region, code, res = assign_columns(cols, cfg, host_store=hname)
    summary, regions = summarize_columns(cols, region, code, res, cfg)
    summary["inputs_hash"] = ihash
    summary["host_store"] = hname
    summary["stores"] = {k: str(p) for k, p in stores.items()}
    # the split as its store legend code (SPLITS: '', train, val, test): no per-row strings
    to_store = np.asarray([SPLITS.index(s) for s in SPLIT_NAMES], dtype=np.int8)
    for k, name in enumerate(cols.names):
        sl = slice(int(cols.offsets[k]), int(cols.offsets[k + 1]))
        with store_lock(stores[name]):
            write_columns(stores[name], {"region": region[sl].astype(np.int32),
                                         "split": to_store[code[sl]]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "regions.json").write_text(json.dumps(regions, indent=1))
    region_map_png(cols.ra, cols.dec, code, regions, out / "region_map.png")
    summary_path.write_text(json.dumps(summary, indent=1))
    return out


__all__ = [
    "PROXY_COLUMNS",
    "SplitColumns",
    "assign_columns",
    "columns_from_rows",
    "compute_split",
    "group_columns",
    "group_rows",
    "host_store_name",
    "load_columns",
    "load_rows",
    "region_bricks",
    "region_map_png",
    "run_split",
    "split_summary",
    "summarize_columns",
    "store_paths",
]

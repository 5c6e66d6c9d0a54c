"""``gen5dask audit``: diagnostics before training and the gates that block ``train``.

Writes ``cfg.layout.audit_dir/audit.json`` (all diagnostics), figures in the same folder, and
``cfg.layout.gates_json`` (a list of ``{name, passed, blocking, value, threshold, detail}``, see
:mod:`gen5dask.gates`).

Pixel work runs per store chunk on Dask (``map_chunks``): tasks open the stores themselves,
write per-sample scalars (mask fractions, invvar medians, core brightness) into scratch columns
(:mod:`gen5dask.columns`) and return counts, or return the core-pixel features of a bounded,
keyed subsample, so neither pixels nor per-sample tables are gathered on the driver: every
statistic reads the one or two columns it needs (integer codes for ``kind``/``split``), so the
driver holds a few columns at a time, not a table of ~30 columns and strings per sample.
The audit always recomputes from the current stores (it is a read-only check; ``force`` is
accepted for the stage convention).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from gen5dask import gates as G
from gen5dask.columns import StoreColumns, create_scratch
from gen5dask.config import Config
from gen5dask.groupstats import auc_by_ranks, class_means, effect_sizes_by_code
from gen5dask.kernels.photometry import MASKBITS
from gen5dask.splitgates import SplitRows, split_gates_columns
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.stages.split import host_store_name, store_paths
from gen5dask.store import chunk_bounds, read_samples, store_geometry

BIT_NAMES = tuple(sorted(MASKBITS, key=MASKBITS.get))


# ------------------------------------------------------------------------------ chunk tasks


def _diag_chunk(index: int, path: str, r_band: int, radius: float, annulus: tuple,
                scratch: str) -> dict:
    """Task: per-sample scalar diagnostics of one chunk, written to the scratch columns.

    Returns only counts (no per-sample arrays travel back to the driver): samples, the
    wrap-around sum of their ids (the driver checks it against the store), samples with a
    non-finite image or invvar, with a band without data, with a bad PSF size.
    """
    from gen5dask.columns import write_scratch
    from gen5dask.kernels.photometry import bad_pixel_frac, core_brightness, wise_mask_frac

    man = store_geometry(path)
    a, b = chunk_bounds(man["n_samples"], man["chunk_size"])[index]
    names = ["sample", "image", "invvar", "maskbits"]
    if "psfsize" in man["variables"]:
        names.append("psfsize")
    d = read_samples(path, slice(a, b), names)
    img, iv, mb = d["image"], d["invvar"], d["maskbits"]
    n = img.shape[0]
    bits = np.stack(
        [((mb >> MASKBITS[name]) & 1).reshape(n, -1).mean(axis=1) for name in BIT_NAMES], axis=1
    ) if n else np.zeros((0, len(BIT_NAMES)))
    finite_img = np.isfinite(img).reshape(n, -1).all(axis=1)
    finite_iv = np.isfinite(iv).reshape(n, -1).all(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ivm = np.nanmedian(np.where(np.isfinite(iv), iv, np.nan).reshape(n, iv.shape[1], -1),
                           axis=2) if n else np.zeros((0, iv.shape[1]))
    band_missing = (np.nan_to_num(iv, nan=0.0) <= 0).reshape(n, iv.shape[1], -1).all(axis=2)
    if r_band >= 0 and n:
        cb = core_brightness(img[:, r_band], radius_pix=radius, annulus=tuple(annulus))
        core, excess = cb.median_core, cb.excess_sum
    else:
        core = excess = np.full(n, np.nan)
    cols = {
        "bad_pixel_frac": bad_pixel_frac(mb) if n else np.zeros(0),
        "wise_mask_frac": wise_mask_frac(mb) if n else np.zeros(0),
        "core_brightness": np.asarray(core, dtype=np.float64),
        "core_excess": np.asarray(excess, dtype=np.float64),
        **{f"bitfrac_{nm}": bits[:, j] for j, nm in enumerate(BIT_NAMES)},
        **{f"invvar_median_{band}": ivm[:, j] for j, band in enumerate(man["bands"])},
    }
    write_scratch(scratch, a, cols)
    if "psfsize" in d:
        v = np.asarray(d["psfsize"], dtype=np.float64)
        psf_bad = int((~(np.isfinite(v) & (v > 0))).any(axis=1).sum())
    else:
        psf_bad = 0
    return {
        "n": n,
        "sample_sum": int(d["sample"].astype(np.uint64).sum(dtype=np.uint64)),
        "nonfinite": int((~(finite_img & finite_iv)).sum()),
        "band_missing": int(band_missing.any(axis=1).sum()),
        "psf_bad": psf_bad,
    }


def _null_chunk(index: int, train_path: str, host_path: str, pairs: dict) -> dict:
    """Task: bitwise comparison of the chunk's null injections with their hosts."""
    rows, host_rows = pairs.get(index, (np.zeros(0, int), np.zeros(0, int)))
    if len(rows) == 0:
        return {"n": 0, "image_mismatch": [], "invvar_mismatch": []}
    order = np.argsort(host_rows, kind="stable")
    t = read_samples(train_path, np.asarray(rows)[order], ["sample", "image", "invvar"])
    h = read_samples(host_path, np.asarray(host_rows)[order], ["sample", "image", "invvar"])
    n = len(rows)
    ti = np.ascontiguousarray(t["image"]).view(np.uint32).reshape(n, -1)
    hi = np.ascontiguousarray(h["image"]).view(np.uint32).reshape(n, -1)
    tv = np.ascontiguousarray(t["invvar"]).view(np.uint32).reshape(n, -1)
    hv = np.ascontiguousarray(h["invvar"]).view(np.uint32).reshape(n, -1)
    bad_img = ~(ti == hi).all(axis=1)
    bad_iv = ~(tv == hv).all(axis=1)
    return {"n": n, "image_mismatch": t["sample"][bad_img].tolist(),
            "invvar_mismatch": t["sample"][bad_iv].tolist()}


def _core_chunk(index: int, path: str, rows_by_chunk: dict, r_band: int, radius: float) -> dict:
    """Task: normalised r-band core pixels (r < radius) of the selected rows of one chunk."""
    from gen5dask.kernels.geometry import radius_grid
    from gen5dask.kernels.normalize import normalize_stamps

    rows = np.asarray(rows_by_chunk.get(index, []), dtype=np.int64)
    if rows.size == 0:
        return {"rows": rows, "x": np.zeros((0, 0), np.float32)}
    d = read_samples(path, rows, ["image"])
    r = d["image"][:, r_band]
    z = normalize_stamps(r)
    H, W = r.shape[-2:]
    core = radius_grid(H, W) < radius
    return {"rows": rows, "x": z[:, core].astype(np.float32)}


# ------------------------------------------------------------------------------ driver helpers


def diag_columns(bands) -> list[str]:
    """Names of the per-sample diagnostic columns the chunk tasks write (float64 each)."""
    return ["bad_pixel_frac", "wise_mask_frac", "core_brightness", "core_excess",
            *(f"bitfrac_{b}" for b in BIT_NAMES), *(f"invvar_median_{b}" for b in bands)]


def store_diagnostics(path: Path, cfg: Config, client=None, *,
                      scratch: Path) -> tuple[StoreColumns, dict]:
    """Per-sample diagnostics of a store as columns; returns ``(columns, counts)``.

    The chunk tasks write the diagnostics into ``.npy`` scratch columns under ``scratch``
    (one float64 per sample and column; see :func:`diag_columns`) and return counts only, so
    the driver holds no per-sample table. ``counts``: ``nonfinite``, ``band_missing`` and
    ``psf_bad`` sample counts (``None`` for an empty store).
    """
    man = store_geometry(path)
    n = man["n_samples"]
    bounds = chunk_bounds(n, man["chunk_size"])
    create_scratch(scratch, n, {c: ("f8", ()) for c in diag_columns(man["bands"])})
    cols = StoreColumns(path, scratch)
    r_band = man["bands"].index("r") if "r" in man["bands"] else -1
    res = map_chunks(_diag_chunk, range(len(bounds)), str(path), r_band,
                     cfg.audit.brightness_radius_pix, tuple(cfg.audit.brightness_annulus_pix),
                     str(scratch), client=client, desc=f"audit {path.name}",
                     progress=cfg.cluster.progress)
    if not res:
        return cols, {"nonfinite": None, "band_missing": None, "psf_bad": 0}
    ids = cols.get("sample").astype(np.uint64)
    starts = np.asarray([a for a, _ in bounds], dtype=np.int64)
    want = np.add.reduceat(ids, starts, dtype=np.uint64) if ids.size else np.zeros(0, np.uint64)
    del ids
    if [int(x) for x in want] != [r["sample_sum"] for r in res]:
        msg = f"{path}: sample ids changed while auditing"
        raise RuntimeError(msg)
    return cols, {k: int(sum(r[k] for r in res)) for k in ("nonfinite", "band_missing",
                                                           "psf_bad")}


def _balance_quantities(cols: StoreColumns) -> list[str]:
    q = ["bad_pixel_frac", "wise_mask_frac", *(f"bitfrac_{b}" for b in BIT_NAMES),
         *(f"invvar_median_{b}" for b in cols.bands), "psfsize_r", "psfdepth_r"]
    return [c for c in q if cols.has(c)]


def _kinds(cols: StoreColumns) -> tuple[np.ndarray, tuple[str, ...]]:
    return cols.codes("kind")


def class_balance(cols: StoreColumns) -> tuple[dict, dict]:
    """Effect sizes by label (injection vs control rows) and by kind of the audit quantities.

    One quantity column at a time (:func:`gen5dask.groupstats.effect_sizes_by_code`).
    """
    kind, legend = _kinds(cols)
    sel = np.isin(kind, [legend.index("injection"), legend.index("control")])
    label = cols.get("label")[sel]
    lab_vals, lab_code = np.unique(label, return_inverse=True)
    lab_names = [str(v) for v in lab_vals]
    by_label, by_kind = {}, {}
    for q in _balance_quantities(cols):
        v = cols.get(q).astype(np.float64)
        if sel.any() and lab_vals.size > 1:
            by_label[q] = effect_sizes_by_code(v[sel], lab_code, lab_names)
        by_kind[q] = effect_sizes_by_code(v, kind, legend)
        del v
    return by_label, by_kind


def _numeric(cols: StoreColumns, name: str) -> np.ndarray | None:
    if cols.has(name):
        return cols.get(name)
    if name in ("host_sample", "region"):
        return np.full(cols.n, -1)
    return None


def leakage_aucs(cols: StoreColumns, columns) -> dict:
    """AUC of each metadata column alone for the label (injection vs control rows).

    :func:`gen5dask.groupstats.auc_by_ranks` (exact integer Mann-Whitney sums; sklearn's
    ``roc_auc_score`` up to rounding, ~20x slower at 10^7 rows).
    """
    kind, legend = _kinds(cols)
    sel = np.isin(kind, [legend.index("injection"), legend.index("control")])
    y_all = cols.get("label")[sel].astype(int)
    out = {}
    for c in columns:
        vals = _numeric(cols, c)
        if vals is None:
            continue
        x = vals[sel].astype(np.float64)
        del vals
        ok = np.isfinite(x)
        if ok.sum() < 4 or np.unique(y_all[ok]).size < 2:
            out[c] = None
            continue
        out[c] = float(auc_by_ranks(y_all[ok], x[ok]))
    return out


def maskbit_fractions_by_kind(cols: StoreColumns) -> dict:
    """Mean mask-bit fraction of each bit per kind: ``{kind: {"bitfrac_<bit>": mean}}``."""
    kind, legend = _kinds(cols)
    per_bit = {f"bitfrac_{b}": class_means(cols.get(f"bitfrac_{b}"), kind, legend)
               for b in BIT_NAMES if cols.has(f"bitfrac_{b}")}
    kinds = sorted({k for m in per_bit.values() for k in m})
    return {k: {c: m[k] for c, m in per_bit.items()} for k in kinds}


def keyed_subsample(ids: np.ndarray, n_keep: int, seed: int, what: str) -> np.ndarray:
    """Boolean mask keeping ``n_keep`` of ``ids`` chosen by keyed uniforms (order-free).

    The ``n_keep`` ids with the smallest uniform keyed by (seed, ``audit/<what>``, id) are
    kept, so the choice does not depend on row order or chunking (vectorised: ~50 ns an id).
    """
    from gen5dask.kernels.rng import keys_for, stage_id, uniforms

    ids = np.asarray(ids, dtype=np.int64)
    if ids.size <= n_keep:
        return np.ones(ids.size, dtype=bool)
    keys = keys_for(np.int64(seed), np.uint64(stage_id(f"audit/{what}")), ids, 0, 0)
    u = uniforms(keys, 0)
    keep = np.zeros(ids.size, dtype=bool)
    keep[np.argsort(u, kind="stable")[:n_keep]] = True
    return keep


def core_only_baseline(path: Path, cols: StoreColumns, cfg: Config, client=None) -> dict:
    """Logistic regression on normalised r-band core pixels: injections (per mode) vs controls.

    Held-out AUC on val+test when the splits give both classes in train and held-out rows;
    otherwise cross-validated AUC with folds grouped by host (a host never in two folds).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ac = cfg.audit
    man = store_geometry(path)
    if "r" not in man["bands"]:
        return {}
    kind, klegend = _kinds(cols)
    mode_code, mlegend = cols.codes("inject_mode")
    is_inj = kind == klegend.index("injection")
    ctrl = np.flatnonzero(kind == klegend.index("control"))
    modes = sorted(mlegend[int(m)] for m in np.unique(mode_code[is_inj]))
    if ctrl.size == 0 or not modes:
        return {}
    samples = cols.get("sample").astype(np.int64)
    ctrl = ctrl[keyed_subsample(samples[ctrl], ac.core_only_max_samples, cfg.seed,
                                "core/control")]
    chosen = {"control": ctrl}
    for m in modes:
        inj = np.flatnonzero(is_inj & (mode_code == mlegend.index(m)))
        chosen[m] = inj[keyed_subsample(samples[inj], ac.core_only_max_samples, cfg.seed,
                                        f"core/{m}")]
    del kind, mode_code, is_inj
    rows = np.unique(np.concatenate(list(chosen.values())))
    split_code, slegend = cols.codes("split")
    split_of = np.asarray(slegend)[split_code[rows]]
    host_of = _numeric(cols, "host_sample")[rows].astype(np.int64)
    sample_of = samples[rows]
    del split_code, samples
    bounds = chunk_bounds(man["n_samples"], man["chunk_size"])
    starts = np.asarray([a for a, _ in bounds])
    which = np.searchsorted(starts, rows, side="right") - 1
    by_chunk = {int(c): rows[which == c] for c in np.unique(which)}
    res = map_chunks(_core_chunk, sorted(by_chunk), str(path), by_chunk,
                     man["bands"].index("r"), ac.core_radius_pix, client=client,
                     desc="audit core-only", progress=cfg.cluster.progress)
    feat_rows = np.concatenate([r["rows"] for r in res])
    X_all = np.concatenate([r["x"] for r in res])
    pos_of = {int(r): i for i, r in enumerate(feat_rows)}
    out = {}
    for m in modes:
        idx = np.concatenate([chosen["control"], chosen[m]])
        at = np.searchsorted(rows, idx)
        X = X_all[[pos_of[int(i)] for i in idx]]
        y = np.r_[np.zeros(chosen["control"].size), np.ones(chosen[m].size)].astype(int)
        split = split_of[at]
        groups = np.where(host_of[at] >= 0, host_of[at], sample_of[at])

        def model():
            return make_pipeline(StandardScaler(),
                                 LogisticRegression(C=ac.core_only_c, max_iter=2000))

        tr = split == "train"
        ho = np.isin(split, ["val", "test"])
        rec = {"n_control": int(chosen["control"].size), "n_injection": int(chosen[m].size),
               "n_features": int(X.shape[1]), "core_radius_pix": ac.core_radius_pix}
        if (np.unique(y[tr]).size == 2 and np.unique(y[ho]).size == 2
                and tr.sum() >= 10 and ho.sum() >= 4):
            clf = model().fit(X[tr], y[tr])
            rec["auc"] = float(roc_auc_score(y[ho], clf.predict_proba(X[ho])[:, 1]))
            rec["method"] = "train split -> val+test"
            rec["n_train"], rec["n_heldout"] = int(tr.sum()), int(ho.sum())
        else:
            k = min(ac.core_only_folds, np.unique(groups).size)
            if k < 2 or np.bincount(y).min() < k:
                rec["auc"] = None
                rec["method"] = "too few samples"
            else:
                score = np.zeros(y.size)
                for a, b in GroupKFold(n_splits=k).split(X, y, groups):
                    if np.unique(y[a]).size < 2:
                        score[b] = 0.5
                        continue
                    score[b] = model().fit(X[a], y[a]).predict_proba(X[b])[:, 1]
                rec["auc"] = float(roc_auc_score(y, score))
                rec["method"] = f"{k}-fold CV grouped by host"
        out[m] = rec
    return out


def null_injection_check(train: Path, host: Path | None, cols: StoreColumns,
                         client=None) -> dict:
    """Bitwise comparison of every null injection with its host (image and invvar)."""
    kind, legend = _kinds(cols)
    nulls = np.flatnonzero(kind == legend.index("null_injection"))
    del kind
    if nulls.size == 0:
        return {"n": 0, "evaluated": False, "why": "no null injections in the training store"}
    if host is None:
        return {"n": int(nulls.size), "evaluated": False, "why": "host store not found"}
    hid = read_samples(host, slice(0, store_geometry(host)["n_samples"]), ["sample"])["sample"]
    hid = hid.astype(np.int64)
    order = np.argsort(hid)
    want = _numeric(cols, "host_sample")[nulls].astype(np.int64)
    pos = np.searchsorted(hid[order], want)
    found = (pos < hid.size) & (hid[order][np.minimum(pos, hid.size - 1)] == want)
    missing = cols.get("sample").astype(np.int64)[nulls[~found]].tolist()
    host_rows = order[np.minimum(pos, hid.size - 1)]
    man = store_geometry(train)
    starts = np.asarray([a for a, _ in chunk_bounds(man["n_samples"], man["chunk_size"])])
    rows = nulls[found]
    hrows = host_rows[found]
    which = np.searchsorted(starts, rows, side="right") - 1
    pairs = {int(c): (rows[which == c], hrows[which == c]) for c in np.unique(which)}
    res = map_chunks(_null_chunk, sorted(pairs), str(train), str(host), pairs, client=client,
                     desc="audit null injections", progress=False)
    img_bad = [s for r in res for s in r["image_mismatch"]]
    iv_bad = [s for r in res for s in r["invvar_mismatch"]]
    return {"n": int(nulls.size), "evaluated": True, "n_compared": int(sum(r["n"] for r in res)),
            "host_missing": missing, "image_mismatch": img_bad, "invvar_mismatch": iv_bad,
            "host_store": str(host)}


def loader_check(train: Path, cfg: Config) -> dict:
    """One epoch of a small training selection through the trainer's loader with
    ``audit.loader_workers`` workers; returns the gate."""
    try:
        from gen5dask.train import dataset as ds
    except Exception as exc:  # noqa: BLE001 - any import failure means "not evaluated"
        return G.not_evaluated("loader_once_per_epoch", f"gen5dask.train.dataset: {exc}")
    table = ds.store_table(train)
    mask = ds.select_rows(table, kinds=["injection", "control"], splits=["train"])
    if not mask.any():
        mask = ds.select_rows(table, kinds=["injection", "control"])
    rows = np.flatnonzero(mask)[: cfg.audit.loader_samples]
    keep = np.zeros(len(table), dtype=bool)
    keep[rows] = True
    sel = ds.selection_from_table(train, table, keep, name="audit")
    stream = ds.StampStream([sel], batch_size=8, seed=cfg.seed, shuffle=True, shuffle_buffer=8)
    stream.set_epoch(0)
    loader = ds.make_loader(stream, num_workers=cfg.audit.loader_workers)
    seen = [b["sample"].numpy() for b in loader]
    seen_ids = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    return G.loader_once_gate(seen_ids, sel.sample, num_workers=cfg.audit.loader_workers)


#: largest population the brightness comparison takes (a keyed subsample beyond it): its
#: bootstrap and Anderson-Darling permutations hold ~35 KB per sample (n_boot = 1000), i.e.
#: ~90 GB for the 2.5M hosts of a 10^7-row catalogue; 10,000 keep the driver under ~0.7 GB
#: and measure a median to ~1 % (the anchor and stress samples are far smaller).
BRIGHTNESS_MAX_SAMPLES = 10_000


def brightness_populations(diag: dict[str, StoreColumns], *, seed: int = 0,
                           max_samples: int | None = BRIGHTNESS_MAX_SAMPLES
                           ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Core brightness (r band, nanomaggies/pixel) of training hosts, anchors and stress.

    Returns ``(populations, totals)``: each population is a keyed subsample
    (:func:`keyed_subsample` by sample id, ``audit/brightness/<name>``) of at most
    ``max_samples`` (``None``: all); ``totals`` are the full sizes.
    """
    totals: dict[str, int] = {}

    def take(store: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        c = diag.get(store)
        if c is None or not c.has("core_brightness"):
            return np.zeros(0), np.zeros(0, np.int64)
        code, legend = _kinds(c)
        sel = code == legend.index(kind)
        if not sel.any():
            return np.zeros(0), np.zeros(0, np.int64)
        return (c.get("core_brightness").astype(np.float64)[sel],
                c.get("sample").astype(np.int64)[sel])

    def first(*cands: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        for store, kind in cands:
            v, ids = take(store, kind)
            if v.size:
                return v, ids
        return np.zeros(0), np.zeros(0, np.int64)

    pops = {}
    for name, cands in (("hosts", (("survey", "host"), ("hosts", "host"), ("train", "control"))),
                        ("anchors", (("anchors", "anchor"), ("survey", "anchor"))),
                        ("stress", (("anchors", "stress"), ("survey", "stress")))):
        v, ids = first(*cands)
        totals[name] = int(v.size)
        if max_samples is not None and v.size > max_samples:
            v = v[keyed_subsample(ids, max_samples, seed, f"brightness/{name}")]
        pops[name] = v
    return pops, totals


def _figures(out: Path, pops: dict, leak: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    try:
        from gen5dask.evaluate.plots import brightness_png

        brightness_png({k: v for k, v in pops.items() if v.size}, path=out / "brightness.png")
        files.append("brightness.png")
    except Exception:  # noqa: BLE001 - the plot helper is optional; fall back to a histogram
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, v in pops.items():
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
                ax.hist(np.log10(v), bins=30, histtype="step", label=f"{k} (n={v.size})")
        ax.set_xlabel("log10 core brightness (nmgy/pixel, r < 8 px)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "brightness.png", dpi=100)
        plt.close(fig)
        files.append("brightness.png")
    vals = {k: v for k, v in leak.items() if v is not None}
    if vals:
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(vals) + 1.2))
        ax.barh(list(vals), [v - 0.5 for v in vals.values()], left=0.5)
        ax.axvline(0.5, color="k", lw=0.8)
        ax.set_xlabel("single-column AUC for the label")
        fig.tight_layout()
        fig.savefig(out / "leakage.png", dpi=100)
        plt.close(fig)
        files.append("leakage.png")
    return files


def split_rows(diag: dict[str, StoreColumns], host_store: str | None) -> SplitRows:
    """Every store's split columns, concatenated (store order), for the split gates."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sample", "ra", "dec", "host_sample",
                                                          "region", "split", "is_host_store")}
    for name, c in diag.items():
        parts["sample"].append(c.get("sample").astype(np.int64))
        parts["ra"].append(c.get("ra").astype(np.float64))
        parts["dec"].append(c.get("dec").astype(np.float64))
        parts["host_sample"].append(_numeric(c, "host_sample").astype(np.int64))
        parts["region"].append(_numeric(c, "region").astype(np.int64))
        parts["split"].append(c.codes("split")[0])
        parts["is_host_store"].append(np.full(c.n, name == host_store))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    return SplitRows(**cat)


def audit(cfg: Config, client=None) -> tuple[dict, list[dict]]:
    """Compute every diagnostic and gate; returns ``(audit_dict, gates)`` (no files written)."""
    from gen5dask.evaluate.stats import compare_populations

    gc, lay = cfg.gates, cfg.layout
    stores = store_paths(cfg)
    scratch = lay.audit_dir / "_columns"
    diag, counts = {}, {}
    for name, p in stores.items():
        diag[name], counts[name] = store_diagnostics(p, cfg, client, scratch=scratch / name)
    result: dict = {"stores": {k: {"path": str(p), "n": diag[k].n} for k, p in stores.items()}}
    gates: list[dict] = []

    gates.append(G.anchor_coordinates_gate(lay.anchors_csv, lay.anchors_rejected_csv,
                                           max_sep_arcsec=gc.anchor_max_sep_arcsec))
    gates.append(G.psf_convolution_gate(fwhm_pix=gc.psf_test_fwhm_pix,
                                        centroid_tol_pix=gc.psf_centroid_tol_pix,
                                        flux_tol=gc.psf_flux_tol))
    train = stores.get("train")
    hname = host_store_name(cfg, stores)
    # null injection
    if train is not None:
        nres = null_injection_check(train, stores.get(hname) if hname else None, diag["train"],
                                    client)
        result["null_injection"] = nres
        if nres["evaluated"]:
            bad = len(nres["image_mismatch"]) + len(nres["host_missing"])
            gates.append(G.gate("null_injection", bad == 0, value=bad, threshold=0,
                                detail=nres))
        else:
            gates.append(G.not_evaluated("null_injection", nres["why"]))
    else:
        gates.append(G.not_evaluated("null_injection", "no training store"))
    # core-only baseline
    if train is not None:
        core = core_only_baseline(train, diag["train"], cfg, client)
        result["core_only"] = core
        gates.append(G.core_only_gate(core, mode=gc.core_only_mode, max_auc=gc.core_only_max_auc))
    else:
        gates.append(G.not_evaluated("core_only_auc", "no training store"))
    # splits
    gates.extend(split_gates_columns(split_rows(diag, hname),
                                     dup_radius_arcsec=cfg.split.dup_radius_arcsec,
                                     max_region_frac=cfg.split.max_region_frac,
                                     min_test_regions=cfg.split.min_test_regions))
    # pixels, PSF, bands
    finite = {k: c["nonfinite"] for k, c in counts.items() if c["nonfinite"] is not None}
    gates.append(G.count_gate("finite_pixels", finite, what="samples with NaN/inf image or invvar"))
    psf_bad = {k: c["psf_bad"] for k, c in counts.items()}
    gates.append(G.count_gate("psf_positive", psf_bad,
                              what="samples with a non-finite or <= 0 psfsize"))
    bands = {k: store_geometry(p)["bands"] for k, p in stores.items()}
    missing = {k: c["band_missing"] for k, c in counts.items() if c["band_missing"] is not None}
    gates.append(G.bandset_gate(bands, missing, {k: c.n for k, c in diag.items()},
                                expected=cfg.bands, max_missing_frac=gc.bandset_max_missing_frac))
    result["bandset"] = {"bands": bands, "samples_missing_a_band": missing}
    result["finite_pixels"] = finite
    result["psf_positive"] = psf_bad
    # class balance, leakage (training store)
    if train is not None:
        by_label, by_kind = class_balance(diag["train"])
        result["by_label"], result["by_kind"] = by_label, by_kind
        gates.append(G.class_balance_gate(by_label,
                                          max_abs_delta=gc.class_balance_max_cliffs_delta))
        leak = leakage_aucs(diag["train"], cfg.audit.leakage_columns)
        result["leakage"] = leak
        gates.append(G.leakage_gate(leak, max_dev=gc.leakage_max_auc_dev))
    else:
        leak = {}
        gates.append(G.not_evaluated("class_balance_conditions", "no training store"))
        gates.append(G.not_evaluated("metadata_leakage", "no training store"))
    result["by_kind_all_stores"] = {}
    for k, c in diag.items():
        if k != "train":
            result["by_kind_all_stores"][k] = class_balance(c)[1]
    result["maskbit_fractions_by_kind"] = {k: maskbit_fractions_by_kind(c)
                                           for k, c in diag.items()}
    # brightness populations
    pops, pop_totals = brightness_populations(diag, seed=cfg.seed)
    result["brightness"] = {
        f"hosts_vs_{o}": compare_populations(pops["hosts"], pops[o], n_boot=cfg.audit.n_boot,
                                             seed=cfg.seed, name=f"audit/hosts_vs_{o}")
        for o in ("anchors", "stress")
    }
    result["brightness"]["definition"] = (
        f"median r-band flux (nmgy/pixel) at r < {cfg.audit.brightness_radius_pix} px; "
        "hosts = survey kind host (else train controls)"
    )
    if any(pop_totals[k] > pops[k].size for k in pops):
        result["brightness"]["subsampled"] = {
            "max_samples": BRIGHTNESS_MAX_SAMPLES, "n_total": pop_totals,
            "how": "keyed subsample by sample id (audit/brightness/<population>)"}
    # loader, metric names
    if train is not None:
        try:
            gates.append(loader_check(train, cfg))
        except Exception as exc:  # noqa: BLE001 - a crashing loader is a failed gate
            gates.append(G.gate("loader_once_per_epoch", False, detail=f"loader raised: {exc!r}"))
    else:
        gates.append(G.not_evaluated("loader_once_per_epoch", "no training store"))
    used = {"evaluate.primary_metric": cfg.evaluate.primary_metric}
    sel_metric = getattr(cfg.train, "selection_metric", None)
    if sel_metric is not None:
        used["train.selection_metric"] = sel_metric
    gates.append(G.metric_names_gate(used, G.known_metric_names(cfg.evaluate.fprs)))
    gates = G.apply_blocking(gates, gc.non_blocking)
    result["figures_data"] = {"populations_n": {k: int(v.size) for k, v in pops.items()}}
    result["_pops"] = pops
    shutil.rmtree(scratch, ignore_errors=True)
    return result, gates


@stage(
    "audit",
    reads=(
        "audit", "gates", "split", "train.selection_metric", "evaluate.primary_metric",
        "evaluate.fprs", "inject.hosts", "seed", "bands", "stamp_size", "pixscale", "chunk_size",
    ),
    after=("split",),
)
def run_audit(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Run every diagnostic and gate; write audit.json, figures and gates.json.

    Returns ``cfg.layout.gates_json``.
    """
    del force
    from gen5dask.evaluate.stats import to_jsonable

    stores = store_paths(cfg)
    if not stores:
        msg = f"audit: no complete store found under {cfg.layout.root}"
        raise FileNotFoundError(msg)
    result, gates = audit(cfg, client)
    pops = result.pop("_pops")
    out = cfg.layout.audit_dir
    out.mkdir(parents=True, exist_ok=True)
    if cfg.audit.figures:
        result["figures"] = _figures(out, pops, result.get("leakage", {}))
    result["gates"] = gates
    (out / "audit.json").write_text(json.dumps(to_jsonable(result), indent=1, allow_nan=False))
    cfg.layout.gates_json.parent.mkdir(parents=True, exist_ok=True)
    cfg.layout.gates_json.write_text(json.dumps(gates, indent=1, allow_nan=False))
    return cfg.layout.gates_json


__all__ = [
    "BRIGHTNESS_MAX_SAMPLES",
    "audit",
    "brightness_populations",
    "class_balance",
    "diag_columns",
    "core_only_baseline",
    "keyed_subsample",
    "leakage_aucs",
    "loader_check",
    "maskbit_fractions_by_kind",
    "null_injection_check",
    "run_audit",
    "split_rows",
    "store_diagnostics",
]

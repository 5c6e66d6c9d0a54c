"""``gen5dask audit``: diagnostics before training and the gates that block ``train``.

Writes ``cfg.layout.audit_dir/audit.json`` (all diagnostics), figures in the same folder, and
``cfg.layout.gates_json`` (a list of ``{name, passed, blocking, value, threshold, detail}``, see
:mod:`gen5dask.gates`).

Pixel work runs per store chunk on Dask (``map_chunks``): tasks open the stores themselves and
return per-sample scalars (mask fractions, invvar medians, core brightness, finiteness) or the
core-pixel features of a bounded, keyed subsample, so pixels are never gathered on the driver.
The audit always recomputes from the current stores (it is a read-only check; ``force`` is
accepted for the stage convention).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask import gates as G
from gen5dask.config import Config
from gen5dask.kernels.photometry import MASKBITS
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.stages.split import host_store_name, store_paths
from gen5dask.store import chunk_bounds, read_samples, read_table, store_geometry

BIT_NAMES = tuple(sorted(MASKBITS, key=MASKBITS.get))
_TABLE_COLS = ("sample", "kind", "label", "split", "region", "inject_mode", "host_sample", "ra",
               "dec", "host_mag_r", "psfsize", "psfdepth", "eval_only")


# ------------------------------------------------------------------------------ chunk tasks


def _diag_chunk(index: int, path: str, r_band: int, radius: float, annulus: tuple) -> dict:
    """Task: per-sample scalar diagnostics of one chunk (no pixels returned)."""
    from gen5dask.kernels.photometry import bad_pixel_frac, core_brightness, wise_mask_frac

    man = store_geometry(path)
    a, b = chunk_bounds(man["n_samples"], man["chunk_size"])[index]
    d = read_samples(path, slice(a, b), ["sample", "image", "invvar", "maskbits"])
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
    return {
        "sample": d["sample"],
        "bad_pixel_frac": bad_pixel_frac(mb) if n else np.zeros(0),
        "wise_mask_frac": wise_mask_frac(mb) if n else np.zeros(0),
        "bit_frac": bits,
        "invvar_median": ivm,
        "finite_image": finite_img,
        "finite_invvar": finite_iv,
        "band_missing": band_missing.any(axis=1),
        "core_brightness": np.asarray(core, dtype=np.float64),
        "core_excess": np.asarray(excess, dtype=np.float64),
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


def store_diagnostics(path: Path, cfg: Config, client=None) -> pd.DataFrame:
    """Per-sample table of a store: its scalars plus the chunk diagnostics."""
    man = store_geometry(path)
    have = set(man["variables"])
    t = read_table(path, [c for c in _TABLE_COLS if c == "sample" or c in have])
    r_band = man["bands"].index("r") if "r" in man["bands"] else -1
    idx = range(len(chunk_bounds(man["n_samples"], man["chunk_size"])))
    res = map_chunks(_diag_chunk, idx, str(path), r_band, cfg.audit.brightness_radius_pix,
                     tuple(cfg.audit.brightness_annulus_pix), client=client,
                     desc=f"audit {path.name}", progress=False)
    if not res:
        return t
    cat = {k: np.concatenate([r[k] for r in res]) for k in res[0]}
    if not np.array_equal(cat["sample"], t["sample"].to_numpy()):
        msg = f"{path}: sample ids changed while auditing"
        raise RuntimeError(msg)
    for k in ("bad_pixel_frac", "wise_mask_frac", "finite_image", "finite_invvar",
              "band_missing", "core_brightness", "core_excess"):
        t[k] = cat[k]
    for j, name in enumerate(BIT_NAMES):
        t[f"bitfrac_{name}"] = cat["bit_frac"][:, j]
    for j, band in enumerate(man["bands"]):
        t[f"invvar_median_{band}"] = cat["invvar_median"][:, j]
    for col, default in (("kind", ""), ("split", ""), ("inject_mode", ""), ("host_sample", -1),
                         ("region", -1)):
        if col not in t:
            t[col] = default
    return t


def _balance_quantities(t: pd.DataFrame, bands) -> list[str]:
    q = ["bad_pixel_frac", "wise_mask_frac", *(f"bitfrac_{b}" for b in BIT_NAMES),
         *(f"invvar_median_{b}" for b in bands), "psfsize_r", "psfdepth_r"]
    return [c for c in q if c in t]


def class_balance(t: pd.DataFrame, bands) -> tuple[dict, dict]:
    """Effect sizes by label (injection vs control rows) and by kind of the audit quantities."""
    from gen5dask.evaluate.stats import effect_size_summary

    sel = t[t["kind"].isin(["injection", "control"])]
    by_label, by_kind = {}, {}
    for q in _balance_quantities(t, bands):
        if len(sel) and sel["label"].nunique() > 1:
            by_label[q] = effect_size_summary(sel[q].to_numpy(np.float64),
                                              sel["label"].astype(int).to_numpy())
        by_kind[q] = effect_size_summary(t[q].to_numpy(np.float64), t["kind"].to_numpy())
    return by_label, by_kind


def leakage_aucs(t: pd.DataFrame, columns) -> dict:
    """AUC of each metadata column alone for the label (injection vs control rows)."""
    from sklearn.metrics import roc_auc_score

    sel = t[t["kind"].isin(["injection", "control"])]
    out = {}
    for c in columns:
        if c not in sel:
            continue
        x = sel[c].to_numpy(np.float64)
        y = sel["label"].to_numpy().astype(int)
        ok = np.isfinite(x)
        if ok.sum() < 4 or np.unique(y[ok]).size < 2:
            out[c] = None
            continue
        out[c] = float(roc_auc_score(y[ok], x[ok]))
    return out


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


def core_only_baseline(path: Path, t: pd.DataFrame, cfg: Config, client=None) -> dict:
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
    t = t.reset_index(drop=True)
    ctrl = t.index[t["kind"] == "control"].to_numpy()
    modes = sorted(m for m in t.loc[t["kind"] == "injection", "inject_mode"].unique())
    if ctrl.size == 0 or not modes:
        return {}
    samples = t["sample"].to_numpy(np.int64)
    ctrl = ctrl[keyed_subsample(samples[ctrl], ac.core_only_max_samples, cfg.seed,
                                "core/control")]
    chosen = {"control": ctrl}
    for m in modes:
        inj = t.index[(t["kind"] == "injection") & (t["inject_mode"] == m)].to_numpy()
        chosen[m] = inj[keyed_subsample(samples[inj], ac.core_only_max_samples, cfg.seed,
                                    f"core/{m}")]
    rows = np.unique(np.concatenate(list(chosen.values())))
    bounds = chunk_bounds(man["n_samples"], man["chunk_size"])
    starts = np.asarray([a for a, _ in bounds])
    which = np.searchsorted(starts, rows, side="right") - 1
    by_chunk = {int(c): rows[which == c] for c in np.unique(which)}
    res = map_chunks(_core_chunk, sorted(by_chunk), str(path), by_chunk,
                     man["bands"].index("r"), ac.core_radius_pix, client=client,
                     desc="audit core-only", progress=False)
    feat_rows = np.concatenate([r["rows"] for r in res])
    X_all = np.concatenate([r["x"] for r in res])
    pos_of = {int(r): i for i, r in enumerate(feat_rows)}
    out = {}
    for m in modes:
        idx = np.concatenate([chosen["control"], chosen[m]])
        X = X_all[[pos_of[int(i)] for i in idx]]
        y = np.r_[np.zeros(chosen["control"].size), np.ones(chosen[m].size)].astype(int)
        split = t.loc[idx, "split"].astype(str).to_numpy()
        groups = t.loc[idx, "host_sample"].to_numpy(np.int64)
        groups = np.where(groups >= 0, groups, t.loc[idx, "sample"].to_numpy(np.int64))

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


def null_injection_check(train: Path, host: Path | None, t: pd.DataFrame, client=None) -> dict:
    """Bitwise comparison of every null injection with its host (image and invvar)."""
    nulls = t.index[t["kind"] == "null_injection"].to_numpy()
    if nulls.size == 0:
        return {"n": 0, "evaluated": False, "why": "no null injections in the training store"}
    if host is None:
        return {"n": int(nulls.size), "evaluated": False, "why": "host store not found"}
    ht = read_table(host, ["sample"])
    hid = ht["sample"].to_numpy(np.int64)
    order = np.argsort(hid)
    want = t.loc[nulls, "host_sample"].to_numpy(np.int64)
    pos = np.searchsorted(hid[order], want)
    found = (pos < hid.size) & (hid[order][np.minimum(pos, hid.size - 1)] == want)
    missing = t.loc[nulls[~found], "sample"].tolist()
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


def brightness_populations(diag: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Core brightness (r band, nanomaggies/pixel) of training hosts, anchors and stress."""

    def take(store: str, kind: str) -> np.ndarray:
        t = diag.get(store)
        if t is None or "core_brightness" not in t:
            return np.zeros(0)
        return t.loc[t["kind"] == kind, "core_brightness"].to_numpy(np.float64)

    hosts = take("survey", "host")
    if hosts.size == 0:
        hosts = take("hosts", "host")
    if hosts.size == 0:
        hosts = take("train", "control")
    anchors = take("anchors", "anchor")
    if anchors.size == 0:
        anchors = take("survey", "anchor")
    stress = take("anchors", "stress")
    if stress.size == 0:
        stress = take("survey", "stress")
    return {"hosts": hosts, "anchors": anchors, "stress": stress}


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


def _split_rows(stores: dict[str, Path], diag: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for name in stores:
        t = diag[name]
        parts.append(pd.DataFrame({
            "store": name, "sample": t["sample"].to_numpy(np.int64),
            "ra": t["ra"].to_numpy(np.float64), "dec": t["dec"].to_numpy(np.float64),
            "host_sample": t["host_sample"].to_numpy(np.int64),
            "region": t["region"].to_numpy(np.int64), "split": t["split"].astype(str).to_numpy(),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def audit(cfg: Config, client=None) -> tuple[dict, list[dict]]:
    """Compute every diagnostic and gate; returns ``(audit_dict, gates)`` (no files written)."""
    from gen5dask.evaluate.stats import compare_populations

    gc, lay = cfg.gates, cfg.layout
    stores = store_paths(cfg)
    diag = {name: store_diagnostics(p, cfg, client) for name, p in stores.items()}
    result: dict = {"stores": {k: {"path": str(p), "n": len(diag[k])} for k, p in stores.items()}}
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
    rows = _split_rows(stores, diag)
    gates.extend(G.split_gates(rows, host_store=hname,
                               dup_radius_arcsec=cfg.split.dup_radius_arcsec,
                               max_region_frac=cfg.split.max_region_frac,
                               min_test_regions=cfg.split.min_test_regions))
    # pixels, PSF, bands
    finite = {k: int((~(t["finite_image"] & t["finite_invvar"])).sum()) for k, t in diag.items()
              if "finite_image" in t}
    gates.append(G.count_gate("finite_pixels", finite, what="samples with NaN/inf image or invvar"))
    psf_bad = {}
    for k, t in diag.items():
        cols = [c for c in t.columns if c.startswith("psfsize_")]
        v = t[cols].to_numpy(np.float64)
        psf_bad[k] = int((~(np.isfinite(v) & (v > 0))).any(axis=1).sum())
    gates.append(G.count_gate("psf_positive", psf_bad,
                              what="samples with a non-finite or <= 0 psfsize"))
    bands = {k: store_geometry(p)["bands"] for k, p in stores.items()}
    missing = {k: int(t["band_missing"].sum()) for k, t in diag.items() if "band_missing" in t}
    gates.append(G.bandset_gate(bands, missing, {k: len(t) for k, t in diag.items()},
                                expected=cfg.bands, max_missing_frac=gc.bandset_max_missing_frac))
    result["bandset"] = {"bands": bands, "samples_missing_a_band": missing}
    result["finite_pixels"] = finite
    result["psf_positive"] = psf_bad
    # class balance, leakage (training store)
    if train is not None:
        t = diag["train"]
        by_label, by_kind = class_balance(t, bands["train"])
        result["by_label"], result["by_kind"] = by_label, by_kind
        gates.append(G.class_balance_gate(by_label,
                                          max_abs_delta=gc.class_balance_max_cliffs_delta))
        leak = leakage_aucs(t, cfg.audit.leakage_columns)
        result["leakage"] = leak
        gates.append(G.leakage_gate(leak, max_dev=gc.leakage_max_auc_dev))
    else:
        leak = {}
        gates.append(G.not_evaluated("class_balance_conditions", "no training store"))
        gates.append(G.not_evaluated("metadata_leakage", "no training store"))
    result["by_kind_all_stores"] = {}
    for k, t in diag.items():
        if k != "train":
            result["by_kind_all_stores"][k] = class_balance(t, bands[k])[1]
    result["maskbit_fractions_by_kind"] = {
        k: t.groupby("kind")[[f"bitfrac_{b}" for b in BIT_NAMES]].mean().to_dict(orient="index")
        for k, t in diag.items()
    }
    # brightness populations
    pops = brightness_populations(diag)
    result["brightness"] = {
        f"hosts_vs_{o}": compare_populations(pops["hosts"], pops[o], n_boot=cfg.audit.n_boot,
                                             seed=cfg.seed, name=f"audit/hosts_vs_{o}")
        for o in ("anchors", "stress")
    }
    result["brightness"]["definition"] = (
        f"median r-band flux (nmgy/pixel) at r < {cfg.audit.brightness_radius_pix} px; "
        "hosts = survey kind host (else train controls)"
    )
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
    "audit",
    "brightness_populations",
    "class_balance",
    "core_only_baseline",
    "keyed_subsample",
    "leakage_aucs",
    "loader_check",
    "null_injection_check",
    "run_audit",
    "store_diagnostics",
]

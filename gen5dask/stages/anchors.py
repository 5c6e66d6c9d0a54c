"""``gen5dask anchors``: the Tier-A anchor set with coordinate validation (plan Priority 2).

1. Read every configured source (lenscat's packaged catalogue, user CSV/FITS lists) and merge
   them by sky cross-match, keeping each source's provenance per anchor.
2. Validate coordinates that come from a list against the reference catalogue (default lenscat)
   within ``anchors.tolerance_arcsec`` — the earlier pipeline's hand-typed coordinates were all
   ~3 arcmin off and its anchor numbers were measured on empty sky.
3. Find each anchor's cutout (by id or position) and require a source at the centre (r-band S/N
   in a small aperture).
4. Assign tiers (A / B / secondary / stress), apply visual grades, measure the arc visibility
   proxy, and write ``anchors.zarr`` (kinds anchor, stress), ``anchors.csv`` and
   ``anchors_rejected.csv`` (name, ra, dec, reason). Rejected anchors are never evaluated.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.anchors import catalogs
from gen5dask.stages.declare import stage
from gen5dask.store import (
    create_store,
    finalize_store,
    fingerprint,
    read_samples,
    read_table,
    require_store,
    store_geometry,
    store_lock,
    write_chunk,
)
from gen5dask.store.zarrstore import chunk_bounds

CARRY_OPTIONAL = ("subtype", "host_mag_r", "core_brightness", "quality", "arc", "snr_opt")


class AnchorSizeError(RuntimeError):
    """Fewer Tier-A anchors than ``anchors.min_anchors`` with ``min_action: fail``."""


def _expand(path: str, cfg) -> Path:
    return Path(path.replace("{output_dir}", str(cfg.output_dir)))


def load_sources(cfg) -> list[pd.DataFrame]:
    """Every configured anchor source in normal form, with a ``typed`` flag."""
    frames = []
    for src in cfg.anchors.catalogs:
        if src.kind == "lenscat":
            df = catalogs.read_lenscat(
                gradings=src.gradings,
                types=src.types,
                ref_include=src.ref_include,
                ref_exclude=src.ref_exclude,
                copy=src.lenscat_copy,
            )
            df["source"] = src.name or "lenscat"
        else:
            if not src.path:
                msg = "anchors.catalogs: a source of kind 'table' needs a path"
                raise ValueError(msg)
            path = _expand(src.path, cfg)
            df = catalogs.read_table(path, src.columns, source=src.name or path.name)
        if src.region is not None:
            r0, r1, d0, d1 = src.region
            df = df[(df.ra >= r0) & (df.ra <= r1) & (df.dec >= d0) & (df.dec <= d1)]
        df = df.assign(typed=bool(src.coordinates_typed and src.kind == "table"))
        frames.append(df.reset_index(drop=True))
    return frames


def load_reference(cfg) -> pd.DataFrame | None:
    """The reference catalogue for coordinate validation (None when ``reference: none``)."""
    ref = cfg.anchors.reference
    if ref == "none":
        return None
    if ref in ("lenscat", "lenscat-package"):
        return catalogs.read_lenscat(
            gradings=("confident", "probable"), types=("galaxy", "group", "cluster"),
            copy="package" if ref == "lenscat-package" else "bundled",
        )
    return catalogs.read_table(_expand(ref, cfg), source=Path(ref).name)


def centre_snr(image_r: np.ndarray, invvar_r: np.ndarray, radius_pix: float) -> np.ndarray:
    """r-band S/N of the background-subtracted flux within ``radius_pix`` of the centre.

    Background: median of pixels at r >= 16 px; noise: sqrt(sum 1/invvar) over good aperture
    pixels. A cutout on empty sky gives S/N ~ N(0, 1).
    """
    n, h, w = image_r.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h // 2, xx - w // 2)
    ap = r < radius_pix
    outer = r >= min(16.0, 0.4 * min(h, w))
    out = np.zeros(n)
    for i in range(n):
        good = invvar_r[i] > 0
        sel = ap & good
        if not sel.any():
            continue
        bkg = np.median(image_r[i][outer & good]) if (outer & good).any() else 0.0
        flux = float(np.sum(image_r[i][sel] - bkg))
        noise = float(np.sqrt(np.sum(1.0 / invvar_r[i][sel])))
        out[i] = flux / noise if noise > 0 else 0.0
    return out


def _reject(rows: pd.DataFrame, reason, out: list[dict]) -> None:
    for k, (_, r) in enumerate(rows.iterrows()):
        why = reason[k] if isinstance(reason, list | np.ndarray) else reason
        out.append({"name": r["name"], "ra": r["ra"], "dec": r["dec"], "reason": why})


def select_anchors(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accepted anchors (with cutout row index, tier, checks) and rejected ones (with reasons)."""
    acfg = cfg.anchors
    tol = acfg.tolerance_arcsec
    cut_path = Path(acfg.cutouts) if acfg.cutouts else cfg.layout.survey
    require_store(cut_path, what="anchors: the cutout store", hint=(
        "make it first: `gen5dask simulate CONFIG` (the mock survey), or `gen5dask fetch` + "
        "`gen5dask ingest` for real cutouts (then set anchors.cutouts to the ingested store)"))
    rejected: list[dict] = []
    merged = catalogs.merge_sources(load_sources(cfg), tol)
    merged["typed"] = merged["typed"].astype(bool)
    # --- 1. coordinate validation against the reference ------------------------------------
    merged["match_sep_arcsec"] = np.nan
    merged["reference_name"] = ""
    ref = load_reference(cfg)
    if ref is not None and len(merged):
        idx, sep = catalogs.crossmatch(merged.ra, merged.dec, ref.ra, ref.dec)
        merged["match_sep_arcsec"] = sep
        merged["reference_name"] = np.where(idx >= 0, ref.name.to_numpy()[np.maximum(idx, 0)], "")
        ref_ref = ref.ref.to_numpy()[np.maximum(idx, 0)]
        ref_grade = ref.grade.to_numpy()[np.maximum(idx, 0)]
        ok = sep <= tol
        merged.loc[ok, "ref"] = np.where(
            merged.ref[ok].astype(str).isin(["", "nan"]), ref_ref[ok], merged.ref[ok]
        )
        merged.loc[ok, "grade"] = np.where(
            merged.grade[ok].astype(str).isin(["", "nan"]), ref_grade[ok], merged.grade[ok]
        )
        bad = merged.typed.to_numpy() & ~ok
        reasons = [
            f"coordinates off: no {acfg.reference} entry within {tol:g} arcsec "
            f"(nearest {s:.1f} arcsec: {n})"
            for s, n in zip(sep[bad], merged.reference_name[bad], strict=True)
        ]
        _reject(merged[bad], reasons, rejected)
        merged = merged[~bad].reset_index(drop=True)
    # --- 2. cutouts -----------------------------------------------------------------------
    table = read_table(cut_path, ["sample", "ra", "dec", "kind"])
    if acfg.match_cutouts_by == "id":
        pos = pd.Series(np.arange(len(table)), index=table["sample"].to_numpy())
        has = merged["id"].isin(pos.index).to_numpy()
        _reject(merged[~has], f"no cutout with this id in {cut_path.name}", rejected)
        merged = merged[has].reset_index(drop=True)
        merged["row"] = pos.loc[merged["id"].to_numpy()].to_numpy()
    else:
        idx, sep = catalogs.crossmatch(merged.ra, merged.dec, table.ra, table.dec)
        has = sep <= tol
        _reject(merged[~has], f"no cutout within {tol:g} arcsec in {cut_path.name}", rejected)
        merged = merged[has].reset_index(drop=True)
        merged["row"] = idx[has]
    merged["kind"] = "anchor"
    if acfg.include_survey_stress:
        stress_rows = np.nonzero((table["kind"] == "stress").to_numpy())[0]
        stress_rows = np.setdiff1d(stress_rows, merged["row"].to_numpy())
        extra = pd.DataFrame(
            {
                "id": table["sample"].to_numpy()[stress_rows],
                "name": [f"stress-{s}" for s in table["sample"].to_numpy()[stress_rows]],
                "ra": table["ra"].to_numpy()[stress_rows],
                "dec": table["dec"].to_numpy()[stress_rows],
                "grade": "confirmed",
                "ref": "SLACS/BELLS-like (mock truth)",
                "source": "survey",
                "provenance": [f"survey:{s}" for s in table["sample"].to_numpy()[stress_rows]],
                "typed": False,
                "row": stress_rows,
                "kind": "stress",
            }
        )
        merged = pd.concat([merged, extra], ignore_index=True)
    # duplicate cutouts (two catalogue names on one cutout): keep the first
    dup = merged.duplicated("row")
    _reject(merged[dup], "duplicate: same cutout as an earlier anchor", rejected)
    merged = merged[~dup].reset_index(drop=True)
    # --- 3. centre source -------------------------------------------------------------------
    rows = np.sort(merged["row"].to_numpy().astype(np.int64))
    man = store_geometry(cut_path)
    r_band = man["bands"].index("r") if "r" in man["bands"] else len(man["bands"]) // 2
    if len(rows):
        pix = read_samples(cut_path, rows, ["image", "invvar"])
        order = np.searchsorted(rows, merged["row"].to_numpy())
        img_r = pix["image"][order, r_band].astype(np.float64)
        ivar_r = pix["invvar"][order, r_band].astype(np.float64)
        merged["centre_snr"] = centre_snr(img_r, ivar_r, acfg.centre_radius_pix)
        from gen5dask.kernels.photometry import visibility_proxy

        vis = visibility_proxy(img_r)
        merged["visibility"] = np.asarray(vis[0] if isinstance(vis, tuple) else vis["snr"])
    else:
        merged["centre_snr"] = np.zeros(0)
        merged["visibility"] = np.zeros(0)
    off = merged["centre_snr"].to_numpy() < acfg.centre_snr_min
    reasons = [
        f"no source at the cutout centre (r-band S/N {s:.1f} < {acfg.centre_snr_min:g})"
        for s in merged["centre_snr"][off]
    ]
    _reject(merged[off], reasons, rejected)
    merged = merged[~off].reset_index(drop=True)
    # --- 4. tiers and visual grades ---------------------------------------------------------
    origin = [
        catalogs.classify_origin(
            r,
            desi_native=acfg.desi_native_refs,
            stress=acfg.stress_refs,
            secondary=acfg.secondary_refs,
        )
        for r in merged["ref"]
    ]
    merged["origin"] = origin
    merged["tier"] = [
        "stress" if k == "stress" else catalogs.assign_tier(o, g)
        for k, o, g in zip(merged["kind"], origin, merged["grade"], strict=True)
    ]
    merged.loc[merged["tier"] == "stress", "kind"] = "stress"
    merged["visual_grade"] = ""
    if acfg.visual_grades:
        grades = pd.read_csv(acfg.visual_grades, dtype=str).fillna("")
        gmap = dict(zip(grades["name"], grades["grade"].str.strip(), strict=True))
        merged["visual_grade"] = merged["name"].map(gmap).fillna("")
        nol = merged["visual_grade"].str.lower().isin(["not_a_lens", "not a lens", "n"])
        _reject(merged[nol], "visual inspection: not a lens", rejected)
        merged = merged[~nol].reset_index(drop=True)
        vg = merged["visual_grade"].str.upper()
        is_anchor = merged["kind"] == "anchor"
        merged.loc[is_anchor & (vg == "A"), "tier"] = "A"
        merged.loc[is_anchor & (vg == "B"), "tier"] = "B"
        merged.loc[is_anchor & (vg == "C"), "tier"] = "secondary"
    merged = merged.sort_values("row").reset_index(drop=True)
    rej = pd.DataFrame(rejected, columns=["name", "ra", "dec", "reason"])
    return merged, rej


@stage(
    "anchors",
    reads=("anchors", "seed", "chunk_size"),
    after=("simulate",),
)
def run_anchors(cfg, client=None, *, force: bool = False) -> Path:
    """Build the anchor set; returns the path of ``anchors.zarr``."""
    acfg = cfg.anchors
    lay = cfg.layout
    cut_path = Path(acfg.cutouts) if acfg.cutouts else lay.survey
    accepted, rejected = select_anchors(cfg)
    n_a = int((accepted["tier"] == "A").sum())
    if n_a < acfg.min_anchors:
        msg = (
            f"only {n_a} Tier-A anchors (< anchors.min_anchors = {acfg.min_anchors}): "
            "too few for paper-grade claims"
        )
        if acfg.min_action == "fail":
            raise AnchorSizeError(msg)
        warnings.warn(msg, stacklevel=2)
    man = store_geometry(cut_path)
    src_vars = man["variables"]
    optional = [v for v in CARRY_OPTIONAL if v in src_vars]
    variables = ["tier", "visibility", *optional]
    out = lay.anchors
    lay.root.mkdir(parents=True, exist_ok=True)
    create_store(
        out,
        n_samples=len(accepted),
        stage="anchors",
        config={"anchors": acfg.model_dump(mode="json"), "seed": cfg.seed},
        seed=cfg.seed,
        bands=man["bands"],
        stamp_size=man["stamp_size"],
        chunk_size=cfg.chunk_size,
        variables=variables,
        parents=[fingerprint(cut_path)],
        overwrite=True,
    )
    overridden = {"kind", "label", "tier", "visibility", "region", "split"}
    out_vars = store_geometry(out)["variables"]
    read_vars = ["sample", *[v for v in out_vars if v in src_vars and v not in overridden]]
    with store_lock(out):
        for i, (a, b) in enumerate(chunk_bounds(len(accepted), cfg.chunk_size)):
            part = accepted.iloc[a:b]
            data = read_samples(cut_path, part["row"].to_numpy().astype(np.int64), read_vars)
            data["kind"] = part["kind"].to_numpy()
            data["label"] = np.ones(b - a, dtype="i1")
            data["tier"] = part["tier"].to_numpy()
            data["visibility"] = part["visibility"].to_numpy().astype("f4")
            data["region"] = np.full(b - a, -1, "i4")
            data["split"] = np.full(b - a, "")
            write_chunk(out, i, data)
        finalize_store(out, attrs={"n_tier_a": n_a, "n_rejected": len(rejected)})
    cols = [
        "sample",
        "name",
        "ra",
        "dec",
        "kind",
        "tier",
        "grade",
        "origin",
        "visual_grade",
        "coordinates_typed",
        "match_sep_arcsec",
        "centre_source",
        "reference_name",
        "centre_snr",
        "visibility",
        "theta_e",
        "z_lens",
        "z_source",
        "ref",
        "provenance",
    ]
    table = accepted.rename(columns={"id": "sample", "typed": "coordinates_typed"})
    table["centre_source"] = table["centre_snr"] >= acfg.centre_snr_min
    table["sample"] = (
        read_samples(cut_path, accepted["row"].to_numpy().astype(np.int64), ["sample"])["sample"]
        if len(accepted)
        else []
    )
    table[[c for c in cols if c in table.columns]].to_csv(lay.anchors_csv, index=False)
    rejected.to_csv(lay.anchors_rejected_csv, index=False)
    print(
        f"anchors: accepted {len(accepted)} (tier A {n_a}, stress "
        f"{int((accepted.tier == 'stress').sum())}), rejected {len(rejected)} "
        f"-> {lay.anchors_rejected_csv.name}",
        file=sys.stderr,
    )
    return out


__all__ = [
    "AnchorSizeError",
    "centre_snr",
    "load_reference",
    "load_sources",
    "run_anchors",
    "select_anchors",
]

"""``gen5dask hardneg``: assemble hard negatives (look-alikes) into ``hardneg.zarr``.

Sources (each optional):

a. the survey's look-alike populations (kind ``hard_negative``; subtypes ring_galaxy, spiral,
   merger, edge_on);
b. a morphology vote catalogue (Galaxy Zoo DECaLS-style vote fractions) matched by id to an
   ingested cutout store; a galaxy becomes a hard negative of the subtype whose vote fraction
   passes its threshold (the largest fraction wins);
c. mining: the top-scoring non-lenses (label 0, kinds ``hardneg.mine_kinds``) of an earlier
   model's scores table, after removing any within ``mine_exclude_radius_arcsec`` of a known lens
   (the anchor catalogue); subtype ``mined``.

Output sample ids: ``(source_code << 40) + source sample id`` with source codes
:data:`SOURCE_CODES` (survey 0, vote cutouts 1, mined from survey/train/hosts/hardneg 2-5), so
ids are unique, stable and say where each cutout came from; ``hardneg_provenance.csv`` next to
the store lists source store, source sample and mined score per row. A sample goes to the
evaluation slice (``eval_only = 1``, never used for training or model selection) when
``uniform(key(seed, "hardneg", sample id), 0) < hardneg.eval_fraction``. Pixels are copied
chunk-wise by Dask tasks (``map_chunks``): each task reads only its rows from the source stores.
The procedural rings stay in survey.zarr (kind ring) as a diagnostic, never as training negatives.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.config import Config
from gen5dask.kernels.rng import keys_for, stage_id, uniform
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.store import (
    chunk_bounds,
    create_store,
    finalize_store,
    fingerprint,
    is_complete,
    pending_chunks,
    read_samples,
    read_table,
    store_geometry,
    write_chunk,
)
from gen5dask.store.schema import SAMPLE, SUBTYPES, TRUTH_VARS
from gen5dask.store.zarrstore import StoreError, store_lock

SOURCE_CODES: dict[str, int] = {
    "survey": 0,
    "votes": 1,
    "mined:survey": 2,
    "mined:train": 3,
    "mined:hosts": 4,
    "mined:hardneg": 5,
}
ID_SHIFT = 40
VOTE_SUBTYPE_ORDER = ("ring_galaxy", "spiral", "merger", "edge_on")
OUT_VARIABLES = ("subtype", "eval_only", "host_mag_r")


# ----------------------------------------------------------------------------- pure selection


def classify_votes(
    votes: pd.DataFrame, *, columns: Mapping[str, str], thresholds: Mapping[str, float]
) -> np.ndarray:
    """Hard-negative subtype of each row of a vote catalogue (``''`` when no vote passes).

    Parameters
    ----------
    votes : DataFrame
        Vote fractions (0-1) in the columns named by ``columns``.
    columns : mapping
        Subtype -> column name; a missing column raises ``ValueError`` naming it.
    thresholds : mapping
        Subtype -> minimum fraction. Among passing subtypes the largest fraction wins (ties in
        the order ring_galaxy, spiral, merger, edge_on).
    """
    subs = [s for s in VOTE_SUBTYPE_ORDER if s in columns]
    missing = [columns[s] for s in subs if columns[s] not in votes]
    if missing:
        msg = f"vote catalogue has no column(s) {missing} (hardneg.vote_columns)"
        raise ValueError(msg)
    n = len(votes)
    if not subs:
        return np.full(n, "", dtype="U16")
    frac = np.stack([votes[columns[s]].to_numpy(np.float64) for s in subs], axis=1)
    thr = np.asarray([thresholds[s] for s in subs])
    passing = np.where(np.isfinite(frac) & (frac >= thr), frac, -np.inf)
    best = np.argmax(passing, axis=1)
    ok = np.isfinite(passing[np.arange(n), best])
    return np.where(ok, np.asarray(subs, dtype="U16")[best], "")


def mine_candidates(
    scores: pd.DataFrame,
    positions: Mapping[str, pd.DataFrame],
    *,
    lens_ra: np.ndarray,
    lens_dec: np.ndarray,
    top_k: int,
    kinds: Sequence[str] = ("host", "control"),
    exclude_radius_arcsec: float = 3.0,
) -> pd.DataFrame:
    """Top-``k`` scoring non-lenses with known lenses removed by sky cross-match.

    Parameters
    ----------
    scores : DataFrame
        Columns ``sample, store, score, label, kind``.
    positions : mapping
        Store name -> DataFrame ``sample, ra, dec`` (degrees) of that store; rows of stores not
        given are skipped (their pixels cannot be copied).
    lens_ra, lens_dec : array_like
        Known lens positions, degrees.
    top_k : int
        Number kept.
    kinds : sequence of str
        Eligible kinds (label 0 only).
    exclude_radius_arcsec : float
        A candidate within this distance of a known lens is dropped.

    Returns
    -------
    DataFrame
        ``store, sample, score, ra, dec, lens_sep_arcsec`` sorted by score descending (ties by
        store then sample, so the choice is deterministic).
    """
    need = {"sample", "store", "score", "label", "kind"}
    missing = sorted(need - set(scores.columns))
    if missing:
        msg = f"scores table has no column(s) {missing}"
        raise ValueError(msg)
    d = scores[(scores["label"] == 0) & scores["kind"].isin(list(kinds))]
    d = d[d["store"].isin(list(positions))]
    d = d[np.isfinite(d["score"].to_numpy(np.float64))]
    parts = []
    for name, g in d.groupby("store", sort=True):
        pos = positions[name][["sample", "ra", "dec"]]
        parts.append(g[["store", "sample", "score"]].merge(pos, on="sample", how="inner"))
    cols = ["store", "sample", "score", "ra", "dec", "lens_sep_arcsec"]
    if not parts:
        return pd.DataFrame(columns=cols)
    c = pd.concat(parts, ignore_index=True)
    c["lens_sep_arcsec"] = np.inf
    lens_ra = np.asarray(lens_ra, dtype=np.float64)
    lens_dec = np.asarray(lens_dec, dtype=np.float64)
    if lens_ra.size and len(c):
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        cand = SkyCoord(c["ra"].to_numpy() * u.deg, c["dec"].to_numpy() * u.deg)
        lens = SkyCoord(lens_ra * u.deg, lens_dec * u.deg)
        _, sep, _ = cand.match_to_catalog_sky(lens)
        c["lens_sep_arcsec"] = sep.to_value(u.arcsec)
    c = c[c["lens_sep_arcsec"] > exclude_radius_arcsec]
    c = c.sort_values(["score", "store", "sample"], ascending=[False, True, True], kind="stable")
    return c.head(int(top_k)).reset_index(drop=True)[cols]


def eval_only_flags(seed: int, sample_ids: np.ndarray, fraction: float) -> np.ndarray:
    """``1`` where ``uniform(key(seed, "hardneg", id), 0) < fraction`` (int8)."""
    ids = np.asarray(sample_ids, dtype=np.int64)
    keys = keys_for(np.int64(seed), np.uint64(stage_id("hardneg")), ids, 0, 0)
    u = np.fromiter((uniform(k, 0) for k in keys), dtype=np.float64, count=ids.size)
    return (u < fraction).astype(np.int8)


# ----------------------------------------------------------------------------- input reading


def read_scores_table(path: str | Path) -> pd.DataFrame:
    """A scores zarr as a DataFrame (via the trainer's ``read_scores`` when available, else
    ``xarray.open_zarr`` with int-coded strings decoded from ``gen5dask_legend`` attributes)."""
    path = Path(path)
    if not path.exists():
        msg = f"hardneg.mine_from: scores table {path} does not exist"
        raise FileNotFoundError(msg)
    try:
        from gen5dask.train.scoring import read_scores
    except ImportError:
        read_scores = None
    if read_scores is not None:
        return read_scores(path)
    import xarray as xr

    ds = xr.open_zarr(str(path))
    cols = {}
    for name, var in ds.variables.items():
        if var.ndim != 1:
            continue
        vals = np.asarray(var.values)
        legend = var.attrs.get("gen5dask_legend")
        if legend is not None:
            vals = np.asarray(legend)[vals.astype(np.int64)]
        cols[name] = vals
    return pd.DataFrame(cols)


def _store_map(cfg: Config) -> dict[str, Path]:
    lay = cfg.layout
    return {"survey": lay.survey, "train": lay.train, "hosts": lay.hosts, "hardneg": lay.hardneg}


def lens_positions(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Known-lens positions (degrees): ``anchors.csv`` ra/dec, else anchors.zarr, else the
    survey's anchor and stress kinds."""
    lay = cfg.layout
    if lay.anchors_csv.exists():
        df = pd.read_csv(lay.anchors_csv)
        if {"ra", "dec"} <= set(df.columns):
            return df["ra"].to_numpy(np.float64), df["dec"].to_numpy(np.float64)
    if lay.anchors.exists() and is_complete(lay.anchors):
        t = read_table(lay.anchors, ["ra", "dec"])
        return t["ra"].to_numpy(), t["dec"].to_numpy()
    if lay.survey.exists() and is_complete(lay.survey):
        t = read_table(lay.survey, ["ra", "dec", "kind"])
        t = t[t["kind"].isin(["anchor", "stress"])]
        return t["ra"].to_numpy(), t["dec"].to_numpy()
    return np.zeros(0), np.zeros(0)


def build_plan(cfg: Config) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Rows of the hard-negative store: ``sample, source, src_store, src_path, src_sample,
    src_index, subtype, host_sample, score, eval_only`` sorted by output ``sample``."""
    hc = cfg.hardneg
    rows = []
    paths: dict[str, Path] = {}
    if hc.from_survey and cfg.layout.survey.exists():
        t = read_table(cfg.layout.survey, ["sample", "kind", "subtype"])
        t["src_index"] = np.arange(len(t))
        t = t[t["kind"] == "hard_negative"]
        paths["survey"] = cfg.layout.survey
        rows.append(pd.DataFrame({
            "source": "survey", "src_store": "survey", "src_sample": t["sample"].to_numpy(),
            "src_index": t["src_index"].to_numpy(), "subtype": t["subtype"].to_numpy(),
            "score": np.nan,
        }))
    if hc.votes_catalog is not None:
        votes = pd.read_csv(hc.votes_catalog)
        if hc.votes_id_column not in votes:
            msg = (f"{hc.votes_catalog}: no id column {hc.votes_id_column!r} "
                   "(hardneg.votes_id_column)")
            raise ValueError(msg)
        sub = classify_votes(votes, columns=hc.vote_columns, thresholds=hc.vote_thresholds)
        v = pd.DataFrame({"sample": votes[hc.votes_id_column].to_numpy(np.int64), "subtype": sub})
        v = v[v["subtype"] != ""]
        cut = Path(hc.cutouts_store)
        t = read_table(cut, ["sample"])
        t["src_index"] = np.arange(len(t))
        m = v.merge(t, on="sample", how="inner")
        paths["votes"] = cut
        rows.append(pd.DataFrame({
            "source": "votes", "src_store": "votes", "src_sample": m["sample"].to_numpy(),
            "src_index": m["src_index"].to_numpy(), "subtype": m["subtype"].to_numpy(),
            "score": np.nan,
        }))
    if hc.mine_from is not None and hc.mine_top_k > 0:
        scores = read_scores_table(hc.mine_from)
        positions = {}
        for name, p in _store_map(cfg).items():
            if name == "hardneg" or not (p.exists() and is_complete(p)):
                continue
            t = read_table(p, ["sample", "ra", "dec"])
            t["src_index"] = np.arange(len(t))
            positions[name] = t
            paths[f"mined:{name}"] = p
        lra, ldec = lens_positions(cfg)
        mined = mine_candidates(
            scores, positions, lens_ra=lra, lens_dec=ldec, top_k=hc.mine_top_k,
            kinds=hc.mine_kinds, exclude_radius_arcsec=hc.mine_exclude_radius_arcsec,
        )
        idx = [
            int(positions[s].set_index("sample").at[int(k), "src_index"])
            for s, k in zip(mined["store"], mined["sample"], strict=True)
        ]
        rows.append(pd.DataFrame({
            "source": "mined", "src_store": ["mined:" + s for s in mined["store"]],
            "src_sample": mined["sample"].to_numpy(np.int64), "src_index": np.asarray(idx, int),
            "subtype": "mined", "score": mined["score"].to_numpy(np.float64),
        }))
    if not rows:
        return pd.DataFrame(), paths
    plan = pd.concat(rows, ignore_index=True)
    plan["src_index"] = plan["src_index"].astype(np.int64)
    plan["sample"] = (
        plan["src_store"].map(SOURCE_CODES).to_numpy(np.int64) << ID_SHIFT
    ) + plan["src_sample"].to_numpy(np.int64)
    # a mined survey look-alike that source (a) already holds is kept once
    if "survey" in paths:
        surv_ids = set(plan.loc[plan["src_store"] == "survey", "src_sample"])
        dup = (plan["src_store"] == "mined:survey") & plan["src_sample"].isin(surv_ids)
        plan = plan[~dup]
    plan = plan.sort_values("sample", kind="stable").reset_index(drop=True)
    if plan["sample"].duplicated().any():
        msg = "hardneg: duplicate output sample ids (a source lists a sample twice)"
        raise ValueError(msg)
    bad = sorted(set(plan["subtype"]) - set(SUBTYPES))
    if bad:
        msg = f"hardneg: unknown subtype(s) {bad}; allowed {list(SUBTYPES)}"
        raise ValueError(msg)
    plan["eval_only"] = eval_only_flags(cfg.seed, plan["sample"].to_numpy(), hc.eval_fraction)
    plan["src_path"] = plan["src_store"].map({k: str(v) for k, v in paths.items()})
    return plan, paths


# ----------------------------------------------------------------------------- chunk task


_COPY_VARS = ("image", "invvar", "maskbits", "ra", "dec", "brickname", "psfsize", "psfdepth",
              "host_sample", "host_mag_r", *(t for t, _, _ in TRUTH_VARS))


def _copy_chunk(index: int, out_path: str, plan_file: str, chunk_size: int) -> dict:
    """Task: copy the pixels and metadata of output chunk ``index`` from the source stores."""
    with np.load(plan_file, allow_pickle=False) as z:
        n = z["sample"].size
        a, b = chunk_bounds(n, chunk_size)[index]
        plan = {k: z[k][a:b] for k in z.files}
    man = store_geometry(out_path)
    nb, st, m = len(man["bands"]), man["stamp_size"], b - a
    out: dict[str, np.ndarray] = {
        SAMPLE: plan["sample"],
        "kind": np.full(m, "hard_negative"),
        "label": np.zeros(m, "i1"),
        "region": np.full(m, -1, "i4"),
        "split": np.full(m, ""),
        "subtype": plan["subtype"],
        "eval_only": plan["eval_only"].astype("i1"),
        "host_sample": np.full(m, -1, "i8"),
        "host_mag_r": np.full(m, np.nan, "f4"),
        "image": np.zeros((m, nb, st, st), "f4"),
        "invvar": np.zeros((m, nb, st, st), "f4"),
        "maskbits": np.zeros((m, st, st), "i4"),
        "ra": np.zeros(m), "dec": np.zeros(m),
        "brickname": np.zeros(m, "i4"),
        "psfsize": np.full((m, nb), np.nan, "f4"),
        "psfdepth": np.full((m, nb), np.nan, "f4"),
        **{t: np.full(m, np.nan, "f4") for t, _, _ in TRUTH_VARS},
    }
    for src in np.unique(plan["src_path"]):
        rows = np.flatnonzero(plan["src_path"] == src)
        idx = plan["src_index"][rows]
        order = np.argsort(idx, kind="stable")
        smanifest = store_geometry(src)
        if smanifest["stamp_size"] != st or smanifest["bands"] != man["bands"]:
            msg = (
                f"hardneg: source store {src} has stamp {smanifest['stamp_size']} bands "
                f"{smanifest['bands']}, output needs stamp {st} bands {man['bands']}"
            )
            raise StoreError(msg)
        names = [v for v in _COPY_VARS if v in smanifest["variables"]]
        data = read_samples(src, idx[order], names)
        for name in names:
            out[name][rows[order]] = data[name]
    write_chunk(out_path, index, out)
    return {"index": index, "n": m}


@stage(
    "hardneg",
    reads=("hardneg", "seed", "chunk_size"),
    after=("simulate", "anchors",),
)
def run_hardneg(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Write ``cfg.layout.hardneg`` (kind hard_negative, label 0, ``subtype``, ``eval_only``).

    Resumable: a rerun with the same config and inputs finishes pending chunks only; ``force``
    rewrites the store, and a store made with another config is replaced. Per-type counts
    (training / evaluation slice) are store attributes.
    """
    out = cfg.layout.hardneg
    plan, paths = build_plan(cfg)
    if plan.empty:
        msg = (
            "hardneg: no hard negatives found (survey has no kind hard_negative, and neither "
            "hardneg.votes_catalog nor hardneg.mine_from gave any)"
        )
        raise ValueError(msg)
    geoms = {k: store_geometry(p) for k, p in paths.items()}
    first = next(iter(geoms.values()))
    parents = [fingerprint(p) for p in paths.values()]
    section = {"hardneg": cfg.hardneg.model_dump(), "seed": cfg.seed,
               "parents": [{k: v for k, v in p.items() if k != "created"} for p in parents]}
    counts: dict = {}
    for (sub, ev), g in plan.groupby(["subtype", "eval_only"]):
        counts.setdefault(sub, {"train": 0, "eval": 0})["eval" if ev else "train"] = len(g)
    attrs = {
        "hardneg_counts": counts,
        "hardneg_sources": {k: int((plan["source"] == k).sum())
                            for k in ("survey", "votes", "mined")},
        "hardneg_id_formula": f"(source_code << {ID_SHIFT}) + source sample id; "
                              f"codes {json.dumps(SOURCE_CODES)}",
        "eval_fraction": cfg.hardneg.eval_fraction,
        "train_mix_fraction": cfg.hardneg.train_mix_fraction,
        "eval_only_rule": 'uniform(key(seed, "hardneg", sample), 0) < eval_fraction',
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        with store_lock(out):
            pass  # refuse to replace a store another process is writing
        if force:
            shutil.rmtree(out)
    create_store(
        out, n_samples=len(plan), stage="hardneg", config=section, seed=cfg.seed,
        bands=first["bands"], stamp_size=first["stamp_size"], chunk_size=cfg.chunk_size,
        variables=OUT_VARIABLES, parents=parents, attrs=attrs, overwrite=True,
    )
    prov = cfg.layout.root / "hardneg_provenance.csv"
    plan[["sample", "source", "src_store", "src_sample", "subtype", "eval_only", "score",
          "src_path"]].to_csv(prov, index=False)
    plan_file = cfg.layout.root / ".gen5dask" / "hardneg_plan.npz"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        plan_file, sample=plan["sample"].to_numpy(np.int64),
        src_path=plan["src_path"].to_numpy().astype(str),
        src_index=plan["src_index"].to_numpy(np.int64),
        subtype=plan["subtype"].to_numpy().astype(str),
        eval_only=plan["eval_only"].to_numpy(np.int8),
    )
    with store_lock(out):
        todo = pending_chunks(out)
        cs = store_geometry(out)["chunk_size"]
        map_chunks(_copy_chunk, todo, str(out), str(plan_file), cs, client=client,
                   desc="hardneg", progress=False)
        finalize_store(out, attrs=attrs)
    return out


__all__ = [
    "ID_SHIFT",
    "SOURCE_CODES",
    "build_plan",
    "classify_votes",
    "eval_only_flags",
    "lens_positions",
    "mine_candidates",
    "read_scores_table",
    "run_hardneg",
]

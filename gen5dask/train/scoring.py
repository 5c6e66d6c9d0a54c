"""Score stores with a trained model: one chunk per task, model cached per worker process.

:func:`score_chunk` is the Dask task (module-level, picklable arguments only: paths and names).
It reads one store chunk, keeps the rows of the wanted kinds, applies the *same*
:func:`gen5dask.train.augment.network_input` as training (no augmentation), and returns the
rows' positions, sample ids and ``p_lens = sigmoid(logit)`` (float32). The model is loaded with
``torch.load(..., weights_only=True)`` once per worker process and cached in
:data:`_MODEL_CACHE`, keyed by (path, mtime, size, device).

The scores table (``cfg.layout.scores(arm)``) is a plain xarray Dataset along ``row`` (not a
contract store); string columns are Zarr v3 variable-length strings (as in contract stores;
tables of older versions held int8 codes with a ``gen5dask_legend`` attribute and still read).
:func:`read_scores` returns a DataFrame.
With ``score.embeddings`` the table also holds ``embedding`` (dims ``row, feature``, float32):
the model's penultimate-layer features (:meth:`gen5dask.train.models.LensResNet.embed`) of
every scored row, in the same row order as ``sample``; :func:`read_embeddings` returns
``(sample ids, array)``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gen5dask.store import read_chunk
from gen5dask.store.schema import INJECT_MODES, KINDS, SPLITS, SUBTYPES, TIERS, as_unicode
from gen5dask.train.augment import network_input
from gen5dask.train.models import build_model

STORE_LEGEND = ("train", "anchors", "hardneg", "survey")
#: column -> legend of the string columns of a scores table
LEGENDS: dict[str, tuple[str, ...]] = {
    "store": STORE_LEGEND, "kind": KINDS, "split": SPLITS, "tier": TIERS,
    "subtype": SUBTYPES, "inject_mode": INJECT_MODES,
}
#: columns of a scores table and their dtypes / defaults when a store lacks the variable
COLUMNS: dict[str, tuple[str, Any]] = {
    "sample": ("i8", -1), "store": ("U", ""), "score": ("f4", np.nan), "label": ("i1", 0),
    "kind": ("U", ""), "split": ("U", ""), "region": ("i4", -1), "tier": ("U", ""),
    "subtype": ("U", ""), "inject_mode": ("U", ""), "eval_only": ("i1", 0),
    "theta_e": ("f4", np.nan), "psfsize_r": ("f4", np.nan), "psfdepth_r": ("f4", np.nan),
    "arc_snr": ("f4", np.nan), "host_sample": ("i8", -1), "snr_opt": ("f4", np.nan),
}

#: name of the embedding variable of a scores table (dims ``row, feature``)
EMBEDDING = "embedding"

_MODEL_CACHE: dict[tuple, tuple[torch.nn.Module, dict]] = {}
_BAND_COL = re.compile(r"^(psfsize|psfdepth)_(\w+)$")


def load_scorer(path: str | Path, device: str | torch.device = "cpu"):
    """``(model in eval mode, model-file dict)``, cached per process (path, mtime, size, device)."""
    p = Path(path)
    st = p.stat()
    k = (str(p.resolve()), st.st_mtime_ns, st.st_size, str(device))
    if k not in _MODEL_CACHE:
        info = torch.load(p, map_location="cpu", weights_only=True)
        model = build_model(info["arch"])
        model.load_state_dict(info["state_dict"])
        model.to(device).eval()
        for old in [o for o in _MODEL_CACHE if o[0] == k[0]]:
            del _MODEL_CACHE[old]
        _MODEL_CACHE[k] = (model, info)
    return _MODEL_CACHE[k]


def variables_for_columns(columns: Sequence[str]) -> list[str]:
    """Store variables holding the given table columns (``psfsize_r`` -> ``psfsize``)."""
    out = []
    for c in columns:
        m = _BAND_COL.match(c)
        v = m.group(1) if m else c
        if v not in out:
            out.append(v)
    return out


def columns_from_chunk(data: dict, columns: Sequence[str], bands: Sequence[str]) -> np.ndarray:
    """``(n, m)`` float32 of table columns from a chunk dict (same values as ``read_table``)."""
    cols = []
    for c in columns:
        m = _BAND_COL.match(c)
        if m:
            if m.group(2) not in bands:
                msg = f"metadata column {c!r}: band {m.group(2)!r} not in store bands {bands}"
                raise ValueError(msg)
            cols.append(data[m.group(1)][:, list(bands).index(m.group(2))])
        else:
            cols.append(data[c])
    n = len(data["sample"])
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)


def score_images(
    model: torch.nn.Module,
    info: dict,
    images: np.ndarray,
    meta: np.ndarray | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    embeddings: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """p_lens for flux stamps ``(n, nband, H, W)`` (nanomaggies): shared normalisation, no
    augmentation, metadata standardised with the model file's mean/std. float32 ``(n,)``.

    With ``embeddings`` returns ``(p_lens, embedding)``, the second float32
    ``(n, model.embed_dim)`` from the same forward pass (penultimate layer, see
    :meth:`gen5dask.train.models.LensResNet.embed`)."""
    norm = info["norm"]
    x = network_input(np.ascontiguousarray(images, np.float32), r_outer=norm["r_outer"],
                      clip=norm["clip"], lens_light=norm.get("lens_light", "none"))
    n_meta = len(info["metadata_columns"])
    if n_meta:
        mean = np.asarray(info["meta_mean"], np.float32)
        std = np.asarray(info["meta_std"], np.float32)
        meta_std = ((np.asarray(meta, np.float32) - mean) / std).astype(np.float32)
    out = np.empty(x.shape[0], np.float32)
    emb = np.empty((x.shape[0], model.embed_dim), np.float32) if embeddings else None
    with torch.no_grad():
        for a in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(x[a : a + batch_size]).to(device)
            xb = xb.contiguous(memory_format=torch.channels_last)
            mb = torch.from_numpy(meta_std[a : a + batch_size]).to(device) if n_meta else None
            if emb is not None:
                logit, e = model(xb, mb, return_embedding=True)
                emb[a : a + batch_size] = e.float().cpu().numpy()
            else:
                logit = model(xb, mb)
            out[a : a + batch_size] = torch.sigmoid(logit.float()).cpu().numpy()
    return out if emb is None else (out, emb)


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def score_chunk(
    index: int,
    store_path: str,
    model_path: str,
    *,
    kinds: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    threads: int | None = None,
    embeddings: bool = False,
) -> dict[str, np.ndarray]:
    """Score the rows of chunk ``index`` of a store (rows of ``kinds`` only, if given).

    Returns ``{"index", "row" (int64 store positions), "sample" (int64), "score" (float32)}``,
    plus ``"embedding"`` (float32 ``(n, D)``) with ``embeddings``.
    On a Dask worker torch uses 1 thread (the worker count decides parallelism).
    """
    if _in_dask_worker():
        torch.set_num_threads(1)
    elif threads:
        torch.set_num_threads(int(threads))
    model, info = load_scorer(model_path, device)
    from gen5dask.store import store_geometry

    geom = store_geometry(store_path)
    cs = geom["chunk_size"]
    mcols = list(info["metadata_columns"])
    names = ["sample", "kind", "image", *[v for v in variables_for_columns(mcols)
                                          if v not in ("sample", "kind", "image")]]
    data = read_chunk(store_path, index, names, decode=True)
    keep = np.ones(len(data["sample"]), bool)
    if kinds is not None:
        keep = np.isin(data["kind"], list(kinds))
    local = np.flatnonzero(keep)
    if local.size == 0:
        out = {"index": index, "row": np.zeros(0, np.int64), "sample": np.zeros(0, np.int64),
               "score": np.zeros(0, np.float32)}
        if embeddings:
            out["embedding"] = np.zeros((0, model.embed_dim), np.float32)
        return out
    sub = {k: v[local] for k, v in data.items()}
    meta = columns_from_chunk(sub, mcols, geom["bands"])
    res = score_images(model, info, sub["image"], meta, batch_size=batch_size, device=device,
                       embeddings=embeddings)
    p, emb = res if embeddings else (res, None)
    out = {"index": index, "row": (index * cs + local).astype(np.int64),
           "sample": sub["sample"].astype(np.int64), "score": p}
    if emb is not None:
        out["embedding"] = emb
    return out


def scores_table(store_name: str, table: pd.DataFrame, rows: np.ndarray,
                 scores: np.ndarray) -> pd.DataFrame:
    """Scores-table rows of one store: its ``read_table`` at ``rows`` plus ``score``."""
    sub = table.iloc[np.asarray(rows, np.int64)].reset_index(drop=True)
    out = {}
    for col, (dtype, default) in COLUMNS.items():
        if col == "store":
            out[col] = np.full(len(sub), store_name)
        elif col == "score":
            out[col] = np.asarray(scores, np.float32)
        elif col in sub.columns:
            vals = sub[col].to_numpy()
            out[col] = vals.astype(str) if dtype == "U" else vals.astype(dtype)
        else:
            out[col] = np.full(len(sub), default, dtype=None if dtype == "U" else dtype)
    return pd.DataFrame(out)


def write_scores(path: str | Path, df: pd.DataFrame, *, attrs: dict | None = None,
                 embedding: np.ndarray | None = None) -> Path:
    """Write a scores table as a Zarr (xarray Dataset along ``row``; strings as strings).

    ``embedding``: optional float32 ``(len(df), D)`` penultimate-layer features, one row per
    table row, written as variable ``embedding`` with dims ``(row, feature)``.
    """
    import xarray as xr

    from gen5dask.store.zarrstore import quiet_zarr

    path = Path(path)
    data_vars = {}
    for col, (dtype, _) in COLUMNS.items():
        vals = df[col].to_numpy()
        if col in LEGENDS:
            legend = LEGENDS[col]
            lookup = {s: i for i, s in enumerate(legend)}
            bad = sorted({str(v) for v in vals} - set(lookup))
            if bad:
                msg = f"scores column {col!r}: unknown value(s) {bad}; legend {list(legend)}"
                raise ValueError(msg)
            strings = np.asarray(vals, dtype=str).astype(np.dtypes.StringDType())
            data_vars[col] = ("row", strings, {"allowed_values": list(legend)})  # Zarr v3 strings
        else:
            data_vars[col] = ("row", vals.astype(dtype), {})
    if embedding is not None:
        emb = np.asarray(embedding, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(df):
            msg = f"embedding must be ({len(df)}, D) (one row per table row), got {emb.shape}"
            raise ValueError(msg)
        data_vars[EMBEDDING] = (("row", "feature"), emb, {
            "long_name": "penultimate-layer features of the scoring model (LensResNet.embed)",
            "units": "1"})
    ds = xr.Dataset(data_vars, attrs=dict(attrs or {}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_zarr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=3)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _quiet():
    """Zarr's and xarray's messages about a scores table's own layout, silenced while reading."""
    from gen5dask.store.zarrstore import quiet_zarr

    with quiet_zarr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open_scores(path: str | Path):
    """``(path, lazy Dataset)`` of a scores table; a missing table says what to run."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        msg = f"scores table {p} does not exist; run `gen5dask score`"
        raise FileNotFoundError(msg)
    with _quiet():
        return p, xr.open_zarr(p, consolidated=True)


def read_scores(path: str | Path) -> pd.DataFrame:
    """A scores table as a DataFrame with decoded string columns (one row per scored sample)."""
    p, ds = _open_scores(path)
    with _quiet():
        ds = ds.load()
    out = {}
    for name in ds.data_vars:
        if ds[name].dims != ("row",):
            continue  # e.g. ``embedding`` (row, feature): read_embeddings
        vals = ds[name].values
        legend = ds[name].attrs.get("gen5dask_legend")
        out[name] = (np.asarray(legend)[vals.astype(np.int64)] if legend is not None  # old tables
                     else as_unicode(vals) if vals.dtype.kind == "T" else vals)
    return pd.DataFrame(out)


def read_embeddings(path: str | Path, *, store: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate-layer embeddings of a scores table: ``(sample ids int64 (n,), float32 (n, D))``.

    Rows are in table order (the order of :func:`read_scores`); ``store`` keeps only the rows of
    one scored store (``train``, ``anchors``, ``hardneg``, ``survey``).

    Raises
    ------
    FileNotFoundError
        If the table does not exist.
    KeyError
        If it has no ``embedding`` variable (scored with ``score.embeddings: false``).
    """
    p, ds = _open_scores(path)
    with _quiet():
        if EMBEDDING not in ds:
            msg = f"{p}: no {EMBEDDING!r} variable; rescore with score.embeddings: true"
            raise KeyError(msg)
        ids = ds["sample"].values.astype(np.int64)
        emb = ds[EMBEDDING].values.astype(np.float32)
        if store is not None:
            attrs = ds["store"].attrs
            legend = list(attrs.get("gen5dask_legend") or attrs.get("allowed_values") or [])
            if store not in legend:
                msg = f"store must be one of {legend}, got {store!r}"
                raise ValueError(msg)
            vals = ds["store"].values
            keep = (vals.astype(np.int64) == legend.index(store) if vals.dtype.kind in "iu"
                    else as_unicode(vals) == store)  # old tables: int8 codes; now strings
            ids, emb = ids[keep], emb[keep]
    return ids, emb


def read_scores_attrs(path: str | Path) -> dict:
    """Attributes of a scores table (arm, model, provenance)."""
    import xarray as xr

    from gen5dask.store.zarrstore import quiet_zarr

    with quiet_zarr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(xr.open_zarr(Path(path), consolidated=True).attrs)


__all__ = [
    "COLUMNS",
    "EMBEDDING",
    "LEGENDS",
    "STORE_LEGEND",
    "columns_from_chunk",
    "load_scorer",
    "read_embeddings",
    "read_scores",
    "read_scores_attrs",
    "score_chunk",
    "score_images",
    "scores_table",
    "variables_for_columns",
    "write_scores",
]

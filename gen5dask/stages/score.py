"""``gen5dask score``: score every evaluation store with each arm's model.

For every arm with a model file (``cfg.layout.model(arm)``), scores ``train.zarr`` (all
splits), ``anchors.zarr``, ``hardneg.zarr`` and the ``survey.zarr`` rows of kind ``ring`` (by
default; ``score.survey_kinds``) — missing stores are skipped with a note recorded in the
table's attributes — and writes ``cfg.layout.scores(arm)`` (see
:mod:`gen5dask.train.scoring`). ``score.backend: dask`` runs one task per store chunk on the
cluster (``client=None`` runs the same tasks in-process); ``local`` scores in this process on
``score.device`` (a GPU if available). Scores are identical for any worker count.

Idempotent: a table whose recorded fingerprint (model file, score config, input stores) matches
is kept; ``force=True`` rescores.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.provenance import config_hash, provenance_attrs
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.store import chunk_bounds, fingerprint, is_complete, store_geometry
from gen5dask.train.dataset import store_table


def _store_paths(cfg) -> dict[str, Path]:
    lay = cfg.layout
    return {"train": lay.train, "anchors": lay.anchors, "hardneg": lay.hardneg,
            "survey": lay.survey}


def _arms(cfg) -> list[str]:
    names = [a.name for a in cfg.ablation.arms]
    if cfg.score.arms is not None:
        unknown = [n for n in cfg.score.arms if n not in names]
        if unknown:
            msg = f"score.arms: unknown arm(s) {unknown}; ablation.arms has {names}"
            raise ValueError(msg)
        names = [n for n in names if n in set(cfg.score.arms)]
    return names


def score_arm(cfg, arm: str, client=None, *, force: bool = False) -> Path | None:
    """Score every evaluation store with one arm's model; returns the table path (None: no
    model file)."""
    import torch

    from gen5dask.train.scoring import (
        score_chunk,
        scores_table,
        write_scores,
    )
    from gen5dask.train.trainer import resolve_device

    sc = cfg.score
    model_path = cfg.layout.model(arm)
    if not model_path.exists():
        print(f"[score] {arm}: no model file {model_path}; skipped", file=sys.stderr)
        return None
    out = cfg.layout.scores(arm)
    stores, skipped = {}, []
    for name in sc.stores:
        p = _store_paths(cfg)[name]
        if is_complete(p):
            stores[name] = p
        else:
            skipped.append(name)
            print(f"[score] {arm}: store {name} ({p}) missing or incomplete; skipped",
                  file=sys.stderr)
    st = model_path.stat()
    info = torch.load(model_path, map_location="cpu", weights_only=True)
    fp = config_hash({
        "model": [info.get("fingerprint"), st.st_mtime_ns, st.st_size],
        "score": sc.model_dump(mode="json", exclude={"backend", "device", "torch_threads"}),
        "stores": {k: fingerprint(v)["config_hash"] for k, v in stores.items()},
        "n": {k: store_geometry(v)["n_samples"] for k, v in stores.items()},
    })
    if out.exists() and not force:
        from gen5dask.train.scoring import read_scores_attrs

        try:
            if read_scores_attrs(out).get("scores_fingerprint") == fp:
                print(f"[score] {arm}: up to date ({out})", file=sys.stderr)
                return out
        except (OSError, ValueError, KeyError):
            pass
    local = sc.backend == "local"
    device = str(resolve_device(sc.device)) if local else "cpu"
    threads = (sc.torch_threads or os.cpu_count() or 1) if (local or client is None) else 1
    frames, embs = [], []
    for name, path in stores.items():
        table = store_table(path)
        kinds = list(sc.survey_kinds) if name == "survey" else None
        want = np.ones(len(table), bool) if kinds is None else table["kind"].isin(kinds).to_numpy()
        geom = store_geometry(path)
        bounds = chunk_bounds(geom["n_samples"], geom["chunk_size"])
        idx = [i for i, (a, b) in enumerate(bounds) if want[a:b].any()]
        kw = {"kinds": kinds, "batch_size": sc.batch_size, "device": device, "threads": threads,
              "embeddings": sc.embeddings}
        res = map_chunks(score_chunk, idx, str(path), str(model_path),
                         client=None if local else client, desc=f"score {arm}:{name}",
                         progress=cfg.cluster.progress, **kw)
        rows = np.concatenate([r["row"] for r in res]) if res else np.zeros(0, np.int64)
        scores = np.concatenate([r["score"] for r in res]) if res else np.zeros(0, np.float32)
        sample = np.concatenate([r["sample"] for r in res]) if res else np.zeros(0, np.int64)
        if sc.embeddings:
            embs.append(np.concatenate([r["embedding"] for r in res]) if res else None)
        df = scores_table(name, table, rows, scores)
        if not np.array_equal(df["sample"].to_numpy(), sample):
            msg = f"{path}: sample ids of scored rows do not match the table (store changed?)"
            raise RuntimeError(msg)
        frames.append(df)
    from gen5dask.train.scoring import COLUMNS

    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: [] for c in COLUMNS})
    attrs = provenance_attrs(stage="score", config=sc, seed=cfg.seed,
                             parents=[fingerprint(p) for p in stores.values()])
    attrs.update({
        "arm": arm, "model": str(model_path), "model_fingerprint": str(info.get("fingerprint")),
        "selection_metric": info["selection_metric"],
        "selection_value": float(info["selection_value"]), "model_epoch": int(info["epoch"]),
        "stores_scored": json.dumps(list(stores)), "stores_skipped": json.dumps(skipped),
        "survey_kinds": json.dumps(list(sc.survey_kinds)), "scores_fingerprint": fp,
        "score_definition": "p_lens = sigmoid(logit) of the selected checkpoint, no augmentation",
    })
    emb = None
    if sc.embeddings:
        parts = [e for e in embs if e is not None]
        emb = np.concatenate(parts) if parts else np.zeros((len(df), 0), np.float32)
    write_scores(out, df, attrs=attrs, embedding=emb)
    print(f"[score] {arm}: {len(df)} rows -> {out}", file=sys.stderr)
    return out


@stage(
    "score",
    reads=("score", "ablation.arms", "seed"),
    after=("train",),
)
def run_score(cfg, client=None, *, force: bool = False) -> Path:
    """Score every arm with a model (see module docstring). Returns the scores directory."""
    done = [score_arm(cfg, arm, client, force=force) for arm in _arms(cfg)]
    if not any(done):
        msg = f"no model files under {cfg.layout.models_dir}; run `gen5dask train` first"
        raise FileNotFoundError(msg)
    return cfg.layout.root / "scores"


__all__ = ["run_score", "score_arm"]

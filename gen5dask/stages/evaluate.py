"""``gen5dask evaluate``: metrics of every arm from its scores table, and the decision tree.

Everything is computed from ``OUTPUT_DIR/scores/<arm>.zarr`` alone, so any reader can recompute
the numbers in ``report/metrics.json`` from those tables (DESIGN §7).
"""

from __future__ import annotations

import json
from pathlib import Path

from gen5dask.evaluate.decision import decide
from gen5dask.evaluate.metrics import arm_metrics_kwargs, compute_arm_metrics
from gen5dask.evaluate.realism import arm_realism_probe
from gen5dask.evaluate.report import metrics_document
from gen5dask.log import get_logger
from gen5dask.stages.declare import stage

log = get_logger(__name__)


def arm_names(cfg) -> list[str]:
    """Names of the configured ablation arms."""
    return [a.name for a in cfg.ablation.arms]


def load_scores(cfg, arm: str):
    """The scores table of one arm as a DataFrame, string columns as pandas ``Categorical``
    (the values of ``gen5dask.train.scoring.read_scores``, ~4x less driver memory at 10^7 rows:
    :func:`gen5dask.columns.read_table_categorical`)."""
    from gen5dask.columns import read_table_categorical

    path = cfg.layout.scores(arm)
    if not path.exists():
        msg = f"scores table {path} does not exist; run `gen5dask score`"
        raise FileNotFoundError(msg)
    return read_table_categorical(path)


def write_metrics_json(path: str | Path, *, metrics: dict, decision: dict,
                       primary_metric: str) -> Path:
    """Write :func:`gen5dask.evaluate.report.metrics_document` as strict JSON (no NaN)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = metrics_document(metrics=metrics, decision=decision, primary_metric=primary_metric)
    p.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return p


def probe_arm(cfg, arm: str, scores) -> dict:
    """The realism probe of one arm from its scores table and the embeddings in its store."""
    from gen5dask.train.scoring import read_embeddings

    ev = cfg.evaluate
    path = cfg.layout.scores(arm)
    try:
        ids, emb = read_embeddings(path)
    except KeyError:
        return {"auc": None, "reason": f"{path} holds no embeddings (score.embeddings is off)"}
    if len(ids) != len(scores) or (ids != scores["sample"].to_numpy()).any():
        msg = f"{path}: embedding rows do not follow the scores table's rows"
        raise ValueError(msg)
    return arm_realism_probe(scores, emb, inject_mode=ev.inject_mode,
                             tiers=tuple(ev.spearman_tiers), n_folds=ev.realism_folds,
                             seed=int(cfg.seed) + ev.bootstrap_seed_offset,
                             n_boot=ev.n_bootstrap, conf=ev.conf)


def evaluate_arms(cfg) -> dict:
    """``{arm: compute_arm_metrics(...)}`` for every arm whose scores table exists (with the
    realism probe as ``realism_probe`` and ``realism_probe_auc`` when ``evaluate.realism_probe``).
    """
    metrics = {}
    kwargs = arm_metrics_kwargs(cfg.evaluate, seed=cfg.seed)
    for arm in arm_names(cfg):
        path = cfg.layout.scores(arm)
        if not path.exists():
            log.warning(f"evaluate: no scores for arm {arm!r} ({path}); skipped")
            continue
        scores = load_scores(cfg, arm)
        m = compute_arm_metrics(scores, **kwargs)
        if cfg.evaluate.realism_probe:
            probe = probe_arm(cfg, arm, scores)
            m["realism_probe"] = probe
            m["realism_probe_auc"] = probe.get("auc")
            m["realism_probe_auc_bootstrap"] = probe.get("auc_bootstrap", [None, None])
        metrics[arm] = m
    return metrics


@stage(
    "evaluate",
    reads=("evaluate", "ablation", "seed"),
    after=("score",),
)
def run_evaluate(cfg, client=None, *, force: bool = False) -> Path:
    """Compute metrics and the decision; write ``report/metrics.json``."""
    return evaluate_and_write(cfg)


def evaluate_and_write(cfg, *, mask_resolution: dict | None = None) -> Path:
    """Metrics of every arm and the decision, written to ``report/metrics.json``.

    ``mask_resolution`` (from the ablation stage) records how ``center_mask: "decision"`` arms
    were resolved; it is written as ``decision.center_mask_resolution``.
    """
    metrics = evaluate_arms(cfg)
    if not metrics:
        msg = f"evaluate: no scores tables under {cfg.layout.root / 'scores'}; run `score` first"
        raise FileNotFoundError(msg)
    decision = decide(metrics, cfg.ablation)
    decision["center_mask_resolution"] = dict(mask_resolution or {})
    path = write_metrics_json(
        cfg.layout.metrics_json,
        metrics=metrics,
        decision=decision,
        primary_metric=cfg.evaluate.primary_metric,
    )
    summary = {
        arm: {k: m.get(k) for k in ("auc", "recall_at_fpr_0.01", "tier_a_recall_at_fpr_0.01")}
        for arm, m in metrics.items()
    }
    log.info(f"evaluate: {json.dumps(summary)}\n  decision: {decision.get('branch')}")
    return Path(path)


__all__ = ["arm_names", "evaluate_and_write", "evaluate_arms", "load_scores", "probe_arm",
           "run_evaluate", "write_metrics_json"]

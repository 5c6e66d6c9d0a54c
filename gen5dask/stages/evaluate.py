"""``gen5dask evaluate``: metrics of every arm from its scores table, and the decision tree.

Everything is computed from ``OUTPUT_DIR/scores/<arm>.zarr`` alone, so any reader can recompute
the numbers in ``report/metrics.json`` from those tables (DESIGN §7).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gen5dask.evaluate.decision import decide
from gen5dask.evaluate.metrics import arm_metrics_kwargs, compute_arm_metrics
from gen5dask.evaluate.report import write_metrics_json
from gen5dask.stages.declare import stage


def arm_names(cfg) -> list[str]:
    """Names of the configured ablation arms."""
    return [a.name for a in cfg.ablation.arms]


def load_scores(cfg, arm: str):
    """The scores table of one arm as a DataFrame (strings decoded)."""
    from gen5dask.train.scoring import read_scores

    return read_scores(cfg.layout.scores(arm))


def evaluate_arms(cfg) -> dict:
    """``{arm: compute_arm_metrics(...)}`` for every arm whose scores table exists."""
    metrics = {}
    kwargs = arm_metrics_kwargs(cfg.evaluate, seed=cfg.seed)
    for arm in arm_names(cfg):
        path = cfg.layout.scores(arm)
        if not path.exists():
            print(f"evaluate: no scores for arm {arm!r} ({path}); skipped", file=sys.stderr)
            continue
        metrics[arm] = compute_arm_metrics(load_scores(cfg, arm), **kwargs)
    return metrics


@stage(
    "evaluate",
    reads=("evaluate", "ablation", "seed"),
    after=("score",),
)
def run_evaluate(cfg, client=None, *, force: bool = False) -> Path:
    """Compute metrics and the decision; write ``report/metrics.json``."""
    metrics = evaluate_arms(cfg)
    if not metrics:
        msg = f"evaluate: no scores tables under {cfg.layout.root / 'scores'}; run `score` first"
        raise FileNotFoundError(msg)
    decision = decide(metrics, cfg.ablation)
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
    print(f"evaluate: {json.dumps(summary)}\n  decision: {decision.get('branch')}", file=sys.stderr)
    return Path(path)


__all__ = ["arm_names", "evaluate_arms", "load_scores", "run_evaluate"]

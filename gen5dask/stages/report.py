"""``gen5dask report``: the self-contained HTML report and metrics.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from gen5dask.evaluate.decision import decide
from gen5dask.evaluate.report import build_report
from gen5dask.provenance import config_yaml
from gen5dask.stages.evaluate import arm_names, evaluate_arms, load_scores


def anchor_gallery(cfg, metrics_arm: str | None) -> list[dict]:
    """Anchor cutouts with the final arm's scores for the report gallery."""
    lay = cfg.layout
    if not lay.anchors.exists() or not lay.anchors_csv.exists():
        return []
    from gen5dask.viz import stamp_gallery_items

    table = pd.read_csv(lay.anchors_csv)
    scores = {}
    if metrics_arm and lay.scores(metrics_arm).exists():
        df = load_scores(cfg, metrics_arm)
        df = df[df["store"] == "anchors"]
        scores = dict(zip(df["sample"], df["score"], strict=True))
    table = table.assign(score=table["sample"].map(scores))
    table = table.sort_values(["tier", "score"], ascending=[True, False])
    items = stamp_gallery_items(
        lay.anchors, table["sample"].to_numpy(), max_items=cfg.report.gallery_size
    )
    info = table.set_index("sample")
    for item in items:
        row = info.loc[item["sample"]]
        item.update(
            {
                "name": row["name"],
                "tier": row["tier"],
                "score": None if pd.isna(row["score"]) else float(row["score"]),
            }
        )
    return items


def run_report(cfg, client=None, *, force: bool = False) -> Path:
    """Build ``report/index.html`` from everything under ``output_dir``."""
    lay = cfg.layout
    metrics = evaluate_arms(cfg)
    final = cfg.ablation.decision.final_arm
    decision = decide(metrics, cfg.ablation)
    if lay.metrics_json.exists():  # how the ablation resolved center_mask: decision
        previous = json.loads(lay.metrics_json.read_text()).get("decision", {})
        decision["center_mask_resolution"] = previous.get("center_mask_resolution", {})
    path = build_report(
        lay.root,
        metrics=metrics,
        config_text=config_yaml(cfg),
        decision=decision,
        decision_config=cfg.ablation.decision,
        gallery=anchor_gallery(cfg, final),
        report_config=cfg.report,
        primary_metric=cfg.evaluate.primary_metric,
        arms=arm_names(cfg),
    )
    decision = json.loads(lay.metrics_json.read_text()).get("decision", {})
    print(f"report: {path}\n  decision: {decision.get('branch')}", file=sys.stderr)
    return Path(path)


__all__ = ["anchor_gallery", "run_report"]

"""``gen5dask report``: read a run's outputs, render the self-contained HTML report, write it and
``report/metrics.json``.

The rendering is pure (:func:`gen5dask.evaluate.report.render_report`); this stage does the file
reading (:func:`load_report_inputs`) and writing (:func:`build_report`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gen5dask.config.ablation import DecisionConfig
from gen5dask.config.report import ReportConfig
from gen5dask.evaluate.decision import decide
from gen5dask.evaluate.report import ReportInputs, render_report
from gen5dask.log import get_logger
from gen5dask.paths import OutputLayout
from gen5dask.provenance import config_yaml
from gen5dask.stages.declare import stage
from gen5dask.stages.evaluate import arm_names, evaluate_arms, load_scores, write_metrics_json

log = get_logger(__name__)


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines file (blank lines skipped).

    Raises
    ------
    ValueError
        A line that is not a JSON object (names the file and line number).
    """
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{path}:{i}: not valid JSON ({exc.msg})"
            raise ValueError(msg) from exc
        if not isinstance(rec, dict):
            msg = f"{path}:{i}: expected a JSON object, got {type(rec).__name__}"
            raise ValueError(msg)
        out.append(rec)
    return out


def load_report_inputs(layout: OutputLayout, arms: Sequence[str] = ()) -> ReportInputs:
    """Read every input of the report that exists under ``layout``.

    An absent file is recorded in ``missing`` (with the stage that makes it); a file that exists
    but cannot be read is recorded in ``errors`` (type and message), so its section shows the
    error while the rest of the report is still written.
    """
    loaded: dict = {}
    missing: dict[str, str] = {}
    errors: dict[str, str] = {}

    def load(name: str, path: Path, reader, absent: str) -> None:
        if not path.exists():
            missing[name] = f"{absent} (not run)"
            return
        try:
            loaded[name] = reader(path)
        except Exception as exc:  # recorded and shown in its section
            errors[name] = f"{type(exc).__name__}: {exc}"

    def read_json(p: Path):
        return json.loads(p.read_text())

    load("gates", layout.gates_json, read_json, f"{layout.gates_json.name} not found: audit")
    load("audit", layout.audit_dir / "audit.json", read_json, "audit/audit.json not found: audit")
    load("calibration", layout.calibration_json, read_json,
         f"{layout.calibration_json.name} not found: calibrate")
    load("region_map_png", layout.split_dir / "region_map.png", Path.read_bytes,
         "split/region_map.png not found: split")
    load("rejected_anchors", layout.anchors_rejected_csv,
         lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
         f"{layout.anchors_rejected_csv.name} not found: anchors")
    logs: dict[str, list] = {}
    log_errors = []
    for arm in arms:
        p = layout.train_log(arm)
        if p.exists():
            try:
                logs[arm] = read_jsonl(p)
            except ValueError as exc:
                log_errors.append(f"{exc}")
    if log_errors:
        errors["training_logs"] = "ValueError: " + "; ".join(log_errors)
    models, model_errors = {}, []
    for arm in arms:
        p = layout.model(arm)
        if p.exists():
            from gen5dask.train.trainer import model_summary

            try:
                models[arm] = model_summary(p)
            except Exception as exc:  # shown in the training section
                model_errors.append(f"{p}: {type(exc).__name__}: {exc}")
    if model_errors:
        errors["models"] = "; ".join(model_errors)
    if not logs:
        missing["training_logs"] = "no models/<arm>_log.jsonl found (train not run)"
    gates = loaded.get("gates")
    if isinstance(gates, dict):
        gates = gates.get("gates", [gates])
    return ReportInputs(gates=gates, audit=loaded.get("audit"),
                        calibration=loaded.get("calibration"),
                        region_map_png=loaded.get("region_map_png"), training_logs=logs,
                        models=models,
                        rejected_anchors=loaded.get("rejected_anchors"), missing=missing,
                        errors=errors)


def build_report(
    output_dir: str | Path,
    *,
    metrics: dict,
    config_text: str,
    decision: dict | None = None,
    decision_config: DecisionConfig | None = None,
    gallery: Sequence[dict] = (),
    report_config: ReportConfig | None = None,
    primary_metric: str = "tier_a_recall_at_fpr_0.01",
    arms: Sequence[str] = (),
) -> Path:
    """Read the inputs under ``output_dir``, write ``report/index.html`` and
    ``report/metrics.json``; returns the HTML path.

    ``decision`` defaults to :func:`gen5dask.evaluate.decision.decide` of ``metrics`` with
    ``decision_config``; see :func:`gen5dask.evaluate.report.render_report` for the rest.
    """
    layout = OutputLayout(output_dir)
    if decision is None:
        decision = decide(metrics, decision_config or DecisionConfig())
    inputs = load_report_inputs(layout, list(dict.fromkeys([*metrics, *arms])))
    page = render_report(inputs, metrics=metrics, decision=decision, config_text=config_text,
                         gallery=gallery, report_config=report_config,
                         primary_metric=primary_metric, arms=arms,
                         output_dir_label=str(layout.root))
    layout.report_dir.mkdir(parents=True, exist_ok=True)
    layout.report_html.write_text(page, encoding="utf-8")
    write_metrics_json(layout.metrics_json, metrics=metrics, decision=decision,
                       primary_metric=primary_metric)
    return layout.report_html


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


@stage(
    "report",
    reads=("report", "evaluate", "ablation", "seed"),
    after=("ablation",),
)
def run_report(cfg, client=None, *, force: bool = False) -> Path:
    """Build ``report/index.html`` from everything under ``output_dir``."""
    lay = cfg.layout
    final = cfg.ablation.decision.final_arm
    if lay.metrics_json.exists():
        # written by the ablation/evaluate stage this report follows: not computed twice
        doc = json.loads(lay.metrics_json.read_text())
        metrics, decision = doc["arms"], doc["decision"]
    else:
        metrics = evaluate_arms(cfg)
        decision = decide(metrics, cfg.ablation)
    path = build_report(
        lay.root,
        metrics=metrics,
        config_text=config_yaml(cfg),
        decision=decision,
        gallery=anchor_gallery(cfg, final),
        report_config=cfg.report,
        primary_metric=cfg.evaluate.primary_metric,
        arms=arm_names(cfg),
    )
    log.info(f"report: {path}\n  decision: {decision.get('branch')}")
    return Path(path)


__all__ = [
    "anchor_gallery",
    "build_report",
    "load_report_inputs",
    "read_jsonl",
    "run_report",
]

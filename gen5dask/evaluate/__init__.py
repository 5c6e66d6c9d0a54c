"""Evaluation layer: metrics, statistics, selection function, decision tree, plots and report.

Pure functions over pandas DataFrames, numpy arrays and dicts (no Dask, no stores):

* :mod:`.metrics` — the exact operating point, recalls with intervals, AUC, TPR0/TPR10, rings,
  Spearman, saturation; :func:`compute_arm_metrics` gathers them for one arm;
* :mod:`.stats` — Wilson and bootstrap intervals, population comparisons (also used by the audit);
* :mod:`.selection` — completeness in 1-D and 2-D bins;
* :mod:`.decision` — the plan's decision tree and success criteria;
* :mod:`.limits` — the matched-filter limit of a recall, and reweighted recalls;
* :mod:`.realism` — the realism probe on a network's embeddings;
* :mod:`.plots` and :mod:`.report` — PNG figures and the self-contained HTML report (rendered
  from loaded inputs; the ``report`` stage reads and writes the files).
"""

from gen5dask.evaluate.decision import decide
from gen5dask.evaluate.limits import limit_recall, matched_filter_recall
from gen5dask.evaluate.metrics import (
    arm_metrics_kwargs,
    compute_arm_metrics,
    evaluation_negatives,
    operating_point,
)
from gen5dask.evaluate.realism import realism_probe
from gen5dask.evaluate.report import render_report
from gen5dask.evaluate.stats import (
    bootstrap_ci,
    cliffs_delta,
    compare_populations,
    effect_size_summary,
    wilson_interval,
)

__all__ = [
    "arm_metrics_kwargs",
    "bootstrap_ci",
    "cliffs_delta",
    "compare_populations",
    "compute_arm_metrics",
    "decide",
    "effect_size_summary",
    "evaluation_negatives",
    "limit_recall",
    "matched_filter_recall",
    "operating_point",
    "realism_probe",
    "render_report",
    "wilson_interval",
]

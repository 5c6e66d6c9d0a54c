"""Stages: orchestration of kernels over stores. Each is ``run_<stage>(cfg, client) -> Path``.

The registry maps CLI names to ``module:function`` and imports lazily, so ``gen5dask --help``
stays fast and a stage's heavy imports (torch, lenscat) load only when it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

STAGES: dict[str, tuple[str, str]] = {
    "simulate": ("gen5dask.stages.simulate:run_simulate", "mock DR10 survey -> survey.zarr"),
    "ingest": ("gen5dask.stages.ingest:run_ingest", "FITS cutouts / DR10 bricks -> hosts.zarr"),
    "fetch": ("gen5dask.stages.fetch:run_fetch", "download DR10 cutouts for a catalogue"),
    "anchors": ("gen5dask.stages.anchors:run_anchors", "Tier-A anchors -> anchors.zarr"),
    "inspect": ("gen5dask.stages.inspect:run_inspect", "anchor gallery for visual grading"),
    "hardneg": ("gen5dask.stages.hardneg:run_hardneg", "hard negatives -> hardneg.zarr"),
    "calibrate": ("gen5dask.stages.calibrate:run_calibrate", "arc-S/N target -> calibration.json"),
    "inject": ("gen5dask.stages.inject:run_inject", "lensed-arc injection -> train.zarr"),
    "split": ("gen5dask.stages.split:run_split", "region-disjoint train/val/test splits"),
    "audit": ("gen5dask.stages.audit:run_audit", "diagnostics and gates -> gates.json"),
    "train": ("gen5dask.stages.train:run_train", "train the ablation arms -> models/"),
    "score": ("gen5dask.stages.score:run_score", "score every store -> scores/<arm>.zarr"),
    "evaluate": ("gen5dask.stages.evaluate:run_evaluate", "metrics -> report/metrics.json"),
    "ablation": ("gen5dask.stages.ablation:run_ablation", "train+score+evaluate arms, decide"),
    "report": ("gen5dask.stages.report:run_report", "HTML report -> report/index.html"),
}


def get_stage(name: str) -> Callable:
    """Import and return the stage function registered under ``name``."""
    try:
        target = STAGES[name][0]
    except KeyError:
        msg = f"unknown stage {name!r}; stages: {', '.join(STAGES)}"
        raise KeyError(msg) from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


__all__ = ["STAGES", "get_stage"]

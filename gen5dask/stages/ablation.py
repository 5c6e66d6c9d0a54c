"""``gen5dask ablation`` (plan Priorities 1 and 6): train every arm on the same splits and seeds,
score them, evaluate them and walk the decision tree."""

from __future__ import annotations

from pathlib import Path

from gen5dask.stages.declare import stage
from gen5dask.stages.evaluate import run_evaluate


@stage(
    "ablation",
    reads=(
        "train", "score", "evaluate", "ablation", "gates", "seed", "bands", "stamp_size",
        "pixscale",
    ),
    after=("audit",),
)
def run_ablation(cfg, client=None, *, force: bool = False) -> Path:
    """Train + score + evaluate all arms of ``ablation.arms``; returns ``report/metrics.json``."""
    from gen5dask.stages.score import run_score
    from gen5dask.stages.train import run_train

    run_train(cfg, client=client, force=force)
    run_score(cfg, client=client, force=force)
    return run_evaluate(cfg, client=client, force=force)


__all__ = ["run_ablation"]

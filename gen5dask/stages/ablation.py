"""``gen5dask ablation`` (plan Priorities 1 and 6): train every arm on the same splits and seeds,
score them, evaluate them and walk the decision tree.

Arms with ``center_mask: "decision"`` (by default the remediated arm, Gen5') wait for the
centre-masked ablation: the other arms are trained, scored and evaluated first, the decision tree
says whether the mask is carried into Gen5' (:func:`gen5dask.evaluate.decision.final_arm_mask`),
and only then are the waiting arms trained with the resolved setting. The resolution is recorded
in ``metrics.json`` (``decision.center_mask_resolution``).

Train and score are fingerprint-idempotent per arm (an arm whose model or scores table was made
from the same inputs is kept, any other is rebuilt), so the ablation calls them with
``force=False`` even when ``gen5dask run`` rebuilds it after a config change: a changed
evaluation setting re-evaluates without retraining, and the outputs equal a fresh run's. To
retrain unchanged arms on purpose: ``gen5dask train CONFIG --force``.
"""

from __future__ import annotations

from pathlib import Path

from gen5dask.evaluate.decision import decide, resolve_arms
from gen5dask.stages.declare import full_config, stage
from gen5dask.stages.evaluate import evaluate_and_write, evaluate_arms


def with_arms(cfg, arms, names: list[str] | None = None):
    """A copy of the run config with ``ablation.arms`` replaced and train/score restricted to
    ``names`` (all arms when None)."""
    cfg = full_config(cfg)
    ablation = cfg.ablation.model_copy(update={"arms": list(arms)})
    return cfg.model_copy(update={
        "ablation": ablation,
        "train": cfg.train.model_copy(update={"arms": names}),
        "score": cfg.score.model_copy(update={"arms": names}),
    })


def resolved_config(cfg, client=None, *, force: bool = False):
    """Train, score and evaluate the deciding arms, then resolve ``center_mask: "decision"``.

    Returns ``(cfg with concrete arms, resolution, waiting arm names)``; the resolution is ``{}``
    and no arm waits when no arm has ``center_mask: "decision"`` (then nothing is trained here).
    """
    from gen5dask.stages.score import run_score
    from gen5dask.stages.train import run_train

    arms = list(cfg.ablation.arms)
    waiting = [a.name for a in arms if a.center_mask == "decision"]
    if not waiting:
        return cfg, {}, []
    first = [a.name for a in arms if a.name not in waiting]
    deciding = with_arms(cfg, [a for a in arms if a.name in first], first)
    run_train(deciding, client=client, force=False)
    run_score(deciding, client=client, force=False)
    decision = decide(evaluate_arms(deciding), cfg.ablation)
    concrete, resolution = resolve_arms(arms, decision)
    return with_arms(cfg, concrete), resolution, waiting


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

    concrete, resolution, waiting = resolved_config(cfg, client=client, force=force)
    rest = with_arms(concrete, concrete.ablation.arms, waiting or None)
    run_train(rest, client=client, force=False)
    run_score(rest, client=client, force=False)
    return evaluate_and_write(concrete, mask_resolution=resolution)


__all__ = ["resolved_config", "run_ablation", "with_arms"]

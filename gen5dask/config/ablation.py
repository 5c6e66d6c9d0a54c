"""Config section `ablation`: the arms trained and the decision-tree thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gen5dask.config.base import Section


class ArmConfig(Section):
    """One ablation arm: a training recipe."""

    name: str
    """Arm name (used in file names: ``models/<name>.pt``, ``scores/<name>.zarr``)."""
    brightness: Literal["uncalibrated", "calibrated"]
    """Which injections are trained on: the Gen5 recipe ("uncalibrated") or injections
    calibrated to the Tier-A arc_snr target ("calibrated")."""
    hard_negatives: bool
    """Whether hard negatives (training slice) are mixed into the training set."""
    center_mask: bool | Literal["decision"]
    """Whether the centre-mask augmentation (DESIGN §4; radius law and probability from
    ``train.center_mask_*``) is applied during training. ``"decision"``: the outcome of the
    centre-masked ablation decides — the arm is trained after the other arms are evaluated and
    keeps the mask only on the branch "Anchors improve, synthetic stable" (the mask helped real
    lenses without costing the injections); the plan carries only the ablation's *insights*
    into Gen5'. Resolved by the ``ablation`` stage and recorded in ``metrics.json``."""
    init_from: str | None = None
    """Name of an earlier arm whose trained weights start this arm (fine-tuning; ``None``:
    random initialisation from the seed; the default arms use it nowhere). The demo and
    closed-loop configs start Gen5' from Gen5 (``init_from: baseline``): a two-stage
    curriculum, bright Gen5-recipe arcs first, then the calibrated population. The parent's
    model file is a parent of this arm's fingerprint (retraining the parent retrains the child)
    and is listed in the model file's ``provenance.parents``."""
    epochs: int | None = Field(None, ge=1)
    """Maximum epochs of this arm (``None``: ``train.epochs``). A fine-tuned arm
    (``init_from``) usually needs fewer than one trained from a random start."""
    replicates: int | None = Field(None, ge=1)
    """Injection replicates per host this arm trains and validates on: replicates
    ``0 .. replicates-1`` of ``inject.replicates`` (``None``: all). Lets one injection run serve
    a Gen5 recipe of one injection per host and a Gen5' that sees several independent calibrated
    lens/source draws per host; every arm is evaluated on all held-out replicates."""


class DecisionConfig(Section):
    """Thresholds of the plan's decision tree and success criteria (DESIGN §7)."""

    baseline_arm: str = "baseline"
    """Arm trained with the Gen5 recipe."""
    masked_arm: str = "masked"
    """Arm equal to the baseline plus the centre mask."""
    final_arm: str = "remediated"
    """Arm (Gen5') whose numbers decide the recall band and the success criteria."""
    fpr: float = Field(0.01, gt=0.0, lt=1.0)
    """Operating point (false-positive rate, fraction) of every recall used here."""
    anchor_improve_margin: float = Field(0.05, ge=0.0, le=1.0)
    """"Anchors improve" needs masked minus baseline Tier-A recall > this (fraction)."""
    anchor_improve_rule: Literal["margin", "margin_and_wilson", "wilson_disjoint"] = (
        "margin_and_wilson"
    )
    """How much the Wilson intervals must support the improvement, on top of the margin:
    "margin" (margin only), "margin_and_wilson" (masked lower bound > baseline point
    estimate), "wilson_disjoint" (masked lower bound > baseline upper bound)."""
    synthetic_auc_drop: float = Field(0.05, ge=0.0, le=1.0)
    """"Synthetic collapses" when baseline minus masked injection AUC exceeds this..."""
    synthetic_auc_floor: float = Field(0.8, ge=0.0, le=1.0)
    """...or when the masked injection AUC falls below this floor."""
    recall_working: float = Field(0.5, ge=0.0, le=1.0)
    """Tier-A recall above this: "working" (plan: 50 %). Also the success-criterion threshold."""
    recall_marginal: float = Field(0.3, ge=0.0, le=1.0)
    """Tier-A recall in [this, recall_working]: "marginal"; below: "fundamental redesign"."""
    ring_median_max: float = Field(0.5, ge=0.0, le=1.0)
    """Success needs the median p_lens of synthetic rings below this."""
    min_anchors: int = Field(50, ge=0)
    """Success needs at least this many Tier-A anchors (paper-defensible sample size)."""

    @model_validator(mode="after")
    def _bands(self):
        if self.recall_marginal > self.recall_working:
            msg = (
                f"ablation.decision: recall_marginal ({self.recall_marginal}) must be <= "
                f"recall_working ({self.recall_working})"
            )
            raise ValueError(msg)
        return self


def _default_arms() -> list[ArmConfig]:
    return [
        ArmConfig(name="baseline", brightness="uncalibrated", hard_negatives=False,
                  center_mask=False),
        ArmConfig(name="masked", brightness="uncalibrated", hard_negatives=False,
                  center_mask=True),
        ArmConfig(name="remediated", brightness="calibrated", hard_negatives=True,
                  center_mask="decision"),
    ]


class AblationConfig(Section):
    """Settings of the `ablation` stage: which arms to train and how to decide."""

    arms: list[ArmConfig] = Field(default_factory=_default_arms)
    """Arms to train, score and evaluate (names must be unique)."""
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    """Decision-tree thresholds."""

    @model_validator(mode="after")
    def _unique(self):
        names = [a.name for a in self.arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            msg = f"ablation.arms: duplicate arm names {dup}"
            raise ValueError(msg)
        deciders = {self.decision.baseline_arm, self.decision.masked_arm}
        order = {a.name: i for i, a in enumerate(self.arms)}
        for i, a in enumerate(self.arms):
            if a.init_from is not None and order.get(a.init_from, i) >= i:
                msg = (f"ablation.arms: arm {a.name!r} has init_from {a.init_from!r}, which must "
                       f"name an arm listed before it (arms: {list(order)})")
                raise ValueError(msg)
        by_name = {a.name: a for a in self.arms}
        early = [a.name for a in self.arms if a.init_from is not None
                 and a.center_mask != "decision"
                 and by_name[a.init_from].center_mask == "decision"]
        if early:
            msg = (f"ablation.arms: {early} would be trained before the centre-masked ablation "
                   "resolves their init_from arm (center_mask: decision); give them "
                   "center_mask: decision too, or start them from another arm")
            raise ValueError(msg)
        bad = [a.name for a in self.arms if a.center_mask == "decision" and a.name in deciders]
        if bad:
            msg = (f"ablation.arms: {bad} decide the centre-mask branch and cannot themselves "
                   "have center_mask: decision")
            raise ValueError(msg)
        return self

"""Config section `evaluate`: operating points, bootstrap, selection-function bins."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gen5dask.config.base import Section


def _edges(default: list[float]):
    return Field(default_factory=lambda: list(default))


class CompletenessBins(Section):
    """Bin edges of the selection function.

    Bins are half-open ``[lo, hi)``; values outside the outer edges are not counted, so the top
    edge is a generous finite cap (finite so the config round-trips through JSON and YAML).
    """

    theta_e_over_psf: list[float] = _edges([0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 100.0])
    """Edges in theta_E / psfsize_r (dimensionless: Einstein radius over r-band PSF FWHM)."""
    arc_snr: list[float] = _edges([0.0, 0.8, 2.0, 8.0, 20.0, 1.0e6])
    """Edges in integrated arc S/N (DESIGN §4 ``arc_snr``); inner edges are the plan's bins."""
    psfdepth_r: list[float] = _edges([20.0, 23.0, 23.5, 24.0, 24.5, 25.0, 30.0])
    """Edges in r-band 5-sigma point-source depth (AB mag)."""

    @field_validator("theta_e_over_psf", "arc_snr", "psfdepth_r")
    @classmethod
    def _increasing(cls, v: list[float], info):
        if len(v) < 2 or any(b <= a for a, b in zip(v[:-1], v[1:], strict=True)):
            msg = f"evaluate.bins.{info.field_name}: need >= 2 strictly increasing edges, got {v}"
            raise ValueError(msg)
        return v


class EvaluateConfig(Section):
    """Settings of the `evaluate` stage (DESIGN §7)."""

    fprs: list[float] = Field(default_factory=lambda: [1e-2, 1e-3])
    """False-positive rates of the reported operating points (fractions, 0 < a < 1). The first
    is the primary one (Tier-A recall, completeness maps)."""
    n_bootstrap: int = Field(1000, gt=0)
    """Bootstrap replicates for every percentile interval."""
    bootstrap_seed_offset: int = 7919
    """Added to the run seed to key the bootstrap streams (so re-seeding training does not
    silently reuse the evaluation's random stream)."""
    conf: float = Field(0.95, gt=0.0, lt=1.0)
    """Two-sided confidence level of Wilson and bootstrap intervals."""
    inject_mode: Literal["uncalibrated", "calibrated", "any"] = "calibrated"
    """Which test-split injections are the positives of "recall", AUC and completeness
    ("any": all injections whatever their brightness mode)."""
    primary_metric: str = "tier_a_recall_at_fpr_0.01"
    """Name of the headline metric (a key of the per-arm metrics; reported in metrics.json)."""
    tpr_n_false_positives: int = Field(10, ge=0)
    """TPR_N of Metcalf+2019: recall at the threshold that leaves at most this many evaluation
    negatives above it (10 gives the literature's TPR10)."""
    spearman_tiers: list[str] = Field(default_factory=lambda: ["A"])
    """Anchor tiers used for Spearman rho of p_lens vs theta_E/PSF (plan: Tier-A)."""
    ring_threshold: float = Field(0.5, ge=0.0, le=1.0)
    """p_lens above which a synthetic ring counts as "called a lens"."""
    saturation_high: float = Field(0.999, gt=0.0, lt=1.0)
    """Scores above this count as saturated high (saturation diagnostics)."""
    saturation_low: float = Field(0.001, gt=0.0, lt=1.0)
    """Scores below this count as saturated low."""
    bins: CompletenessBins = Field(default_factory=CompletenessBins)
    """Selection-function and stratified-AUC bin edges."""
    bright_arc_snr: float = Field(8.0, ge=0.0)
    """``auc_arc_snr_ge`` is the AUC of held-out injections with integrated ``arc_snr`` at or
    above this against the evaluation negatives (the "clearly visible" arcs)."""
    reweight_quantity: Literal["arc_snr", "snr_opt", "theta_e"] = "arc_snr"
    """Quantity whose Tier-A distribution the held-out injection recall is reweighted to (the
    closed-loop comparison with the Tier-A recall)."""
    reweight_n_bins: int = Field(8, ge=1)
    """Tier-A quantile bins of that reweighting."""
    realism_probe: bool = True
    """Run the realism probe (logistic regression on the network's penultimate embeddings, Tier-A
    anchors vs held-out calibrated injections) when the scores store carries embeddings."""
    realism_folds: int = Field(5, ge=2)
    """Outer cross-validation folds of the realism probe."""

    @field_validator("fprs")
    @classmethod
    def _fprs(cls, v: list[float]):
        if not v or any(not 0.0 < a < 1.0 for a in v):
            msg = f"evaluate.fprs: need one or more rates in (0, 1), got {v}"
            raise ValueError(msg)
        return v

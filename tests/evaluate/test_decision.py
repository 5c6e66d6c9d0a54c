"""Decision tree branches and success criteria on crafted metrics."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gen5dask.config.ablation import AblationConfig, ArmConfig, DecisionConfig
from gen5dask.evaluate.decision import (
    BAND_MARGINAL,
    BAND_REDESIGN,
    BAND_WORKING,
    BRANCH_CALIBRATION,
    BRANCH_CENTER_ONLY,
    BRANCH_PROCEED,
    BRANCH_UNDETERMINED,
    decide,
    recall_band,
)
from gen5dask.evaluate.stats import wilson_interval

K = "tier_a_recall_at_fpr_0.01"


def arm(recall, n=60, auc=0.95, ring=0.3, rho=0.4, rho_ci=(0.1, 0.6)):
    k = round(recall * n)
    return {K: k / n, f"{K}_wilson": list(wilson_interval(k, n)), "tier_a_n": n, "auc": auc,
            "ring_median_score": ring, "ring_n": 30, "ring_frac_above_0.5": 0.2,
            "spearman_score_vs_thetae_over_psf": rho,
            "spearman_score_vs_thetae_over_psf_ci": list(rho_ci)}


def test_proceed_branch():
    d = decide({"baseline": arm(0.2), "masked": arm(0.5, auc=0.94), "remediated": arm(0.6)})
    assert d["branch"] == BRANCH_PROCEED
    assert d["recall_band"] == BAND_WORKING
    assert any("20.0% -> masked 50.0%" in s for s in d["path"])
    assert all(c["passed"] for c in d["success_criteria"])
    json.dumps(d, allow_nan=False)


def test_center_only_branch_by_drop_and_by_floor():
    d = decide({"baseline": arm(0.2, auc=0.95), "masked": arm(0.5, auc=0.85)})
    assert d["branch"] == BRANCH_CENTER_ONLY
    cfg = DecisionConfig(synthetic_auc_drop=0.5, synthetic_auc_floor=0.9)
    d = decide({"baseline": arm(0.2, auc=0.95), "masked": arm(0.5, auc=0.89)}, cfg)
    assert d["branch"] == BRANCH_CENTER_ONLY
    assert d["inputs"]["synthetic_collapses"] is True


def test_calibration_branch_and_wilson_rules():
    # +10 points: beats the margin, but masked Wilson lower bound is below the baseline point
    base, masked = arm(0.30), arm(0.40)
    assert decide({"baseline": base, "masked": masked})["branch"] == BRANCH_CALIBRATION
    loose = DecisionConfig(anchor_improve_rule="margin")
    assert decide({"baseline": base, "masked": masked}, loose)["branch"] == BRANCH_PROCEED
    # big improvement: passes margin_and_wilson; disjoint intervals too
    base, masked = arm(0.2), arm(0.6)
    strict = DecisionConfig(anchor_improve_rule="wilson_disjoint")
    assert decide({"baseline": base, "masked": masked}, strict)["branch"] == BRANCH_PROCEED
    # moderate: point estimate outside, intervals overlap -> not improved under the strict rule
    base, masked = arm(0.2), arm(0.42)
    assert decide({"baseline": base, "masked": masked})["branch"] == BRANCH_PROCEED
    assert decide({"baseline": base, "masked": masked}, strict)["branch"] == BRANCH_CALIBRATION
    # no improvement at all
    assert decide({"baseline": arm(0.5), "masked": arm(0.45)})["branch"] == BRANCH_CALIBRATION


def test_missing_arms_are_reported():
    d = decide({"remediated": arm(0.4)})
    assert d["branch"] == BRANCH_UNDETERMINED
    assert d["missing_arms"] == ["baseline", "masked"]
    assert "baseline" in d["path"][0] and "masked" in d["path"][0]
    assert d["recall_band"] == BAND_MARGINAL
    assert d["success_criteria"][0]["passed"] is False
    d = decide({})
    assert d["recall_band"] is None and "remediated" in d["path"][-1]
    assert all(c["passed"] in (None, False) for c in d["success_criteria"])
    json.dumps(d, allow_nan=False)


def test_missing_numbers_are_undetermined():
    b = arm(0.2)
    m = dict(arm(0.6))
    m[K] = None
    assert decide({"baseline": b, "masked": m})["branch"] == BRANCH_UNDETERMINED
    m = dict(arm(0.6))
    m["auc"] = None
    assert decide({"baseline": b, "masked": m})["branch"] == BRANCH_UNDETERMINED


def test_recall_bands_at_boundaries():
    cfg = DecisionConfig()
    assert recall_band(0.51, cfg) == BAND_WORKING
    assert recall_band(0.50, cfg) == BAND_MARGINAL
    assert recall_band(0.30, cfg) == BAND_MARGINAL
    assert recall_band(0.29, cfg) == BAND_REDESIGN
    assert recall_band(None, cfg) is None


def test_success_criteria_failures():
    final = arm(0.4, n=30, ring=0.7, rho=0.1, rho_ci=(-0.2, 0.4))
    d = decide({"baseline": arm(0.2), "masked": arm(0.6), "remediated": final})
    by = d["success_criteria"]
    assert [c["passed"] for c in by] == [True, False, False, True, False]
    assert by[3]["ci_excludes_zero"] is False
    assert by[4]["value"] == 30 and by[4]["threshold"] == 50
    assert all(set(c) >= {"name", "passed", "value", "threshold", "detail"} for c in by)


def test_config_sections():
    a = AblationConfig()
    assert [x.name for x in a.arms] == ["baseline", "masked", "remediated"]
    assert (a.arms[2].brightness, a.arms[2].hard_negatives, a.arms[2].center_mask) == (
        "calibrated", True, "decision")
    assert decide({"baseline": arm(0.2), "masked": arm(0.6)}, a)["branch"] == BRANCH_PROCEED
    with pytest.raises(ValidationError, match="duplicate"):
        AblationConfig(arms=[a.arms[0], a.arms[0]])
    with pytest.raises(ValidationError, match="recall_marginal"):
        DecisionConfig(recall_marginal=0.6)
    with pytest.raises(ValidationError, match="bogus"):
        DecisionConfig(bogus=1)
    with pytest.raises(ValidationError):
        ArmConfig(name="x", brightness="bright", hard_negatives=False, center_mask=False)


def test_final_arm_mask_follows_the_branch():
    from gen5dask.evaluate.decision import (
        BRANCH_CALIBRATION,
        BRANCH_CENTER_ONLY,
        BRANCH_PROCEED,
        BRANCH_UNDETERMINED,
        final_arm_mask,
        resolve_arms,
    )

    assert final_arm_mask({"branch": BRANCH_PROCEED})[0] is True
    assert final_arm_mask({"branch": BRANCH_CENTER_ONLY})[0] is False
    assert final_arm_mask({"branch": BRANCH_CALIBRATION})[0] is False
    assert final_arm_mask({"branch": BRANCH_UNDETERMINED})[0] is None
    arms = AblationConfig().arms
    for branch, want in ((BRANCH_PROCEED, True), (BRANCH_CALIBRATION, False),
                         (BRANCH_UNDETERMINED, False)):
        out, why = resolve_arms(arms, {"branch": branch})
        assert [a.center_mask for a in out] == [False, True, want]
        assert set(why) == {"remediated"} and why["remediated"]["center_mask"] is want
        assert all(isinstance(a, ArmConfig) for a in out)


def test_deciding_arms_cannot_wait_for_the_decision():
    with pytest.raises(ValueError, match="decide the centre-mask branch"):
        AblationConfig(arms=[
            {"name": "baseline", "brightness": "uncalibrated", "hard_negatives": False,
             "center_mask": "decision"},
        ])

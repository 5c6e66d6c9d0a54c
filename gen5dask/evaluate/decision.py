"""The plan's decision tree and success criteria, from per-arm metrics (DESIGN §7).

Centre-masked ablation (baseline vs masked arm)::

    Anchors improve, synthetic stable     -> Proceed with fixes
    Anchors improve, synthetic collapses  -> Model was center-only
    Anchors don't improve                 -> Brightness calibration is the issue
                                             (build Tier-A, calibrate injections, add hard negs)

then the Tier-A recall band of the final (remediated) arm: > 50 % working, 30–50 % marginal,
< 30 % fundamental redesign. All thresholds come from
:class:`gen5dask.config.ablation.DecisionConfig`.
"""

from __future__ import annotations

from gen5dask.config.ablation import AblationConfig, DecisionConfig
from gen5dask.evaluate.metrics import fpr_tag
from gen5dask.evaluate.stats import to_jsonable

__all__ = [
    "BRANCH_CENTER_ONLY",
    "BRANCH_CALIBRATION",
    "BRANCH_PROCEED",
    "BRANCH_UNDETERMINED",
    "decide",
    "final_arm_mask",
    "recall_band",
    "resolve_arms",
    "success_criteria",
]

BRANCH_PROCEED = "Anchors improve, synthetic stable -> Proceed with fixes"
BRANCH_CENTER_ONLY = "Anchors improve, synthetic collapses -> Model was center-only"
BRANCH_CALIBRATION = (
    "Anchors don't improve -> Brightness calibration is the issue (build Tier-A, calibrate "
    "injections, add hard negatives)"
)
BRANCH_UNDETERMINED = "Undetermined"

BAND_WORKING = "working: model is working for detectable lenses"
BAND_MARGINAL = "marginal: may need more calibration"
BAND_REDESIGN = "fundamental training data redesign needed"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def recall_band(recall: float | None, cfg: DecisionConfig) -> str | None:
    """Band of a Tier-A recall (fraction): working / marginal / redesign; ``None`` if missing.

    ``recall > recall_working`` is working, ``recall >= recall_marginal`` marginal, else redesign.
    """
    if recall is None:
        return None
    if recall > cfg.recall_working:
        return BAND_WORKING
    if recall >= cfg.recall_marginal:
        return BAND_MARGINAL
    return BAND_REDESIGN


def _anchors_improve(base: dict, masked: dict, cfg: DecisionConfig, key: str):
    rb, rm = base.get(key), masked.get(key)
    if rb is None or rm is None:
        return None, f"Tier-A recall missing (baseline {_pct(rb)}, masked {_pct(rm)})"
    lo_m = (masked.get(f"{key}_wilson") or [None, None])[0]
    hi_b = (base.get(f"{key}_wilson") or [None, None])[1]
    delta = rm - rb
    margin_ok = delta > cfg.anchor_improve_margin
    text = (f"Tier-A recall baseline {_pct(rb)} -> masked {_pct(rm)} (delta {100 * delta:+.1f} "
            f"points; margin {100 * cfg.anchor_improve_margin:.1f})")
    if cfg.anchor_improve_rule == "margin":
        ok = margin_ok
    elif cfg.anchor_improve_rule == "margin_and_wilson":
        w_ok = lo_m is not None and lo_m > rb
        ok = margin_ok and w_ok
        text += f"; masked Wilson lower bound {_pct(lo_m)} vs baseline point {_pct(rb)}"
    else:
        w_ok = lo_m is not None and hi_b is not None and lo_m > hi_b
        ok = margin_ok and w_ok
        text += f"; masked Wilson lower bound {_pct(lo_m)} vs baseline upper bound {_pct(hi_b)}"
    text += f" [{cfg.anchor_improve_rule}] -> anchors {'improve' if ok else 'do not improve'}"
    return ok, text


def _synthetic_collapses(base: dict, masked: dict, cfg: DecisionConfig):
    ab, am = base.get("auc"), masked.get("auc")
    if ab is None or am is None:
        return None, f"injection AUC missing (baseline {_num(ab)}, masked {_num(am)})"
    drop = ab - am
    collapse = drop > cfg.synthetic_auc_drop or am < cfg.synthetic_auc_floor
    text = (f"injection AUC baseline {ab:.3f} -> masked {am:.3f} (drop {drop:+.3f}; collapse if "
            f"drop > {cfg.synthetic_auc_drop:.3f} or masked < {cfg.synthetic_auc_floor:.3f}) -> "
            f"synthetic {'collapses' if collapse else 'stable'}")
    return collapse, text


def success_criteria(final: dict | None, cfg: DecisionConfig, *, branch: str) -> list[dict]:
    """The plan's success criteria on the final arm, each ``{name, passed, value, threshold,
    detail}`` (``passed`` is ``None`` when the number is missing)."""
    tag = fpr_tag(cfg.fpr)
    f = final or {}
    out = []
    determined = branch != BRANCH_UNDETERMINED
    out.append({"name": "centre-masked ablation decides the failure mode", "passed": determined,
                "value": branch, "threshold": "a branch of the decision tree",
                "detail": "needs baseline and masked arms"})
    r = f.get(f"tier_a_recall_at_fpr_{tag}")
    out.append({"name": f"Tier-A recall > {_pct(cfg.recall_working)} at FPR {_pct(cfg.fpr)}",
                "passed": None if r is None else r > cfg.recall_working, "value": r,
                "threshold": cfg.recall_working,
                "detail": f"Wilson {f.get(f'tier_a_recall_at_fpr_{tag}_wilson')}, "
                          f"n = {f.get('tier_a_n')}"})
    med = f.get("ring_median_score")
    out.append({"name": f"synthetic rings: median p_lens < {cfg.ring_median_max:g}",
                "passed": None if med is None else med < cfg.ring_median_max, "value": med,
                "threshold": cfg.ring_median_max,
                "detail": f"n = {f.get('ring_n')}, fraction above 0.5 = "
                          f"{_num(f.get('ring_frac_above_0.5'))}"})
    rho = f.get("spearman_score_vs_thetae_over_psf")
    ci = f.get("spearman_score_vs_thetae_over_psf_ci") or [None, None]
    excl = None if ci[0] is None else ci[0] > 0
    out.append({"name": "Spearman rho(p_lens, theta_E/PSF) > 0 on Tier-A",
                "passed": None if rho is None else rho > 0, "value": rho, "threshold": 0.0,
                "detail": f"bootstrap CI {ci}; CI excludes 0: "
                          f"{'n/a' if excl is None else ('yes' if excl else 'no')}",
                "ci_excludes_zero": excl})
    n = f.get("tier_a_n")
    out.append({"name": f"n Tier-A anchors >= {cfg.min_anchors}",
                "passed": None if n is None else n >= cfg.min_anchors, "value": n,
                "threshold": cfg.min_anchors, "detail": "paper-defensible sample size"})
    return out


def final_arm_mask(decision: dict) -> tuple[bool | None, str]:
    """Whether an arm with ``center_mask: "decision"`` keeps the centre mask.

    The mask is carried into Gen5' only on :data:`BRANCH_PROCEED` ("Anchors improve, synthetic
    stable": masking the centre helped the real lenses and cost the injections nothing). On
    "center-only" the network needs the centre (masking collapses the injections); on
    "calibration" masking did not help the anchors; neither is a reason to mask. ``None`` when the
    branch is undetermined (the caller decides what to do, and says so).
    """
    branch = decision.get("branch")
    if branch == BRANCH_PROCEED:
        return True, f"branch {branch!r}: the final arm keeps the centre mask"
    if branch in (BRANCH_CENTER_ONLY, BRANCH_CALIBRATION):
        return False, f"branch {branch!r}: the final arm trains without the centre mask"
    return None, f"branch {branch!r}: centre-mask ablation undetermined"


def resolve_arms(arms, decision: dict) -> tuple[list, dict]:
    """Arms with every ``center_mask: "decision"`` replaced by the value the decision gives.

    An undetermined branch resolves to no mask (the Gen5 default), recorded as such. Returns the
    new arm list and ``{arm: {"center_mask", "reason"}}`` for the resolved arms.
    """
    keep, reason = final_arm_mask(decision)
    out, why = [], {}
    for arm in arms:
        if arm.center_mask == "decision":
            value = bool(keep)
            if keep is None:
                reason_a = reason + "; trained without the centre mask"
            else:
                reason_a = reason
            why[arm.name] = {"center_mask": value, "reason": reason_a}
            arm = arm.model_copy(update={"center_mask": value})
        out.append(arm)
    return out, why


def decide(metrics_by_arm: dict, config: DecisionConfig | AblationConfig | None = None) -> dict:
    """Walk the plan's decision tree.

    Parameters
    ----------
    metrics_by_arm : dict
        ``{arm name: compute_arm_metrics(...) output}``; arms named in the config may be missing.
    config : DecisionConfig or AblationConfig, optional
        Thresholds (``AblationConfig.decision`` is used when given the whole section).

    Returns
    -------
    dict
        ``branch`` (one of the ``BRANCH_*`` strings), ``path`` (human-readable steps with the
        numbers), ``recall_band`` (of the final arm, or None), ``inputs`` (every number used),
        ``missing_arms`` and ``success_criteria`` (see :func:`success_criteria`).
    """
    if config is None:
        cfg = DecisionConfig()
    elif isinstance(config, AblationConfig):
        cfg = config.decision
    else:
        cfg = config
    key = f"tier_a_recall_at_fpr_{fpr_tag(cfg.fpr)}"
    base = metrics_by_arm.get(cfg.baseline_arm)
    masked = metrics_by_arm.get(cfg.masked_arm)
    final = metrics_by_arm.get(cfg.final_arm)
    missing = [a for a, m in ((cfg.baseline_arm, base), (cfg.masked_arm, masked),
                              (cfg.final_arm, final)) if m is None]
    path: list[str] = []
    inputs: dict = {"fpr": cfg.fpr, "metric": key}
    for arm, m in ((cfg.baseline_arm, base), (cfg.masked_arm, masked), (cfg.final_arm, final)):
        if m is not None:
            inputs[arm] = {k: m.get(k) for k in (key, f"{key}_wilson", "tier_a_n", "auc")}

    if base is None or masked is None:
        branch = BRANCH_UNDETERMINED
        path.append("Centre-masked ablation not decided: missing arm(s) "
                    f"{[a for a in (cfg.baseline_arm, cfg.masked_arm) if a in missing]}")
    else:
        improve, text = _anchors_improve(base, masked, cfg, key)
        path.append(text)
        inputs["anchors_improve"] = improve
        if improve is None:
            branch = BRANCH_UNDETERMINED
        elif not improve:
            branch = BRANCH_CALIBRATION
        else:
            collapse, text2 = _synthetic_collapses(base, masked, cfg)
            path.append(text2)
            inputs["synthetic_collapses"] = collapse
            if collapse is None:
                branch = BRANCH_UNDETERMINED
            else:
                branch = BRANCH_CENTER_ONLY if collapse else BRANCH_PROCEED
        path.append(f"Branch: {branch}")

    band = None
    if final is None:
        path.append(f"Tier-A recall band not decided: final arm {cfg.final_arm!r} missing")
    else:
        r = final.get(key)
        band = recall_band(r, cfg)
        path.append(
            f"Final arm {cfg.final_arm!r}: Tier-A recall at FPR {_pct(cfg.fpr)} = {_pct(r)} "
            f"(n = {final.get('tier_a_n')}; > {_pct(cfg.recall_working)} working, "
            f"{_pct(cfg.recall_marginal)}-{_pct(cfg.recall_working)} marginal) -> "
            f"{band or 'not decided (no Tier-A anchors)'}")
    return to_jsonable({
        "branch": branch, "path": path, "recall_band": band, "inputs": inputs,
        "missing_arms": missing, "config": cfg.model_dump(),
        "success_criteria": success_criteria(final, cfg, branch=branch),
    })

"""The self-contained HTML report of a run, and the ``metrics.json`` document — pure rendering.

:func:`render_report` turns already-loaded inputs (:class:`ReportInputs`, metrics, decision)
into one HTML page: figures embedded as base64 PNG, no external resources, reading top down —
summary and verdict, gates, populations and brightness, calibration, region map, training curves,
ROC and scores, completeness, physical limit and realism probe, anchors, rings, decision tree,
effective config. Each section whose input is missing says "not run"; a section whose input
could not be read says so with the error, and the rest of the page is still rendered. Reading
the files and writing the page is the ``report`` stage's job (:mod:`gen5dask.stages.report`).
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from gen5dask.config.report import ReportConfig
from gen5dask.evaluate import plots
from gen5dask.evaluate.stats import to_jsonable

__all__ = ["SECTIONS", "ReportInputs", "UnreadableInput", "metrics_document", "render_report"]

log = logging.getLogger(__name__)

SECTIONS = (
    ("summary", "Summary and verdict"),
    ("gates", "Gates"),
    ("populations", "Populations and brightness"),
    ("calibration", "Injection brightness calibration"),
    ("regions", "Region map"),
    ("training", "Training curves"),
    ("roc", "ROC and score distributions"),
    ("completeness", "Completeness (selection function)"),
    ("limits", "Physical limit, closed loop and realism probe"),
    ("anchors", "Anchors"),
    ("rings", "Synthetic rings and score saturation"),
    ("decision", "Decision tree"),
    ("config", "Effective config"),
)

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:90%}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}.pass{background:#dfd}.fail{background:#fdd}.na{background:#eee}
.notrun{color:#888;font-style:italic}.error{color:#a00}.verdict{font-size:130%;font-weight:bold}
img{max-width:100%}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:85%}
.gallery{display:grid;gap:6px}.gallery div{font-size:75%;text-align:center}
nav a{margin-right:.8em}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _notrun(what: str) -> str:
    return f'<p class="notrun">not run: {_e(what)}</p>'


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(t, float | int | None) for t in v):
        return f"[{_fmt(v[0])}, {_fmt(v[1])}]"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence], classes: Sequence[str] | None = None
           ) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in r) + "</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _passclass(p) -> str:
    return "na" if p is None else ("pass" if p else "fail")


class UnreadableInput(RuntimeError):
    """An input of the report that exists but could not be read (the message says why)."""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows besides the metrics, already loaded.

    Each input is ``None`` when absent; ``missing[name]`` then says why ("not run" text) and
    ``errors[name]`` holds the error of an input that exists but could not be read.
    """

    gates: list | None = None
    """Gate records of ``gates.json``."""
    audit: dict | None = None
    """``audit/audit.json``."""
    calibration: dict | None = None
    """``calibration.json``."""
    region_map_png: bytes | None = None
    """``split/region_map.png``."""
    training_logs: Mapping[str, list] = field(default_factory=dict)
    """``{arm: records of models/<arm>_log.jsonl}``."""
    models: Mapping[str, dict] = field(default_factory=dict)
    """``{arm: gen5dask.train.trainer.model_summary of models/<arm>.pt}``: how it was trained."""
    rejected_anchors: pd.DataFrame | None = None
    """``anchors_rejected.csv`` (strings)."""
    missing: Mapping[str, str] = field(default_factory=dict)
    """``{input: why it is absent}``."""
    errors: Mapping[str, str] = field(default_factory=dict)
    """``{input: "ErrorType: message"}`` for inputs that could not be read."""


def _input(ctx: dict, name: str):
    """The loaded input ``name``, or None when absent; raises :class:`UnreadableInput` when it
    could not be read (the section then shows the error)."""
    inputs: ReportInputs = ctx["inputs"]
    if name in inputs.errors:
        raise UnreadableInput(inputs.errors[name])
    return getattr(inputs, name)


def _why(ctx: dict, name: str, default: str) -> str:
    return _notrun(ctx["inputs"].missing.get(name, default))


# ---------------------------------------------------------------------------------------------
# sections: each returns the HTML body of its section
# ---------------------------------------------------------------------------------------------
_SUMMARY_KEYS = (
    ("auc", "injection AUC"),
    ("auc_arc_snr_ge", "injection AUC, arc_snr >= 8"),
    ("recall_at_fpr_0.01", "injection recall @ FPR 1%"),
    ("limit_recall_at_fpr_0.01", "  matched-filter limit @ FPR 1%"),
    ("recall_over_limit_at_fpr_0.01", "  recall / limit"),
    ("recall_at_fpr_0.001", "injection recall @ FPR 0.1%"),
    ("tpr0", "TPR0"),
    ("tpr10", "TPR10"),
    ("tier_a_recall_at_fpr_0.01", "Tier-A recall @ FPR 1%"),
    ("tier_a_limit_recall_at_fpr_0.01", "  matched-filter limit @ FPR 1%"),
    ("tier_a_recall_over_limit_at_fpr_0.01", "  recall / limit"),
    ("injection_recall_reweighted_to_tier_a_at_fpr_0.01",
     "injection recall reweighted to Tier-A arc_snr"),
    ("realism_probe_auc", "realism probe AUC (anchors vs injections)"),
    ("tier_a_n", "n Tier-A"),
    ("stress_recall_at_fpr_0.01", "stress recall @ FPR 1%"),
    ("stress_n", "n stress"),
    ("ring_median_score", "ring median p_lens"),
    ("spearman_score_vs_thetae_over_psf", "Spearman rho (p, theta_E/PSF)"),
    ("threshold_at_fpr_0.01", "threshold @ FPR 1%"),
    ("n_negatives_at_threshold", "N negatives"),
)


def _summary(ctx: dict) -> str:
    metrics, decision = ctx["metrics"], ctx["decision"]
    out = [f'<p class="verdict">Verdict: {_e(decision.get("branch"))}</p>']
    band = decision.get("recall_band")
    out.append(f"<p>Tier-A recall band (final arm): <b>{_e(band or 'not decided')}</b>. "
               f"Primary metric (also the checkpoint-selection metric): "
               f"<code>{_e(ctx['primary_metric'])}</code>.</p>")
    if decision.get("missing_arms"):
        out.append(f"<p>Missing arms: {_e(', '.join(decision['missing_arms']))}</p>")
    if not metrics:
        out.append(_notrun("no arm was evaluated (no scores)"))
    else:
        arms = list(metrics)
        rows = []
        for key, label in _SUMMARY_KEYS:
            row = [("* " if key == ctx["primary_metric"] else "") + label]
            for a in arms:
                v, w = metrics[a].get(key), metrics[a].get(f"{key}_wilson")
                row.append(_fmt(v) + (f" {_fmt(w)}" if w else ""))
            rows.append(row)
        out.append(_table(["metric (Wilson 95%)"] + arms, rows))
    sc = decision.get("success_criteria", [])
    if sc:
        out.append("<h3>Success criteria</h3>")
        out.append(_table(["criterion", "passed", "value", "threshold", "detail"],
                          [[c["name"], c["passed"], c["value"], c["threshold"], c["detail"]]
                           for c in sc], [_passclass(c["passed"]) for c in sc]))
    return "\n".join(out)


def _gates(ctx: dict) -> str:
    g = _input(ctx, "gates")
    if g is None:
        return _why(ctx, "gates", "gates.json not found (audit/gates not run)")
    if isinstance(g, dict):
        g = g.get("gates", [g])
    if not g:
        return "<p>No gates recorded.</p>"
    rows = [[x.get("name"), x.get("passed"), x.get("blocking"), x.get("value"),
             x.get("threshold"), x.get("detail")] for x in g]
    n_fail = sum(1 for x in g if x.get("passed") is False)
    n_block = sum(1 for x in g if x.get("passed") is False and x.get("blocking"))
    return (f"<p>{len(g)} gates, {n_fail} failed ({n_block} blocking).</p>"
            + _table(["gate", "passed", "blocking", "value", "threshold", "detail"], rows,
                     [_passclass(x.get("passed")) for x in g]))


def _populations(ctx: dict) -> str:
    audit = _input(ctx, "audit")
    if audit is None:
        return _why(ctx, "audit", "audit/audit.json not found (audit not run)")
    b = audit.get("brightness") if isinstance(audit, dict) else None
    if not b:
        return _notrun("audit.json has no 'brightness' entry")
    out = []
    pops = b.get("populations") if isinstance(b, dict) else None
    if isinstance(pops, dict) and pops:
        vals = {k: v for k, v in pops.items() if isinstance(v, list)}
        if vals:
            out.append(_img(plots.brightness_png(vals, quantity=b.get(
                "quantity", "core brightness (nanomaggies)"), dpi=ctx["dpi"]),
                "brightness populations"))
    comps = {k: v for k, v in b.items() if isinstance(v, dict) and "median_ratio" in v}
    comps.update({k: v for k, v in (b.get("comparisons") or {}).items() if isinstance(v, dict)})
    if comps:
        keys = ("n_a", "n_b", "median_a", "iqr_a", "median_b", "iqr_b", "median_ratio",
                "median_ratio_ci", "ks_p", "ad_p", "cliffs_delta")
        out.append(_table(["comparison", *keys],
                          [[name] + [c.get(k) for k in keys] for name, c in comps.items()]))
    if not out:
        out.append("<pre>" + _e(json.dumps(b, indent=1)[:20000]) + "</pre>")
    return "\n".join(out)


def _calibration(ctx: dict) -> str:
    c = _input(ctx, "calibration")
    if c is None:
        return _why(ctx, "calibration", "calibration.json not found (calibrate not run)")
    out = [_img(plots.calibration_png(c, dpi=ctx["dpi"]), "calibration target vs achieved")]
    out.append(f"<p>calibrated quantity: {_e(c.get('quantity', 'arc_snr'))} (r band); "
               f"target from {_e(c.get('source'))}; n = {_e(_fmt(c.get('n')))}; "
               f"bound hits = {_e(_fmt(c.get('bound_hits')))}</p>")
    out.append(_recovery(c.get("proxy_relation") or {}, c))
    out.append(_colours(c.get("colours") or {}))
    return "\n".join(out)


def _colours(col: dict) -> str:
    """The source-colour law of calibrated injections (and its recovery on mock anchors)."""
    law = col.get("law")
    if not law:
        return ("<p>Source colours of calibrated injections: the prior "
                "(<code>inject.src_gr_range</code>, <code>src_rz_range</code>).</p>")
    s = col.get("summary") or {}
    out = (f"<p>Source colours of calibrated injections measured on "
           f"{_e(_fmt(s.get('n_used')))} of {_e(_fmt(s.get('n_anchors')))} anchors "
           f"({_e(col.get('method'))}): g-r ~ N({_e(_fmt(law['gr_mean']))}, "
           f"{_e(_fmt(law['gr_std']))}), r-z ~ N({_e(_fmt(law['rz_mean']))}, "
           f"{_e(_fmt(law['rz_std']))}) mag.")
    rec = col.get("recovery")
    if rec:
        out += (f" The anchors' true source colours: g-r median "
                f"{_e(_fmt(rec.get('true_g_r_median')))}, r-z median "
                f"{_e(_fmt(rec.get('true_r_z_median')))}; median per-anchor error "
                f"{_e(_fmt(rec.get('median_error_g_r')))} (g-r), "
                f"{_e(_fmt(rec.get('median_error_r_z')))} (r-z) mag.")
    return out + "</p>"


def _recovery(rel: dict, cal: dict) -> str:
    """The anchors' inversion: target fractions with their bootstrap interval and, for mock
    anchors, how well it recovered their true arc S/N."""
    if not rel:
        return ""
    rec = rel.get("recovery")
    dec = rel.get("deconvolution") or {}
    iv = dec.get("fractions_interval") or {}
    head = (f"<p>Anchors measured with the {_e(rel.get('proxy'))}, inverted by "
            f"<b>{_e(rel.get('inversion', 'regression'))}</b> "
            f"({_e(_fmt(rel.get('n_anchors')))} anchors, "
            f"{_e(_fmt(rel.get('n_anchors_nonpositive_proxy')))} with no measurable arc"
            + (f"; dry run of {_e(_fmt(dec.get('n_dry_run')))} injections, "
               f"{_e(_fmt(len(dec.get('fractions_bootstrap') or [])))} bootstrap resamples of "
               "anchors and dry run" if dec.get("n_dry_run") else "")
            + ").</p>")
    fr = cal.get("target_fractions") or (rec or {}).get("fractions_target") or []
    lo, hi = iv.get("2.5") or [], iv.get("97.5") or []
    true = (rec or {}).get("fractions_true_open") or []
    b = cal.get("bins") or (rec or {}).get("bins") or []
    rows = []
    for i, f in enumerate(fr):
        row = [f"{b[i]:g}-{b[i + 1]:g}" + ("+" if i == len(b) - 2 else "") if b else str(i),
               f"{f:.3f}"]
        row.append(f"{lo[i]:.3f}-{hi[i]:.3f}" if i < len(lo) and i < len(hi) else "—")
        row.append(f"{true[i]:.3f}" if i < len(true) else "—")
        rows.append(row)
    table = _table(["bin", "target fraction (recovered)", "95 % bootstrap interval",
                    "true fraction"], rows) if rows else ""
    if not rec:
        return (head + "<p>The anchors carry no true arc S/N (real lenses): recovery not "
                "scored.</p>" + table)
    tv_iv = rec.get("total_variation_interval_95")
    return (head + "<p>Recovery against the anchors' true values (the mock knows them): "
            "total-variation distance of the bin fractions "
            f"{_e(_fmt(rec.get('total_variation')))}"
            + (f" (bootstrap 95 %: {tv_iv[0]:.3f}-{tv_iv[1]:.3f})" if tv_iv else "")
            + f", KS statistic {_e(_fmt(rec.get('ks_statistic')))} "
            f"(p = {_e(_fmt(rec.get('ks_pvalue')))}), 1-Wasserstein "
            f"{_e(_fmt(rec.get('wasserstein_log10')))} dex, median recovered / true "
            f"{_e(_fmt(rec.get('median_ratio')))}.</p>" + table)


def _regions(ctx: dict) -> str:
    png = _input(ctx, "region_map_png")
    if png is None:
        return _why(ctx, "region_map_png", "split/region_map.png not found (split not run)")
    return _img(png, "region map")


def _recipe_table(models: Mapping[str, dict]) -> str:
    rows = []
    for arm, m in models.items():
        a, t, c = m.get("arm", {}), m.get("train", {}), m.get("counts", {}).get("train", {})
        mask = a.get("center_mask")
        reps = a.get("replicates")
        rows.append([
            arm, a.get("brightness") + ("" if reps is None else f" ({reps} per host)"),
            "yes" if a.get("hard_negatives") else "no",
            "on" if mask is True else "off" if mask is False else mask,
            a.get("init_from") or "random (seeded)",
            f"{m.get('model')} ({m.get('n_parameters', 0) / 1e6:.2f} M)",
            f"{m.get('stamp_size')} px{f' (central {crop} px)' if (crop := m.get('crop')) else ''}"
            f", {''.join(m.get('bands', []))}"
            + ("" if m.get("lens_light", "none") == "none"
               else f", minus its {m['lens_light'].replace('_', ' ')}"),
            f"{m.get('epochs_run')} of {t.get('epochs')} (best {m.get('epoch')}: "
            f"{m.get('selection_metric')} {_fmt(m.get('selection_value'))})",
            f"{t.get('batch_size')} / {_fmt(t.get('lr'))} {t.get('schedule')}",
            " + ".join(f"{c[k]} {k}" for k in ("injection", "control", "hard_negative")
                       if c.get(k)),
        ])
    return _table(["arm", "injections", "hard negatives", "centre mask", "initial weights",
                   "model", "input", "epochs", "batch / peak lr", "training samples"], rows)


def _training(ctx: dict) -> str:
    out = []
    try:
        models = _input(ctx, "models")
    except UnreadableInput as exc:
        models = None
        out.append(_notrun(f"model files could not be read: {exc}"))
    if models:
        out.append("<p>How each arm was trained (from its model file):</p>")
        out.append(_recipe_table(models))
    logs = _input(ctx, "training_logs")
    arms = list(dict.fromkeys(list(ctx["metrics"]) + ctx["extra_arms"] + list(logs)))
    for arm in arms:
        recs = logs.get(arm)
        if recs is not None:
            out.append(f"<h3>{_e(arm)}</h3>")
            out.append(_img(plots.training_curves_png(recs, title=f"training: {arm}",
                                                      dpi=ctx["dpi"]), f"training {arm}"))
    return "\n".join(out) if out else _notrun("no models/<arm>_log.jsonl found (train not run)")


def _roc(ctx: dict) -> str:
    m = ctx["metrics"]
    if not m:
        return _notrun("no arm metrics")
    out = [_img(plots.roc_png({a: v.get("roc") for a, v in m.items()},
                              fprs=next(iter(m.values())).get("fprs", (1e-2, 1e-3)),
                              dpi=ctx["dpi"]), "ROC")]
    for a, v in m.items():
        if v.get("score_hist"):
            out.append(_img(plots.score_hist_png(v["score_hist"], title=f"scores: {a}",
                                                 dpi=ctx["dpi"]), f"scores {a}"))
    return "\n".join(out)


def _completeness(ctx: dict) -> str:
    out = []
    for a, v in ctx["metrics"].items():
        c = v.get("completeness")
        if not c:
            continue
        out.append(f"<h3>{_e(a)} (FPR {_e(_fmt(c.get('fpr')))}, threshold "
                   f"{_e(_fmt(c.get('threshold')))})</h3>")
        one = {k: c[k] for k in ("theta_e_over_psf", "arc_snr", "psfdepth_r") if k in c}
        if one:
            out.append(_img(plots.completeness_1d_png(one, title=f"completeness: {a}",
                                                      dpi=ctx["dpi"]), f"completeness {a}"))
        for k in ("theta_e_over_psf_x_arc_snr", "theta_e_over_psf_x_psfdepth_r"):
            if k in c:
                out.append(_img(plots.completeness_2d_png(c[k], dpi=ctx["dpi"]), f"{k} {a}"))
        sa = (v.get("stratified_auc") or {}).get("arc_snr")
        if sa:
            out.append("<p>AUC stratified by arc_snr (all evaluation negatives):</p>")
            out.append(_table(["arc_snr lo", "hi", "n injections", "AUC"],
                              [[s["lo"], s["hi"], s["n_pos"], s["auc"]] for s in sa]))
    return "\n".join(out) if out else _notrun("no completeness (no held-out injections scored)")


_LIMIT_TEXT = (
    "<p>The <b>matched-filter limit</b> is the recall of a detector that knows each arc exactly, "
    "in Gaussian noise of the stored inverse variance: <code>Phi(SNR_opt - Phi^-1(1 - FPR))"
    "</code> with <code>SNR_opt = sqrt(sum_bands sum_pixels arc^2 invvar)</code> over good "
    "pixels, averaged over the population. No detector on the same pixels does better on "
    "average; recall / limit is the share of the physically available signal the network "
    "uses. The <b>closed loop</b> compares the Tier-A recall with the recall of held-out "
    "calibrated injections reweighted to the anchors' distribution of "
    "<code>{quantity}</code>: where anchors and injections share one generative model the two "
    "must agree within their intervals. The <b>realism probe</b> is a cross-validated logistic "
    "regression on the network's penultimate embeddings, Tier-A anchors against held-out "
    "calibrated injections: AUC near 0.5 means the injections stand in for real lenses in the "
    "network's own features, near 1 that they do not (a published probe on real DR10 lenses vs "
    "Sersic injections: 0.997).</p>")


def _limits(ctx: dict) -> str:
    metrics = ctx["metrics"]
    if not metrics:
        return _notrun("no arm was evaluated (no scores)")
    quantity = next(iter(metrics.values())).get("reweight", {}).get("quantity", "arc_snr")
    out = [_LIMIT_TEXT.format(quantity=_e(quantity))]
    rows = []
    for a, m in metrics.items():
        rw = "injection_recall_reweighted_to_tier_a_at_fpr_0.01"
        rows.append([
            a, _fmt(m.get("recall_at_fpr_0.01")), _fmt(m.get("limit_recall_at_fpr_0.01")),
            _fmt(m.get("recall_over_limit_at_fpr_0.01")),
            f"{_fmt(m.get('tier_a_recall_at_fpr_0.01'))} "
            f"{_fmt(m.get('tier_a_recall_at_fpr_0.01_bootstrap'))}",
            _fmt(m.get("tier_a_limit_recall_at_fpr_0.01")),
            _fmt(m.get("tier_a_recall_over_limit_at_fpr_0.01")),
            f"{_fmt(m.get(rw))} {_fmt(m.get(rw + '_bootstrap'))} "
            f"(coverage {_fmt(m.get(rw + '_coverage'))})",
            f"{_fmt(m.get('realism_probe_auc'))} {_fmt(m.get('realism_probe_auc_bootstrap'))}",
        ])
    out.append(_table(["arm", "injection recall", "limit", "ratio",
                       "Tier-A recall (bootstrap 95%)", "Tier-A limit", "ratio",
                       "reweighted injection recall (bootstrap 95%)",
                       "realism probe AUC (bootstrap 95%)"], rows))
    probes = {a: m.get("realism_probe") for a, m in metrics.items()}
    reasons = [f"{a}: {p['reason']}" for a, p in probes.items() if p and p.get("reason")]
    if any(p and p.get("pca2") for p in probes.values()):
        out.append(_img(plots.realism_png(probes, dpi=ctx["dpi"]), "realism probe embeddings"))
    for r in reasons:
        out.append(_notrun(r))
    return "\n".join(out)


def _anchors(ctx: dict) -> str:
    out = []
    cfg: ReportConfig = ctx["rcfg"]
    gal = sorted(ctx["gallery"], key=lambda g: (str(g.get("tier", "")), -(g.get("score") or 0)))
    gal = gal[: cfg.gallery_size]
    if gal:
        cells = []
        for g in gal:
            img = _img(g["png_bytes"], g.get("name", "")) if g.get("png_bytes") else ""
            cells.append(f"<div>{img}<br>{_e(g.get('name', ''))}<br>tier {_e(g.get('tier', ''))}"
                         f", p={_e(_fmt(g.get('score')))}</div>")
        out.append(f'<div class="gallery" style="grid-template-columns:repeat('
                   f'{cfg.gallery_columns},1fr)">' + "".join(cells) + "</div>")
    else:
        out.append(_notrun("no anchor gallery supplied"))
    out.append("<h3>Rejected anchors</h3>")
    df = _input(ctx, "rejected_anchors")
    if df is None:
        out.append(_why(ctx, "rejected_anchors",
                        "anchors_rejected.csv not found (anchors not run)"))
    else:
        if df.empty:
            out.append("<p>No anchor was rejected.</p>")
        else:
            shown = df.head(cfg.max_rejected_rows)
            out.append(f"<p>{len(df)} rejected"
                       + (f" (first {len(shown)} shown)" if len(shown) < len(df) else "") + "</p>")
            out.append(_table(list(shown.columns), shown.to_numpy().tolist()))
    return "\n".join(out)


def _rings(ctx: dict) -> str:
    m = ctx["metrics"]
    if not m:
        return _notrun("no arm metrics")
    rows = []
    for a, v in m.items():
        fr = next((k for k in v if k.startswith("ring_frac_above_") and
                   not k.endswith("_wilson")), None)
        rows.append([a, v.get("ring_n"), v.get("ring_median_score"),
                     v.get(fr) if fr else None, v.get(f"{fr}_wilson") if fr else None])
    out = ["<p>Procedural synthetic rings (no lensing): a model that learned the lensing "
           "morphology rather than 'bright ring' should give them low p_lens.</p>",
           _table(["arm", "n rings", "median p_lens", "fraction above threshold", "Wilson"],
                  rows)]
    out.append("<h3>Score saturation</h3>")
    srows = []
    for a, v in m.items():
        for g, s in (v.get("saturation") or {}).items():
            if g != "thresholds" and isinstance(s, dict):
                srows.append([a, g, s.get("n"), s.get("frac_above_high"),
                              s.get("frac_below_low"), s.get("unique_frac")])
    out.append(_table(["arm", "group", "n", "frac > high", "frac < low", "unique fraction"],
                      srows))
    return "\n".join(out)


def _decision(ctx: dict) -> str:
    d = ctx["decision"]
    steps = "".join(f"<li>{_e(s)}</li>" for s in d.get("path", []))
    res = d.get("center_mask_resolution") or {}
    mask = "".join(f"<li>arm <b>{_e(a)}</b>: centre mask {'on' if r['center_mask'] else 'off'} "
                   f"({_e(r['reason'])})</li>" for a, r in res.items())
    mask = f"<p>Centre mask of the final arm(s), from this decision:</p><ul>{mask}</ul>" if mask \
        else ""
    return (f"<p>Branch taken: <b>{_e(d.get('branch'))}</b></p><ol>{steps}</ol>{mask}"
            "<details><summary>numbers used</summary><pre>"
            + _e(json.dumps(d.get("inputs", {}), indent=1)) + "</pre></details>")


def _config(ctx: dict) -> str:
    t = ctx["config_text"]
    if not t:
        return _notrun("no effective config supplied")
    lim = ctx["rcfg"].config_max_chars
    note = f"<p>(truncated to {lim} characters)</p>" if len(t) > lim else ""
    return note + "<pre>" + _e(t[:lim]) + "</pre>"


_BUILDERS: dict[str, Callable[[dict], str]] = {
    "summary": _summary, "gates": _gates, "populations": _populations,
    "calibration": _calibration, "regions": _regions, "training": _training, "roc": _roc,
    "completeness": _completeness, "limits": _limits, "anchors": _anchors, "rings": _rings,
    "decision": _decision, "config": _config,
}


def metrics_document(*, metrics: dict, decision: dict, primary_metric: str) -> dict:
    """The ``metrics.json`` document: ``{"arms", "decision", "success_criteria",
    "primary_metric"}``, JSON-ready (undefined numbers are None, never NaN)."""
    return to_jsonable({"arms": metrics, "decision": decision,
                        "success_criteria": decision.get("success_criteria", []),
                        "primary_metric": primary_metric})


def render_report(
    inputs: ReportInputs,
    *,
    metrics: dict,
    decision: dict,
    config_text: str,
    gallery: Sequence[dict] = (),
    report_config: ReportConfig | None = None,
    primary_metric: str = "tier_a_recall_at_fpr_0.01",
    arms: Sequence[str] = (),
    output_dir_label: str = "",
    generated: str | None = None,
) -> str:
    """The report page (HTML text) from loaded inputs; pure (no file is read or written).

    Parameters
    ----------
    inputs : ReportInputs
        Gates, audit, calibration, region map, training logs, rejected anchors.
    metrics : dict
        ``{arm: compute_arm_metrics(...)}`` (may be empty).
    decision : dict
        Output of :func:`gen5dask.evaluate.decision.decide` (plus the ablation's
        ``center_mask_resolution``).
    config_text : str
        The effective config (YAML text), embedded verbatim.
    gallery : sequence of dict
        Anchor cutouts ``{name, tier, score, png_bytes}`` (may be empty).
    report_config : ReportConfig, optional
        Title, gallery size, figure resolution.
    primary_metric : str
        Headline metric name (the checkpoint-selection metric; DESIGN §8 gate 8).
    arms : sequence of str
        Further arm names whose training logs to show even without metrics.
    output_dir_label : str
        The run's output directory, as shown in the header.
    generated : str, optional
        Time stamp shown in the header (default: now, UTC).
    """
    rcfg = report_config or ReportConfig()
    metrics = to_jsonable(dict(metrics))
    ctx = {"inputs": inputs, "metrics": metrics, "decision": decision, "rcfg": rcfg,
           "dpi": rcfg.figure_dpi, "gallery": list(gallery), "config_text": config_text or "",
           "primary_metric": primary_metric, "extra_arms": list(arms)}
    parts = []
    for sid, title in SECTIONS:
        try:
            body = _BUILDERS[sid](ctx)
        except Exception as exc:  # a broken input must not lose the rest of the report
            log.warning("report section %r failed: %s", sid, exc)
            body = f'<p class="error">section failed: {_e(type(exc).__name__)}: {_e(exc)}</p>'
        parts.append(f'<section id="{sid}"><h2>{_e(title)}</h2>\n{body}\n</section>')
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in SECTIONS)
    now = generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(rcfg.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(rcfg.title)}</h1><p>Output directory: <code>{_e(output_dir_label)}</code>; "
            f"generated {now}.</p><nav>{nav}</nav>\n" + "\n".join(parts) + "</body></html>\n")

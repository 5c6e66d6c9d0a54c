"""Plots and the self-contained HTML report on a tiny synthetic output directory."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from gen5dask.config.report import ReportConfig
from gen5dask.evaluate import plots
from gen5dask.evaluate.metrics import compute_arm_metrics
from gen5dask.evaluate.report import SECTIONS
from gen5dask.evaluate.stats import compare_populations
from gen5dask.paths import OutputLayout
from gen5dask.stages.report import build_report, read_jsonl

from .synth import make_scores

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def metrics():
    return {a: compute_arm_metrics(make_scores(i, sep=1.0 + i), n_boot=30, seed=1)
            for i, a in enumerate(["baseline", "masked", "remediated"])}


def _populate(root):
    lay = OutputLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    lay.gates_json.write_text(json.dumps([
        {"name": "null_injection", "passed": True, "blocking": True, "value": 0.51,
         "threshold": 0.6, "detail": "core-only AUC"},
        {"name": "split_disjoint", "passed": False, "blocking": True, "value": 2,
         "threshold": 0, "detail": "2 regions in two splits"},
    ]))
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(2, 0.5, 50), rng.lognormal(0, 0.5, 40)
    lay.audit_dir.mkdir()
    (lay.audit_dir / "audit.json").write_text(json.dumps({"brightness": {
        "quantity": "core brightness (nmgy)",
        "populations": {"training": a.tolist(), "anchors": b.tolist()},
        "comparisons": {"training_vs_anchors": compare_populations(a, b, n_boot=20, seed=0)},
    }}))
    lay.calibration_json.write_text(json.dumps({
        "bins": [0.8, 2, 8, 20, 1e6], "target_fractions": [0.4, 0.4, 0.15, 0.05],
        "achieved_fractions": [0.38, 0.41, 0.16, 0.05], "n": 1000, "bound_hits": 3}))
    lay.split_dir.mkdir()
    (lay.split_dir / "region_map.png").write_bytes(plots.brightness_png({"x": [1.0, 2.0]}))
    lay.models_dir.mkdir()
    lay.train_log("baseline").write_text("\n".join(json.dumps(
        {"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "val_auc": 0.8,
         "lr": 1e-3, "samples_per_s": 500.0}) for e in range(4)) + "\n")
    lay.anchors_rejected_csv.write_text("name,ra,dec,reason\nJ0101,1.0,2.0,off-centre\n")
    return lay


def _images(page):
    return re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)


def test_report_full(tmp_path, metrics):
    lay = _populate(tmp_path / "out")
    gal = [{"name": "J0001", "tier": "A", "score": 0.9,
            "png_bytes": plots.brightness_png({"a": [1.0]})}]
    p = build_report(lay.root, metrics=metrics, config_text="seed: 3\nurl_note: <b>",
                     gallery=gal, report_config=ReportConfig(title="T<1>"))
    assert p == lay.report_html
    page = p.read_text()
    for _, title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "section failed" not in page
    assert "not run" not in page.split('id="anchors"')[0]  # everything upstream was present
    assert "http://" not in page and "https://" not in page and "url(" not in page
    imgs = _images(page)
    assert len(imgs) >= 10
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "T&lt;1&gt;" in page and "url_note: &lt;b&gt;" in page
    assert "off-centre" in page and "split_disjoint" in page and "J0001" in page
    assert "Verdict:" in page
    doc = json.loads(lay.metrics_json.read_text())
    assert set(doc) == {"arms", "decision", "success_criteria", "primary_metric"}
    assert set(doc["arms"]) == {"baseline", "masked", "remediated"}
    assert doc["success_criteria"] == doc["decision"]["success_criteria"]
    assert "NaN" not in lay.metrics_json.read_text()


def test_report_empty_output_dir_says_not_run(tmp_path):
    p = build_report(tmp_path / "empty", metrics={}, config_text="")
    page = p.read_text()
    for _, title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert page.count("not run") >= 10
    assert "section failed" not in page
    doc = json.loads(OutputLayout(tmp_path / "empty").metrics_json.read_text())
    assert doc["arms"] == {} and doc["decision"]["branch"] == "Undetermined"


def test_report_survives_broken_input(tmp_path, metrics):
    lay = OutputLayout(tmp_path / "broken")
    lay.root.mkdir()
    lay.gates_json.write_text("{not json")
    page = build_report(lay.root, metrics=metrics, config_text="x").read_text()
    gates = page.split('id="gates"')[1].split("</section>")[0]
    assert "section failed" in gates and "JSONDecodeError" in gates
    assert "Verdict:" in page


def test_plots_return_png_and_save(tmp_path, metrics):
    m = metrics["baseline"]
    out = tmp_path / "f" / "roc.png"
    data = plots.roc_png({"a": m["roc"], "b": None}, path=out)
    assert data.startswith(PNG) and out.read_bytes() == data
    assert plots.score_hist_png(m["score_hist"]).startswith(PNG)
    c = m["completeness"]
    assert plots.completeness_1d_png({"arc_snr": c["arc_snr"]}).startswith(PNG)
    assert plots.completeness_2d_png(c["theta_e_over_psf_x_arc_snr"]).startswith(PNG)
    assert plots.training_curves_png([{"epoch": 0, "train_loss": 1.0}]).startswith(PNG)
    assert plots.brightness_png({"a": [-1.0, 0.0, 2.0], "b": []}).startswith(PNG)
    with pytest.raises(ValueError, match="4 bins but 2 target"):
        plots.calibration_png({"bins": [0, 1, 2, 3, 4], "target_fractions": [1, 0],
                               "achieved_fractions": [1, 0, 0, 0]})
    # the target's bootstrap interval and the anchors' true fractions are drawn when present
    cal = {"bins": [0, 1, 2], "target_fractions": [0.7, 0.3], "achieved_fractions": [0.7, 0.3]}
    plain = plots.calibration_png(cal)
    cal["proxy_relation"] = {"deconvolution": {"fractions_interval": {"2.5": [0.4, 0.1],
                                                                      "97.5": [0.9, 0.6]}},
                             "recovery": {"fractions_true_open": [0.1, 0.9]}}
    full = plots.calibration_png(cal)
    assert plain.startswith(PNG) and full.startswith(PNG) and full != plain


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"epoch": 0}\n\n[1]\n')
    with pytest.raises(ValueError, match=r"log.jsonl:3: expected a JSON object"):
        read_jsonl(p)
    p.write_text('{"epoch": 0}\n{bad\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: not valid JSON"):
        read_jsonl(p)


def test_evaluation_layer_is_pure():
    """evaluate/ knows no stage, store or output layout, and reads no file (DESIGN §2)."""
    import ast
    from pathlib import Path

    import gen5dask.evaluate as ev

    for f in Path(ev.__file__).parent.glob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("gen5dask.stages", "gen5dask.store", "gen5dask.paths", "gen5dask.cli")
                ), f"{f.name} imports {node.module}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("read_text", "read_bytes", "open_zarr"), (
                    f"{f.name} reads files ({node.attr})")


def test_render_report_is_pure(metrics):
    from gen5dask.evaluate.decision import decide
    from gen5dask.evaluate.report import ReportInputs, render_report

    inputs = ReportInputs(gates=[{"name": "g", "passed": True, "blocking": True}],
                          errors={"audit": "JSONDecodeError: bad"},
                          missing={"calibration": "calibration.json not found: calibrate"})
    page = render_report(inputs, metrics=metrics, decision=decide(metrics), config_text="x",
                         generated="now")
    assert page == render_report(inputs, metrics=metrics, decision=decide(metrics),
                                 config_text="x", generated="now")
    pops = page.split('id="populations"')[1].split("</section>")[0]
    assert "section failed" in pops and "JSONDecodeError: bad" in pops
    assert "calibration.json not found: calibrate" in page
    assert "matched-filter limit" in page


def test_report_shows_calibration_recovery(metrics):
    from gen5dask.evaluate.decision import decide
    from gen5dask.evaluate.report import ReportInputs, render_report

    rec = {"bins": [0.8, 2.0, 8.0], "fractions_target": [0.7, 0.3],
           "fractions_true_open": [0.1, 0.9], "total_variation": 0.6, "ks_statistic": 0.55,
           "ks_pvalue": 1e-4, "wasserstein_log10": 0.42, "median_ratio": 0.31}
    cal = {"bins": [0.8, 2.0, 8.0], "target_fractions": [0.7, 0.3], "source": "anchors",
           "quantity": "arc_snr_peak", "n": 0, "achieved_fractions": None,
           "proxy_relation": {"proxy": "visibility_proxy snr", "inversion": "deconvolve",
                              "n_anchors": 10, "n_anchors_nonpositive_proxy": 2,
                              "recovery": rec}}
    page = render_report(ReportInputs(calibration=cal), metrics=metrics,
                         decision=decide(metrics), config_text="x", generated="now")
    sec = page.split('id="calibration"')[1].split("</section>")[0]
    assert "arc_snr_peak" in sec and "deconvolve" in sec
    assert "total-variation distance of the bin fractions 0.6" in sec
    assert "2-8+" in sec and "0.9" in sec
    assert "the prior" in sec
    cal["colours"] = {"law": {"gr_mean": 1.2, "gr_std": 0.4, "rz_mean": 0.9, "rz_std": 0.3},
                      "summary": {"n_used": 8, "n_anchors": 10}, "method": "m",
                      "recovery": {"true_g_r_median": 1.25, "true_r_z_median": 0.95,
                                   "median_error_g_r": 0.03, "median_error_r_z": -0.02}}
    page = render_report(ReportInputs(calibration=cal), metrics=metrics,
                         decision=decide(metrics), config_text="x", generated="now")
    assert "g-r ~ N(1.2, 0.4)" in page and "median per-anchor error 0.03 (g-r)" in page
    assert "95 % bootstrap interval" in page and "0.350-0.970" not in page
    # the bootstrap: the interval column and the distance's interval
    cal["proxy_relation"]["deconvolution"] = {
        "n_dry_run": 2048, "fractions_bootstrap": [[0.7, 0.3]] * 5,
        "fractions_interval": {"2.5": [0.35, 0.03], "16": [0.5, 0.1], "84": [0.9, 0.5],
                               "97.5": [0.97, 0.65]}}
    rec["total_variation_interval_95"] = [0.26, 0.89]
    page = render_report(ReportInputs(calibration=cal), metrics=metrics,
                         decision=decide(metrics), config_text="x", generated="now")
    sec = page.split('id="calibration"')[1].split("</section>")[0]
    assert "dry run of 2048 injections, 5 bootstrap resamples" in sec
    assert "0.350-0.970" in sec and "0.030-0.650" in sec
    assert "(bootstrap 95 %: 0.260-0.890)" in sec
    # real anchors (no truth): the target and its interval still shown, recovery not scored
    cal["proxy_relation"]["recovery"] = None
    page = render_report(ReportInputs(calibration=cal), metrics=metrics,
                         decision=decide(metrics), config_text="x", generated="now")
    assert "recovery not scored" in page and "0.350-0.970" in page


def test_training_section_records_each_arms_recipe(metrics):
    from gen5dask.evaluate.report import ReportInputs, render_report

    models = {"remediated": {
        "arm": {"name": "remediated", "brightness": "calibrated", "hard_negatives": True,
                "center_mask": False, "init_from": "baseline"},
        "model": "resnet_small", "n_parameters": 196000, "stamp_size": 48,
        "bands": ["g", "r", "z"], "epoch": 11, "epochs_run": 12, "early_stopped": False,
        "selection_metric": "val_auc", "selection_value": 0.864,
        "counts": {"train": {"injection": 3600, "control": 3000, "hard_negative": 530}},
        "train": {"epochs": 12, "batch_size": 128, "lr": 0.003, "schedule": "cosine"}}}
    models["masked"] = {**models["remediated"], "lens_light": "azimuthal_median"}
    page = render_report(ReportInputs(models=models), metrics=metrics, decision=None,
                         config_text="x",
                         generated="now")
    sec = page.split('id="training"')[1].split("</section>")[0]
    row = re.sub(r"<[^>]+>", "|", sec.split("<td>remediated</td>")[1].split("</tr>")[0])
    cells = [c for c in row.split("|") if c]
    assert cells == ["calibrated", "yes", "off", "baseline", "resnet_small (0.20 M)",
                     "48 px, grz", "12 of 12 (best 11: val_auc 0.864)", "128 / 0.003 cosine",
                     "3600 injection + 3000 control + 530 hard_negative"]
    assert "48 px, grz, minus its azimuthal median" in sec.split("<td>masked</td>")[1]
    broken = render_report(ReportInputs(errors={"models": "x.pt: EOFError: truncated"}),
                           metrics=metrics, decision=None, config_text="x",
                           generated="now")
    assert "model files could not be read" in broken and "EOFError: truncated" in broken

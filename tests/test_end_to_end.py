"""The whole remediation plan end to end on a tiny profile (the CI pass of `gen5dask run`).

Checks that every stage runs from the CLI, the report and metrics exist, the metrics agree with
a recomputation from the scores tables, the gates passed, and a rerun skips every stage.
"""

import json

import numpy as np
import pytest
import yaml

from gen5dask.cli import main
from gen5dask.config import load_config

TINY = {
    "seed": 7,
    "chunk_size": 64,
    "stamp_size": 40,
    "cluster": {"kind": "synchronous", "progress": False},
    "simulate": {"n_hosts": 160, "n_anchors": 24, "n_stress": 8, "n_hard_negatives": 8,
                 "n_rings": 8, "anchor_positions": "footprint"},
    "anchors": {"reference": "{output_dir}/mock/lens_catalog.csv", "min_anchors": 5},
    "calibrate": {"dry_run_n": 32},
    "inject": {"n_null": 4},
    "split": {"n_candidates": 200},
    "audit": {"core_only_max_samples": 200, "n_boot": 50, "figures": False},
    "train": {"epochs": 1, "batch_size": 64, "progress": False},
    "score": {"backend": "local"},
    "evaluate": {"n_bootstrap": 50},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cfg_file = root / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "out")}))
    assert main(["run", str(cfg_file)]) == 0
    return cfg_file


def test_plan_writes_report_and_metrics(tiny_run):
    cfg = load_config(tiny_run)
    lay = cfg.layout
    assert lay.report_html.exists() and lay.metrics_json.exists()
    html = lay.report_html.read_text()
    for heading in ("Summary and verdict", "Gates", "Decision tree"):
        assert heading in html
    assert 'src="http' not in html and "url(http" not in html  # self-contained page
    assert "section failed" not in html
    metrics = json.loads(lay.metrics_json.read_text())
    assert set(metrics["arms"]) == {"baseline", "masked", "remediated"}
    assert metrics["decision"]["branch"]
    gates = json.loads(lay.gates_json.read_text())
    assert [g["name"] for g in gates if g["passed"] is False and g["blocking"]] == []
    for store in (lay.survey, lay.anchors, lay.hardneg, lay.train):
        assert main(["info", str(store), "--no-pixels"]) == 0


def test_metrics_recompute_from_scores_tables(tiny_run):
    from gen5dask.evaluate.metrics import (
        arm_metrics_kwargs,
        compute_arm_metrics,
        evaluation_negatives,
        operating_point,
    )
    from gen5dask.train.scoring import read_scores

    cfg = load_config(tiny_run)
    metrics = json.loads(cfg.layout.metrics_json.read_text())["arms"]
    for arm, m in metrics.items():
        df = read_scores(cfg.layout.scores(arm))
        again = compute_arm_metrics(df, **arm_metrics_kwargs(cfg.evaluate, seed=cfg.seed))
        for key in ("auc", "recall_at_fpr_0.01", "threshold_at_fpr_0.01",
                    "tier_a_recall_at_fpr_0.01", "n_negatives_at_threshold"):
            assert again[key] == m[key] or np.isclose(again[key], m[key]), (arm, key)
        # the operating-point rule, by hand: at most floor(0.01 N) negatives pass
        neg = evaluation_negatives(df)["score"].to_numpy()
        op = operating_point(neg, 0.01)
        assert (neg > op["threshold"]).sum() <= int(np.floor(0.01 * neg.size))
        assert op["n_negatives"] == m["n_negatives_at_threshold"] == neg.size


def test_rerun_skips_every_stage(tiny_run, capsys):
    assert main(["run", str(tiny_run)]) == 0
    err = capsys.readouterr().err
    from gen5dask.stages.run import plan_for

    assert err.count("up to date, skipped") == len(plan_for(load_config(tiny_run)))


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    cfg = load_config(tiny_run)
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
         f"--screenshot={shot}", cfg.layout.report_html.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        colours = im.convert("RGB").resize((60, 120)).getcolors(maxcolors=100000)
    assert len(colours) > 50  # a rendered page with tables and figures, not a blank canvas


def test_every_store_opens_with_plain_xarray_without_warnings(tiny_run):
    """A Pangeo user's read: plain ``xr.open_zarr`` on every store the run wrote, no toolkit
    reader, no warning; ``band`` is a coordinate and string variables are strings."""
    import warnings
    from pathlib import Path

    import xarray as xr

    cfg = load_config(tiny_run)
    out = Path(cfg.output_dir)
    stores = sorted(p for p in out.rglob("*.zarr") if p.is_dir() and not any(
        part.endswith(".zarr") for part in p.relative_to(out).parts[:-1]))
    assert {cfg.layout.survey, cfg.layout.anchors, cfg.layout.hardneg, cfg.layout.train} <= set(
        stores)
    assert any(p.parent.name == "scores" for p in stores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in stores:
            ds = xr.open_zarr(path)
            assert "kind" in ds, path
            kinds = set(ds.kind.values.tolist())
            assert kinds and all(isinstance(k, str) for k in kinds), path
            first = next(iter(kinds))
            assert int((ds.kind == first).sum()) >= 1
            if "image" in ds:  # a contract store
                assert ds.band.values.tolist() == list(cfg.bands)
                r = ds.image.sel(band="r").isel(sample=0).values
                assert r.shape == (cfg.stamp_size, cfg.stamp_size)
                assert {"ra", "dec"} <= set(ds.coords) and "sample" in ds.indexes
                assert ds.image.attrs["units"] == "nanomaggy" and ds.ra.attrs["units"] == "deg"
                assert all(isinstance(s, str) for s in ds.brickname.values[:3].tolist())
                assert set(ds.split.values.tolist()) <= {"", "train", "val", "test"}
    train = xr.open_zarr(cfg.layout.train)
    assert int((train.kind == "injection").sum()) > 0

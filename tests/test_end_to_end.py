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
    "inject": {"n_null": 4, "store_arc": True},
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
    training = html.split('id="training"')[1].split("</section>")[0]
    for arm in ("baseline", "masked", "remediated"):  # each arm's recipe, from its model file
        assert f"<td>{arm}</td>" in training
    assert "random (seeded)" in training and "resnet_small" in training
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


def test_snr_opt_recomputes_from_stored_arc_pixels(tiny_run):
    """snr_opt = sqrt(sum_bands sum_pixels arc^2 invvar) over good pixels, by hand from the
    pixels of train.zarr (arc kept by inject.store_arc) and anchors.zarr."""
    import xarray as xr

    cfg = load_config(tiny_run)
    for store in (cfg.layout.train, cfg.layout.anchors):
        ds = xr.open_zarr(store)
        assert "arc" in ds and "snr_opt" in ds, store
        arc = ds["arc"].values.astype(np.float64)
        ivar = ds["invvar"].values.astype(np.float64)
        has = np.isfinite(ds["snr_opt"].values)
        assert has.any(), store
        want = np.sqrt(np.sum(np.where(ivar > 0, arc * arc * ivar, 0.0), axis=(1, 2, 3)))
        np.testing.assert_allclose(ds["snr_opt"].values[has], want[has], rtol=2e-4)


def test_limits_and_closed_loop_numbers_recompute_from_scores(tiny_run):
    """The matched-filter limits, recall/limit ratios, bright-arc AUC and the reweighted
    injection recall of metrics.json, recomputed with scipy/sklearn/pandas from the scores
    tables alone (independent of gen5dask.evaluate)."""
    import pandas as pd
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    from gen5dask.train.scoring import read_scores

    cfg = load_config(tiny_run)
    doc = json.loads(cfg.layout.metrics_json.read_text())
    z = stats.norm.ppf(0.99)
    for arm, m in doc["arms"].items():
        df = read_scores(cfg.layout.scores(arm))
        neg = df[((df.kind == "control") & (df.split == "test"))
                 | ((df.kind == "hard_negative") & ((df.split == "test") | (df.eval_only == 1)))]
        inj = df[(df.kind == "injection") & (df.split == "test")
                 & (df.inject_mode == "calibrated")]
        tier_a = df[(df.kind == "anchor") & (df.tier == "A")]
        for prefix, rows in (("", inj), ("tier_a_", tier_a)):
            s = rows.snr_opt.to_numpy(np.float64)
            s = s[np.isfinite(s)]
            want = float(stats.norm.cdf(s - z).mean()) if s.size else None
            got = m[f"{prefix}limit_recall_at_fpr_0.01"]
            assert (got is None and want is None) or np.isclose(got, want, rtol=1e-9), (arm,)
            rec = m[f"{prefix}recall_at_fpr_0.01"]
            if rec is not None and want:
                assert np.isclose(m[f"{prefix}recall_over_limit_at_fpr_0.01"], rec / want)
        bright = inj[inj.arc_snr >= cfg.evaluate.bright_arc_snr]
        if len(bright) and len(neg):
            want_auc = roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(bright))],
                                     np.r_[neg.score, bright.score])
            assert np.isclose(m["auc_arc_snr_ge"], want_auc)
        # reweighting by hand: Tier-A decile-style quantile bins of arc_snr, open outer edges
        thr = m["threshold_at_fpr_0.01"]
        t = tier_a.arc_snr.to_numpy(np.float64)
        t = t[np.isfinite(t)]
        if t.size and len(inj):
            nb = min(cfg.evaluate.reweight_n_bins, t.size)
            inner = np.unique(np.quantile(t, np.linspace(0, 1, nb + 1)[1:-1]))
            edges = np.r_[-np.inf, inner, np.inf]
            tb = pd.Series(np.searchsorted(edges, t, side="right") - 1)
            ib = pd.Series(np.searchsorted(edges, inj.arc_snr.to_numpy(), side="right") - 1)
            passed = pd.Series((inj.score.to_numpy() > thr).astype(float))
            frac = tb.value_counts(normalize=True)
            per_bin = passed.groupby(ib.values).mean()
            common = per_bin.index.intersection(frac.index)
            want_rw = float((frac[common] * per_bin[common]).sum() / frac[common].sum())
            assert np.isclose(m["injection_recall_reweighted_to_tier_a_at_fpr_0.01"], want_rw)


def test_realism_probe_recomputes_with_plain_sklearn(tiny_run):
    """The realism probe AUC, recomputed from the scores tables' embeddings with sklearn's
    GridSearchCV (the documented protocol, written independently of gen5dask.evaluate)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gen5dask.train.scoring import read_embeddings, read_scores

    cfg = load_config(tiny_run)
    doc = json.loads(cfg.layout.metrics_json.read_text())
    seed = cfg.seed + cfg.evaluate.bootstrap_seed_offset
    for arm, m in doc["arms"].items():
        df = read_scores(cfg.layout.scores(arm)).reset_index(drop=True)
        ids, emb = read_embeddings(cfg.layout.scores(arm))
        assert (ids == df["sample"].to_numpy()).all()
        a = emb[((df.kind == "anchor") & (df.tier == "A")).to_numpy()].astype(np.float64)
        j = emb[((df.kind == "injection") & (df.split == "test")
                 & (df.inject_mode == "calibrated")).to_numpy()].astype(np.float64)
        if min(len(a), len(j)) < 2:
            assert m["realism_probe_auc"] is None
            continue
        rng = np.random.default_rng([seed, 0x5EA1])
        if len(j) > 2000:
            j = j[np.sort(rng.choice(len(j), 2000, replace=False))]
        x = np.r_[a, j]
        y = np.r_[np.ones(len(a), int), np.zeros(len(j), int)]
        k = max(2, min(cfg.evaluate.realism_folds, len(a), len(j)))
        inner = max(2, min(3, (k - 1) * min(len(a), len(j)) // k))
        oof = np.empty(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            grid = GridSearchCV(
                make_pipeline(StandardScaler(),
                              LogisticRegression(class_weight="balanced", max_iter=2000)),
                {"logisticregression__C": list(np.logspace(-4, 2, 7))}, scoring="roc_auc",
                cv=StratifiedKFold(inner, shuffle=True, random_state=seed + 1))
            grid.fit(x[tr], y[tr])
            oof[te] = grid.decision_function(x[te])
        assert np.isclose(m["realism_probe_auc"], roc_auc_score(y, oof), atol=1e-9), arm

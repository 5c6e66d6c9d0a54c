"""calibrate stage: plan / anchors targets, dry run, achieved fractions after inject."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from gen5dask.config import ConfigError, config_from_dict
from gen5dask.injection.laws import TargetDistribution
from gen5dask.store import REQUIRED, chunk_bounds, create_store, finalize_store, write_chunk
from tests.stages.test_inject import STAMP, host_data, make_hosts

PLAN = [0.40, 0.40, 0.15, 0.05]
CURRENT = [0.05, 0.35, 0.40, 0.20]


def cfg_for(out, hosts, **kw):
    tree = {
        "output_dir": str(out),
        "seed": 5,
        "chunk_size": 128,
        "stamp_size": STAMP,
        "cluster": {"progress": False},
        "inject": {"hosts": str(hosts), "n_null": 0, **kw.pop("inject", {})},
        "calibrate": {"dry_run_n": 64, **kw.pop("calibrate", {})},
    }
    return config_from_dict(tree)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """calibrate (plan) then inject 3 replicates x 100 hosts in both modes."""
    from gen5dask.stages.calibrate import run_calibrate
    from gen5dask.stages.inject import run_inject

    base = tmp_path_factory.mktemp("cal")
    make_hosts(base / "hosts.zarr", 100, chunk=64, seed=3)
    cfg = cfg_for(base / "out", base / "hosts.zarr", inject={"replicates": 3})
    run_calibrate(cfg)
    before = json.loads(cfg.layout.calibration_json.read_text())
    run_inject(cfg)
    after = json.loads(cfg.layout.calibration_json.read_text())
    return cfg, before, after


def test_plan_target_json_before_inject(calibrated_run):
    cfg, before, _ = calibrated_run
    assert before["source"] == "plan"
    assert before["bins"] == [0.8, 2.0, 8.0, 20.0, 100.0]
    assert before["target_fractions"] == PLAN
    assert before["achieved_fractions"] is None and before["n"] == 0
    dm = before["implied_src_dmag"]
    assert dm["n_dry_run"] == 64
    q = [dm["quantiles"][k] for k in ("0.05", "0.5", "0.95")]
    assert q[0] < q[1] < q[2] and 0 < q[1] < 9  # faint sources behind bright hosts
    assert before["proxy_relation"] is None


def test_achieved_fractions_match_target(calibrated_run):
    cfg, _, after = calibrated_run
    assert after["n"] + after["n_below_range"] == 300
    assert after["n_below_range"] == 0
    fr = np.asarray(after["achieved_fractions"])
    counts = np.round(fr * after["n"]).astype(int)
    chi = stats.chisquare(counts, np.asarray(PLAN) * counts.sum())
    assert chi.pvalue > 0.01, (fr, chi)
    sig = np.sqrt(np.asarray(PLAN) * (1 - np.asarray(PLAN)) / after["n"])
    assert np.all(np.abs(fr - PLAN) < 3 * sig + 1e-9)
    assert after["n_uncalibrated"] + after["n_below_range_uncalibrated"] == 300
    assert sum(after["bound_hits"].values()) < 0.05 * after["n"]
    assert (cfg.layout.calibration_dir / "target_vs_achieved.png").stat().st_size > 1000


def test_rerun_is_cached_and_keeps_achieved(calibrated_run):
    from gen5dask.stages.calibrate import run_calibrate
    from gen5dask.stages.inject import run_inject

    cfg, _, after = calibrated_run
    mtime = cfg.layout.calibration_json.stat().st_mtime_ns
    run_calibrate(cfg)  # same config: untouched
    assert cfg.layout.calibration_json.stat().st_mtime_ns == mtime
    # recomputed: calibrate never reads train.zarr (an artifact downstream of it), so the
    # achieved fractions are empty until inject records them again
    run_calibrate(cfg, force=True)
    again = json.loads(cfg.layout.calibration_json.read_text())
    assert again["achieved_fractions"] is None
    run_inject(cfg)  # same store config: not rebuilt, but the achieved fractions are recorded
    again = json.loads(cfg.layout.calibration_json.read_text())
    assert again["achieved_fractions"] == after["achieved_fractions"]


def _mock_hosts(path, n):
    """Hosts from the mock-survey generator (the population the defaults were tuned on)."""
    from gen5dask.sim.survey import Context, SurveyPlan, simulate_samples

    cfg = config_from_dict({"stamp_size": 64})
    ctx = Context(sim=cfg.simulate, seed=cfg.seed, bands=tuple(cfg.bands), stamp_size=64,
                  pixscale=cfg.pixscale, anchor_dm=0.0)
    ids = SurveyPlan.from_config(cfg.simulate).ids(0, n)
    d = simulate_samples(ids, ctx)
    assert set(d["kind"]) == {"host"}
    variables = ["host_mag_r", "subtype", "tier"]
    d = {k: v for k, v in d.items() if k in ("sample", *variables) or k in REQUIRED}
    create_store(path, n_samples=n, stage="simulate", config={}, seed=0, stamp_size=64,
                 chunk_size=n, variables=variables)
    write_chunk(path, 0, d)
    finalize_store(path)


def test_uncalibrated_default_gives_current_mix_on_mock(tmp_path):
    """The default uncalibrated src_dmag law lands near the plan's "Current" column (mostly
    bright arcs) on the mock survey, far from the calibrated target."""
    from gen5dask.injection.calibration import calibration_summary
    from gen5dask.injection.laws import Laws
    from gen5dask.stages.inject import run_inject

    _mock_hosts(tmp_path / "hosts.zarr", 300)
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr",
                  inject={"brightness": "uncalibrated"})
    cfg.stamp_size = 64
    run_inject(cfg)
    s = calibration_summary(cfg.layout.train, target=TargetDistribution([0.8, 2, 8, 20, 100], PLAN),
                            laws=Laws.from_config(cfg.inject), seed=cfg.seed)
    fu = np.asarray(s["achieved_fractions_uncalibrated"])
    assert s["n_below_range_uncalibrated"] < 0.2 * 300
    # "Current" column: 5 % near threshold, 60 % at arc_snr >= 8 -- too bright
    assert fu[0] < 0.1 and fu[2] + fu[3] > 0.6, fu
    assert np.all(np.abs(fu - CURRENT) < 0.35), fu


def test_target_distribution_sampling():
    t = TargetDistribution([0.8, 2, 8, 20, 100], PLAN)
    rng = np.random.default_rng(0)
    v = t.sample(rng.random(20000), rng.random(20000))
    assert v.min() >= 0.8 and v.max() < 100
    fr, n, below = t.fractions_of(v)
    assert n == 20000 and below == 0
    np.testing.assert_allclose(fr, PLAN, atol=0.015)
    # uniform within a bin
    inb = v[(v >= 2) & (v < 8)]
    assert stats.kstest((inb - 2) / 6, "uniform").pvalue > 1e-3
    fr, n, below = t.fractions_of(np.array([0.5, 1.0, 150.0, np.nan]))
    assert (n, below) == (2, 1) and fr.tolist() == [0.5, 0, 0, 0.5]
    with pytest.raises(ValueError, match="sum"):
        TargetDistribution([0, 1, 2], [0.5, 0.6])


def test_fit_proxy_relation_recovers_power_law():
    from gen5dask.stages.calibrate import fit_proxy_relation

    rng = np.random.default_rng(1)
    p = np.exp(rng.uniform(0, 4, 500))
    s = 2.0 * p**0.8 * np.exp(rng.normal(0, 0.1, 500))
    rel = fit_proxy_relation(np.r_[p, -1.0, np.nan], np.r_[s, 3.0, 3.0])
    assert rel["n"] == 500
    assert abs(rel["slope"] - 0.8) < 0.02 and abs(rel["intercept"] - np.log(2)) < 0.05
    assert abs(rel["scatter"] - 0.1) < 0.01
    with pytest.raises(ValueError, match="proxy > 0"):
        fit_proxy_relation(np.array([-1.0, 1.0]), np.array([1.0, 2.0]))


def _ring(radius_pix, width=1.2):
    y, x = np.mgrid[:STAMP, :STAMP] - STAMP // 2
    r = np.hypot(x, y)
    return np.exp(-((r - radius_pix) ** 2) / (2 * width**2))


def _ring_anchors(tmp_path):
    """Hosts store plus anchor rows: hosts with r-band partial rings (arcs) of increasing
    brightness. Returns ``(ids, data, arcs)``."""
    make_hosts(tmp_path / "hosts.zarr", 64, chunk=64, seed=4)
    ids = 90000 + np.arange(40)
    d = host_data(ids, seed=9)
    d["kind"][:] = "anchor"
    y, x = np.mgrid[:STAMP, :STAMP] - STAMP // 2
    arc = _ring(7.0) * (np.arctan2(y, x) > 0)
    amp = np.geomspace(0.005, 0.2, ids.size)
    arcs = (amp[:, None, None] * arc[None]).astype("f4")
    d["image"][:, 1] += arcs
    return ids, d, arcs


def test_anchors_target(tmp_path):
    from gen5dask.stages.calibrate import run_calibrate

    ids, d, _ = _ring_anchors(tmp_path)
    apath = tmp_path / "anchors.zarr"
    create_store(apath, n_samples=ids.size, stage="anchors", config={}, seed=0,
                 stamp_size=STAMP, chunk_size=64, variables=["host_mag_r"])
    for i, (a, b) in enumerate(chunk_bounds(ids.size, 64)):
        write_chunk(apath, i, {k: v[a:b] for k, v in d.items()})
    finalize_store(apath)
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr",
                  calibrate={"target": "anchors", "anchors": str(apath), "dry_run_n": 64})
    run_calibrate(cfg)
    cj = json.loads(cfg.layout.calibration_json.read_text())
    assert cj["source"] == "anchors"
    rel = cj["proxy_relation"]
    assert rel["slope"] > 0 and np.isfinite(rel["scatter"]) and rel["n"] >= 20
    assert rel["n_anchors"] == 40
    fr = np.asarray(cj["target_fractions"])
    assert abs(fr.sum() - 1) < 1e-9 and fr.max() < 1.0  # spread over several bins
    assert cj["implied_src_dmag"] is not None
    # inject then reads this target
    from gen5dask.stages.inject import target_distribution

    t, src = target_distribution(cfg)
    assert src == "anchors" and list(t.fractions) == pytest.approx(list(fr))


def test_bad_config_and_missing_anchors(tmp_path):
    from gen5dask.stages.calibrate import run_calibrate

    with pytest.raises(ConfigError, match="sum to 1"):
        config_from_dict({"calibrate": {"fractions": [0.5, 0.5, 0.5, 0.5]}})
    with pytest.raises(ConfigError, match="4 values for 3 bins|values for"):
        config_from_dict({"calibrate": {"bins": [1, 2, 3, 4]}})
    make_hosts(tmp_path / "hosts.zarr", 8, chunk=8)
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr",
                  calibrate={"target": "anchors", "anchors": str(tmp_path / "nope.zarr")})
    with pytest.raises(ValueError, match="nope.zarr"):
        run_calibrate(cfg)


@pytest.mark.parametrize("inversion", ["regression", "deconvolve"])
def test_anchors_recovery_against_truth(tmp_path, inversion):
    """Anchors that carry their true arc_snr (as mock anchors do): calibration.json scores the
    recovery; recomputed here from the stored per-anchor implied values with scipy."""
    from gen5dask.kernels import photometry
    from gen5dask.stages.calibrate import run_calibrate

    ids, d, arcs = _ring_anchors(tmp_path)
    d["arc_snr"] = photometry.arc_snr(arcs, d["invvar"][:, 1]).arc_snr.astype("f4")
    apath = tmp_path / "anchors.zarr"
    create_store(apath, n_samples=ids.size, stage="anchors", config={}, seed=0,
                 stamp_size=STAMP, chunk_size=64, variables=["host_mag_r", "arc_snr"])
    write_chunk(apath, 0, d)
    finalize_store(apath)
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr",
                  calibrate={"target": "anchors", "anchors": str(apath), "dry_run_n": 64,
                             "proxy_dry_run_n": 256, "inversion": inversion,
                             "bootstrap": 40})
    run_calibrate(cfg)
    rel = json.loads(cfg.layout.calibration_json.read_text())["proxy_relation"]
    assert rel["inversion"] == inversion and rel["quantity"] == "arc_snr"
    rec = rel["recovery"]
    imp = np.array([np.nan if v is None else v for v in rel["anchor_implied"]["implied"]])
    assert rel["anchor_implied"]["sample"] == ids.tolist()
    true = d["arc_snr"].astype(np.float64)
    ok_i, ok_t = np.isfinite(imp) & (imp > 0), true > 0
    ks = stats.ks_2samp(imp[ok_i], true[ok_t])
    assert rec["ks_statistic"] == pytest.approx(ks.statistic)
    assert rec["median_ratio"] == pytest.approx(np.median(imp[ok_i]) / np.median(true[ok_t]))
    edges = np.asarray(cfg.calibrate.bins)
    k = np.minimum(np.searchsorted(edges, true[true >= edges[0]], side="right") - 1, 3)
    t_fr = np.bincount(k, minlength=4) / k.size
    assert rec["total_variation"] == pytest.approx(
        0.5 * np.abs(np.asarray(rel["recovery"]["fractions_target"]) - t_fr).sum())
    assert 0.0 <= rec["total_variation"] <= 1.0
    if inversion == "regression":
        assert "deconvolution" not in rel and rec["total_variation_interval_95"] is None
        return
    # the bootstrap: 40 resamples, their percentiles and the distance interval recomputed
    dec = rel["deconvolution"]
    from gen5dask.store import store_geometry
    assert dec["n_dry_run"] == min(256, store_geometry(tmp_path / "hosts.zarr")["n_samples"])
    boot = np.asarray(dec["fractions_bootstrap"])
    assert boot.shape == (40, 4)
    np.testing.assert_allclose(boot.sum(axis=1), 1.0)
    for p in ("2.5", "16", "84", "97.5"):
        np.testing.assert_allclose(dec["fractions_interval"][p],
                                   np.percentile(boot, float(p), axis=0))
    tv = 0.5 * np.abs(boot - t_fr).sum(axis=1)
    np.testing.assert_allclose(rec["total_variation_interval_95"],
                               np.percentile(tv, [2.5, 97.5]))


def test_colours_from_anchors(tmp_path):
    """calibrate.colours: anchors -> the colour law in calibration.json, its per-anchor colours
    and the recovery of the anchors' true source colours; inject then draws calibrated colours
    from it."""
    from gen5dask.stages.calibrate import run_calibrate
    from gen5dask.stages.inject import run_inject
    from gen5dask.store import read_table
    from tests.stages.test_inject import SKY_SIGMA

    make_hosts(tmp_path / "hosts.zarr", 64, chunk=64, seed=4)
    ids = 91000 + np.arange(40)
    d = host_data(ids, seed=10)
    d["kind"][:] = "anchor"
    rng = np.random.default_rng(2)
    gr, rz = rng.normal(1.2, 0.3, ids.size), rng.normal(0.9, 0.25, ids.size)
    y, x = np.mgrid[:STAMP, :STAMP] - STAMP // 2
    arc = _ring(7.0) * (np.arctan2(y, x) > 0)
    arc = arc / arc.sum() * 40 * SKY_SIGMA[1] * np.sqrt((arc > 0.1).sum())  # r-band S/N ~ 40
    for k, c in enumerate((10 ** (-0.4 * gr), np.ones(ids.size), 10 ** (0.4 * rz))):
        d["image"][:, k] += (c[:, None, None] * arc[None]).astype("f4")
    d["src_gr"], d["src_rz"] = gr.astype("f4"), rz.astype("f4")
    apath = tmp_path / "anchors.zarr"
    create_store(apath, n_samples=ids.size, stage="anchors", config={}, seed=0,
                 stamp_size=STAMP, chunk_size=64, variables=["host_mag_r", "src_gr", "src_rz"])
    write_chunk(apath, 0, d)
    finalize_store(apath)
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr",
                  calibrate={"anchors": str(apath), "colours": "anchors"})
    run_calibrate(cfg)
    col = json.loads(cfg.layout.calibration_json.read_text())["colours"]
    assert col["source"] == "anchors" and col["summary"]["n_used"] >= 30
    meas = np.array([np.nan if v is None else v for v in col["per_anchor"]["g_r"]])
    ok = np.isfinite(meas)
    assert col["law"]["gr_mean"] == pytest.approx(np.median(meas[ok]))
    assert abs(col["law"]["gr_mean"] - 1.2) < 0.2 and abs(col["law"]["rz_mean"] - 0.9) < 0.2
    assert col["recovery"]["median_error_g_r"] == pytest.approx(np.median(meas[ok] - gr[ok]),
                                                                abs=1e-6)
    run_inject(cfg)
    tab = read_table(cfg.layout.train, ["kind", "inject_mode", "src_gr"])
    cal = ((tab["kind"] == "injection") & (tab["inject_mode"] == "calibrated")).to_numpy()
    src = tab["src_gr"].to_numpy()
    assert abs(np.median(src[cal]) - col["law"]["gr_mean"]) < 0.15  # redder than the prior
    lo, hi = cfg.inject.src_gr_range
    assert np.all((src[~cal & np.isfinite(src)] >= lo) & (src[~cal & np.isfinite(src)] <= hi))

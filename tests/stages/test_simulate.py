"""End-to-end tests of ``gen5dask simulate`` on a tiny mock survey (stamp 32)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from gen5dask.config import config_from_dict
from gen5dask.kernels.photometry import core_brightness
from gen5dask.sim import survey
from gen5dask.stages.simulate import make_context, run_simulate
from gen5dask.store import read_attrs, read_samples, read_table, validate

SMALL = {
    "n_hosts": 40,
    "n_anchors": 20,
    "n_stress": 6,
    "n_hard_negatives": 3,
    "n_rings": 6,
    "off_target_fraction": 0.1,
}


def _cfg(tmp_path, name="out", chunk=32, **sim):
    return config_from_dict({
        "output_dir": str(tmp_path / name),
        "stamp_size": 32,
        "chunk_size": chunk,
        "seed": 11,
        "simulate": {**SMALL, **sim},
    })


@pytest.fixture(scope="module")
def survey_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    cfg = _cfg(tmp)
    return cfg, run_simulate(cfg)


def _all_arrays(path):
    return read_samples(path, slice(None), None)


def test_store_valid_with_configured_populations(survey_run):
    cfg, path = survey_run
    assert validate(path) == []
    t = read_table(path)
    counts = t.groupby("kind").size().to_dict()
    assert counts == {"host": 40, "anchor": 20, "stress": 6, "hard_negative": 12, "ring": 6}
    assert t.groupby("subtype").size()["off_target"] == 2
    hn = t[t.kind == "hard_negative"].subtype.value_counts().to_dict()
    assert hn == {"ring_galaxy": 3, "spiral": 3, "merger": 3, "edge_on": 3}
    assert set(t[t.kind == "host"].subtype) == {"lrg"}
    assert set(t[t.kind == "ring"].subtype) == {"procedural_ring"}
    lab = t.groupby("kind").label.unique()
    assert all(lab[k].tolist() == [1] for k in ("anchor", "stress"))
    assert all(lab[k].tolist() == [0] for k in ("host", "hard_negative", "ring"))
    assert (t[t.kind == "anchor"].tier == "A").sum() == 14  # round(0.7 * 20)
    assert set(t[t.kind == "stress"].tier) == {"stress"}
    # ids: population offset + index, unique
    assert t["sample"].is_unique
    np.testing.assert_array_equal(t[t.kind == "anchor"]["sample"], 1_000_000_000 + np.arange(20))
    # observing conditions inside the configured ranges
    assert t.psfdepth_r.between(23.6, 26.8).all()
    for b in "grz":
        assert t[f"psfsize_{b}"].between(0.75, 1.6).all()
    assert read_attrs(path)["complete"]


def test_truth_recorded_for_every_arc(survey_run):
    _, path = survey_run
    t = read_table(path)
    lens = t[t.kind.isin(["anchor", "stress"]) & (t.subtype != "off_target")]
    truth = ["theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
             "src_dmag", "src_reff", "src_n", "src_q", "src_pa", "src_mag_r", "src_gr",
             "src_rz", "magnification", "arc_snr", "arc_snr_peak"]
    assert lens[truth].notna().all().all()
    anchors = lens[lens.kind == "anchor"]
    # physical anchors (the default) pass Collett's resolution criterion at their r-band PSF
    fwhm_r = read_samples(path, anchors.index.to_numpy(), ["psfsize"])["psfsize"][:, 1]
    assert (anchors.theta_e**2 > anchors.src_reff**2 + (fwhm_r / 2) ** 2).all()
    assert (anchors.magnification > 3).all()
    assert lens.theta_e[lens.kind == "stress"].between(0.8, 1.8).all()
    assert (lens.magnification > 1).all()
    np.testing.assert_allclose(lens.src_dmag, lens.src_mag_r - lens.host_mag_r, atol=1e-4)
    others = t[t.kind.isin(["host", "hard_negative"]) | (t.subtype == "off_target")]
    assert others[truth].isna().all().all()
    assert t[t.kind == "stress"].host_mag_r.between(16.5, 18.5).all()
    # arc S/N recomputed from the stored arc and invvar
    from gen5dask.kernels.photometry import arc_snr

    idx = np.flatnonzero(t.kind.isin(["anchor", "stress"]) & (t.subtype != "off_target"))
    d = read_samples(path, idx, ["arc", "invvar"])
    snr = arc_snr(d["arc"][:, 1], d["invvar"][:, 1])
    np.testing.assert_allclose(snr.arc_snr, t.arc_snr.to_numpy()[idx], rtol=1e-6)


def test_arc_snr_follows_target_table(survey_run):
    cfg, path = survey_run
    ctx = make_context(cfg)
    t = read_table(path).set_index("sample")
    # physical anchors (the default) have no target table; rings and stress lenses do
    ids = t.index[t.kind.isin(["ring", "stress"]) & t.arc_snr.notna()]
    models = [survey.sample_model(int(i), ctx) for i in ids]
    got = t.loc[ids, "arc_snr"].to_numpy()
    # every object's measured S/N lies in the table bin its target was drawn from
    for m, v in zip(models, got, strict=True):
        assert m.target_bin[0] <= v < m.target_bin[1], (m.sample_id, m.target_snr, v)
    # and the targets of many anchors follow the table (chi-square, 3 dof)
    sim = cfg.simulate.model_copy(update={"n_anchors": 1500, "off_target_fraction": 0.0,
                                          "anchor_model": "plan_table"})
    big = survey.Context(**{**ctx.__dict__, "sim": sim})
    targets = [survey.sample_model(1_000_000_000 + i, big).target_snr for i in range(1500)]
    counts = np.histogram(targets, sim.arc_snr_bins)[0]
    expected = 1500 * np.asarray(sim.arc_snr_fractions)
    assert ((counts - expected) ** 2 / expected).sum() < 16.3


def test_plan_table_anchors_follow_target_table(tmp_path):
    cfg = _cfg(tmp_path, "pt", n_hosts=1, n_anchors=10, n_stress=0, n_hard_negatives=0,
               n_rings=0, off_target_fraction=0.0, anchor_model="plan_table")
    path = run_simulate(cfg)
    ctx = make_context(cfg)
    t = read_table(path).set_index("sample")
    ids = t.index[t.kind == "anchor"]
    assert t.loc[ids, "theta_e"].between(*cfg.simulate.anchor_theta_e).all()
    for i in ids:
        lo, hi = survey.sample_model(int(i), ctx).target_bin
        assert lo <= t.loc[i, "arc_snr"] < hi


def test_physical_anchors_are_the_selected_lenses(survey_run):
    cfg, path = survey_run
    ctx = make_context(cfg)
    t = read_table(path).set_index("sample")
    lst = pd.read_csv(cfg.layout.root / "mock" / "anchor_list.csv").set_index("id")
    anchors = t[(t.kind == "anchor") & (t.subtype != "off_target")]
    lp = cfg.simulate.lenspop
    ratio = []
    for i, row in anchors.iterrows():
        m = survey.sample_model(int(i), ctx)
        lens = m.lens
        # the arc brightness is the source's own flux times magnification (no target table)
        assert np.isnan(m.target_snr)
        assert row.src_mag_r == pytest.approx(lens["src_mag_r"], abs=1e-4)
        assert row.magnification == pytest.approx(lens["magnification"], rel=1e-5)
        assert row.theta_e == pytest.approx(lens["theta_e"], rel=1e-6)
        assert lst.loc[i, "z_source"] == pytest.approx(lens["z_source"], abs=1e-6)
        assert lst.loc[i, "z_lens"] == pytest.approx(lens["z_lens"], abs=1e-6)
        assert 0 < lens["z_lens"] < lens["z_source"]
        ratio.append(row.arc_snr / lens["selection_arc_snr"])
        # visible arcs: at least the tier's threshold minus 4.5 softness widths
        snr_min = lp.selection_snr_min if row.tier == "A" else lp.tier_b_snr_min
        assert lens["selection_arc_snr"] > snr_min * 10 ** (-4.5 * lp.selection_snr_width_dex)
    # the store measures the same arcs through its masks: equal where no mask touches them
    assert np.median(ratio) == pytest.approx(1.0, abs=1e-3)
    # arc colours are the published DESI Tier-A annulus colours (not the blue injection laws)
    assert anchors.src_gr.mean() > 0.9 and anchors.src_rz.mean() > 0.6


def test_anchor_cores_fainter_than_hosts(survey_run):
    cfg, path = survey_run
    t = read_table(path)
    hosts = np.flatnonzero(t.kind == "host")
    anchors = np.flatnonzero((t.kind == "anchor") & (t.subtype != "off_target"))
    ch = core_brightness(read_samples(path, hosts, ["image"])["image"][:, 1]).median_core
    ca = core_brightness(read_samples(path, anchors, ["image"])["image"][:, 1]).median_core
    # measured on the images the arcs sit inside the r < 8 px core, so the image ratio is
    # below the deflector-light ratio (40x, tested noise-free in tests/sim)
    assert np.median(ch) / np.median(ca) > 3.0
    assert read_attrs(path)["simulate_anchor_mag_offset"] > 2.0


def test_off_target_rows_show_empty_sky(survey_run):
    cfg, path = survey_run
    t = read_table(path)
    off = np.flatnonzero(t.subtype == "off_target")
    good = np.flatnonzero((t.kind == "anchor") & (t.subtype != "off_target"))
    hosts = np.flatnonzero(t.kind == "host")

    def centre_snr(idx):
        d = read_samples(path, idx, ["image", "invvar"])
        img, iv = d["image"][:, 1], d["invvar"][:, 1]
        yy, xx = np.mgrid[:32, :32]
        ap = np.hypot(yy - 16, xx - 16) < 3
        ok = ap & (iv > 0)
        return np.array([img[i][ok[i]].sum() / np.sqrt((1 / iv[i][ok[i]]).sum())
                         for i in range(len(idx))])

    assert np.all(np.abs(centre_snr(off)) < 5)
    assert np.median(centre_snr(good)) > 5
    assert np.all(centre_snr(hosts) > 20)
    lst = pd.read_csv(cfg.layout.root / "mock" / "anchor_list.csv")
    cat = pd.read_csv(cfg.layout.root / "mock" / "lens_catalog.csv")
    assert list(lst.columns) == ["id", "name", "ra", "dec", "grade", "theta_e", "z_lens",
                                 "z_source", "source"]
    sep = SkyCoord(lst.ra.values * u.deg, lst.dec.values * u.deg).separation(
        SkyCoord(cat.ra.values * u.deg, cat.dec.values * u.deg)).arcmin
    is_off = lst.id.isin(t["sample"].to_numpy()[off]).to_numpy()
    np.testing.assert_allclose(sep[is_off], 3.0, rtol=1e-4)  # CSV keeps 7 decimals
    assert np.all(sep[~is_off] < 1e-4)
    # the typed list matches the store's positions
    np.testing.assert_allclose(lst.ra.values, t.ra.to_numpy()[t.kind == "anchor"], atol=1e-6)
    assert (cfg.layout.root / "mock" / "stress_list.csv").exists()


def test_bit_identical_across_chunking_and_workers(tmp_path, survey_run):
    from distributed import Client, LocalCluster

    cfg, ref_path = survey_run
    ref = _all_arrays(ref_path)
    cfg64 = _cfg(tmp_path, "c64", chunk=64)
    other = _all_arrays(run_simulate(cfg64))
    cfg_dask = _cfg(tmp_path, "dask", chunk=16)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dsk = _all_arrays(run_simulate(cfg_dask, client))
    for name, arr in ref.items():
        np.testing.assert_array_equal(arr, other[name], err_msg=name)
        np.testing.assert_array_equal(arr, dsk[name], err_msg=name)


def test_resume_force_and_config_change(tmp_path):
    cfg = _cfg(tmp_path, "r", n_hosts=5, n_anchors=2, n_stress=1, n_hard_negatives=1, n_rings=1,
               off_target_fraction=0.0)
    path = run_simulate(cfg)
    before = _all_arrays(path)
    assert run_simulate(cfg) == path  # complete: returned as is
    changed = _cfg(tmp_path, "r", n_hosts=6, n_anchors=2, n_stress=1, n_hard_negatives=1,
                   n_rings=1, off_target_fraction=0.0)
    # another config replaces the store (issue #14: a rerun never asks to delete anything)
    assert read_table(run_simulate(changed))["kind"].eq("host").sum() == 6
    again = _all_arrays(run_simulate(cfg))
    for name, arr in before.items():
        np.testing.assert_array_equal(arr, again[name], err_msg=name)
    again = _all_arrays(run_simulate(cfg, force=True))
    for name, arr in before.items():
        np.testing.assert_array_equal(arr, again[name], err_msg=name)


def test_lenscat_positions(tmp_path):
    pytest.importorskip("lenscat")
    cfg = _cfg(tmp_path, "lc", n_hosts=2, n_anchors=5, n_stress=0, n_hard_negatives=0,
               n_rings=0, anchor_positions="lenscat", off_target_fraction=0.0)
    path = run_simulate(cfg)
    lst = pd.read_csv(cfg.layout.root / "mock" / "anchor_list.csv")
    assert lst.name.str.contains("DESI-").all()
    assert not lst.source.str.contains("Lopes").any()
    catalog = pd.read_csv(survey.lenscat_catalog_path())
    names = catalog.name.astype(str).str.split(" | ", regex=False).str[0]
    merged = lst.merge(pd.DataFrame({"name": names, "ra_c": catalog["RA [deg]"]}), on="name")
    np.testing.assert_allclose(merged.ra, merged.ra_c, atol=1e-6)
    assert read_attrs(path)["simulate_anchor_positions_used"] == "lenscat"


def test_anchor_model_injection_is_exactly_the_injection_model(tmp_path):
    """``simulate.anchor_model: injection``: the anchors' lens and source are the injection
    laws' keyed draws, rendered by the injection renderer with the one amplitude policy."""
    from gen5dask.injection.colour import colour_factors
    from gen5dask.injection.matched_filter import snr_opt_reference
    from gen5dask.injection.render import render_unit_arcs
    from gen5dask.injection.spec import InjectionModel
    from gen5dask.stages.run import step_fingerprints

    cfg = config_from_dict({
        "output_dir": str(tmp_path / "inj"), "stamp_size": 32, "chunk_size": 32, "seed": 11,
        "simulate": {**SMALL, "off_target_fraction": 0.0, "anchor_model": "injection"},
        "inject": {"theta_e_range": [0.6, 0.9], "src_gr_range": [1.0, 1.3]},
    })
    path = run_simulate(cfg)
    t = read_table(path)
    anc = t[(t.kind == "anchor") & t.arc_snr.notna()]
    assert len(anc) == SMALL["n_anchors"]
    assert anc.theta_e.between(0.6, 0.9).all() and anc.src_gr.between(1.0, 1.3).all()
    ctx = make_context(cfg)
    for sid in anc["sample"].to_numpy()[:3]:
        lens, target = survey.injection_model_lens(int(sid), ctx)
        row = anc.set_index("sample").loc[sid]
        for k in ("theta_e", "lens_q", "lens_pa", "src_x", "src_n", "src_gr", "src_rz"):
            assert row[k] == np.float32(lens[k]), k
        assert target[1] <= row["arc_snr"] < target[2]
    # the arc is the injection renderer's unit arc times one amplitude
    idx = np.flatnonzero((t.kind == "anchor") & t.arc_snr.notna())[:4]
    d = read_samples(path, idx, ["arc", "invvar", "psfsize"])
    model = InjectionModel.from_config(cfg.inject)
    par = {k: t[k].to_numpy(np.float64)[idx] for k in
           ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
            "src_reff", "src_n", "src_q", "src_pa", "src_gr", "src_rz")}
    unit = colour_factors(cfg.bands, par["src_gr"], par["src_rz"])
    ref, _ = render_unit_arcs(model, par, unit, d["psfsize"].astype(np.float64),
                              stamp_size=32, pixscale=cfg.pixscale, bands=cfg.bands)
    amp = d["arc"][:, 1].sum(axis=(1, 2)) / ref[:, 1].sum(axis=(1, 2))
    np.testing.assert_allclose(d["arc"], ref * amp[:, None, None, None], rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(t["snr_opt"].to_numpy()[idx],
                               snr_opt_reference(d["arc"], d["invvar"]), rtol=1e-5)
    # the survey depends on the inject laws only under this model
    for model_name, depends in (("injection", True), ("plan_table", False), ("physical", False)):
        a = config_from_dict({"simulate": {"anchor_model": model_name}})
        b = config_from_dict({"simulate": {"anchor_model": model_name},
                              "inject": {"theta_e_range": [0.6, 0.9]}})
        assert (step_fingerprints(a)["simulate"] != step_fingerprints(b)["simulate"]) == depends


def test_injection_anchors_take_their_own_arc_snr_table(tmp_path):
    """``anchor_arc_snr_bins/fractions`` set the injection-model anchors' target arc S/N (the
    closed loop's visible-arc anchors); rings keep ``arc_snr_bins``; unset, the anchors use it."""
    sim = {"off_target_fraction": 0.0, "anchor_model": "injection",
           "anchor_arc_snr_bins": [20.0, 30.0, 40.0], "anchor_arc_snr_fractions": [0.25, 0.75]}
    cfg = _cfg(tmp_path, "own", n_hosts=1, n_anchors=8, n_stress=0, n_hard_negatives=0,
               n_rings=4, **sim)
    path = run_simulate(cfg)
    t = read_table(path)
    anc = t[t.kind == "anchor"]
    assert len(anc) == 8 and anc.arc_snr.between(20.0, 40.0).all()
    ctx = make_context(cfg)
    for sid in anc["sample"].to_numpy():
        _, (target, lo, hi) = survey.injection_model_lens(int(sid), ctx)
        assert 20.0 <= lo <= target < hi <= 40.0
    # the rings' table is untouched
    rings = t[t.kind == "ring"]
    assert rings.arc_snr.max() < cfg.simulate.arc_snr_bins[-1]
    assert cfg.simulate.anchor_arc_snr_table() == ([20.0, 30.0, 40.0], [0.25, 0.75])
    plain = config_from_dict({"simulate": {"anchor_model": "injection"}}).simulate
    assert plain.anchor_arc_snr_table() == (plain.arc_snr_bins, plain.arc_snr_fractions)
    many = [survey.injection_model_lens(10_000_000 + i, ctx)[1][0] for i in range(800)]
    counts = np.histogram(many, [20.0, 30.0, 40.0])[0]
    assert ((counts - 800 * np.array([0.25, 0.75])) ** 2 / (800 * np.array([0.25, 0.75]))
            ).sum() < 10.8  # chi-square, 1 dof, p = 0.001


@pytest.mark.parametrize("sim, match", [
    ({"anchor_arc_snr_bins": [20.0, 50.0]}, "set together"),
    ({"anchor_arc_snr_bins": [20.0, 50.0], "anchor_arc_snr_fractions": [0.5, 0.5]},
     "one more edge"),
    ({"anchor_arc_snr_bins": [50.0, 20.0], "anchor_arc_snr_fractions": [1.0]}, "increasing"),
    ({"anchor_arc_snr_bins": [20.0, 50.0], "anchor_arc_snr_fractions": [0.9]}, "sum to 1"),
])
def test_anchor_arc_snr_table_is_validated(sim, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({"simulate": sim})

"""``gen5dask audit``: a clean pipeline passes; planted failures fire their gates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gen5dask.config import config_from_dict
from gen5dask.stages.audit import run_audit
from gen5dask.stages.split import run_split
from gen5dask.store import read_samples, read_table, write_columns

from .synth_stores import make_all


def _gates(cfg):
    return {g["name"]: g for g in json.loads(cfg.layout.gates_json.read_text())}


def test_clean_pipeline_passes(tmp_path):
    cfg, *_ = make_all(tmp_path)
    run_split(cfg)
    pd.DataFrame({"id": [1], "match_sep_arcsec": [0.2], "centre_source": [True]}).to_csv(
        cfg.layout.anchors_csv, index=False)
    assert run_audit(cfg) == cfg.layout.gates_json
    g = _gates(cfg)
    failed = {k: v["detail"] for k, v in g.items() if v["passed"] is not True}
    assert failed == {}
    a = json.loads((cfg.layout.audit_dir / "audit.json").read_text())
    b = a["brightness"]["hosts_vs_anchors"]
    assert b["median_ratio"] > 1 and b["ks_p"] is not None and b["cliffs_delta"] is not None
    assert set(a["core_only"]) == {"calibrated", "uncalibrated"}
    assert a["null_injection"]["n_compared"] == 6
    assert "bad_pixel_frac" in a["by_label"] and "host" in a["by_kind_all_stores"]["survey"][
        "bad_pixel_frac"]["classes"]
    assert (cfg.layout.audit_dir / "brightness.png").exists()


def test_planted_failures_fire(tmp_path, monkeypatch):
    cfg, sv, tr = make_all(tmp_path, core_amp=0.05)  # core-only separable injections
    run_split(cfg)
    lay = cfg.layout
    # anchors stage accepted an anchor with the ~3 arcmin coordinate error
    pd.DataFrame({"id": [1, 2], "match_sep_arcsec": [0.2, 181.0],
                  "centre_source": [True, False]}).to_csv(lay.anchors_csv, index=False)
    # NaN pixels in one survey stamp; a NaN PSF in one anchor
    img = read_samples(lay.survey, slice(None), ["image"])["image"]
    img[20, 1, 3, 3] = np.nan  # host 20 has no null injection
    write_columns(lay.survey, {"image": img})
    psf = read_samples(lay.anchors, slice(None), ["psfsize"])["psfsize"]
    psf[0, 2] = np.nan
    write_columns(lay.anchors, {"psfsize": psf})
    # a null injection that differs from its host; injections with a leaky psfdepth_z
    t = read_table(lay.train, ["kind", "split", "host_sample"])
    timg = read_samples(lay.train, slice(None), ["image", "psfdepth"])
    null_row = int(np.flatnonzero(t["kind"] == "null_injection")[0])
    timg["image"][null_row, 0, 0, 0] += 1e-3
    inj = (t["kind"] == "injection").to_numpy()
    timg["psfdepth"][inj, 2] += 1.0
    # a host whose control went to another split
    ctrl = int(np.flatnonzero(t["kind"] == "control")[0])
    split = t["split"].to_numpy().copy()
    split[ctrl] = "test" if split[ctrl] != "test" else "train"
    write_columns(lay.train, {"image": timg["image"], "psfdepth": timg["psfdepth"],
                              "split": split})
    # a PSF convolution that shifts the image by one pixel
    import gen5dask.kernels.psf as kpsf

    orig = kpsf.convolve
    monkeypatch.setattr(kpsf, "convolve", lambda i, k: np.roll(orig(i, k), 1, axis=0))
    # a loader whose workers each read every unit (the earlier pipeline's 8x repeat)
    import gen5dask.train.dataset as ds

    orig_plan = ds.plan_epoch

    def all_units(*a, **kw):
        plan = orig_plan(*a, **kw)
        units = [u for v in plan.values() for u in v[0]]
        sizes = [s for v in plan.values() for s in v[1]]
        return {k: (units, sizes) for k in plan}

    monkeypatch.setattr(ds, "plan_epoch", all_units)
    run_audit(cfg)
    g = _gates(cfg)
    for name in ("anchor_coordinates", "psf_convolution", "null_injection", "core_only_auc",
                 "split_regions_disjoint", "split_hosts_disjoint", "finite_pixels",
                 "psf_positive", "metadata_leakage", "loader_once_per_epoch"):
        assert g[name]["passed"] is False, name
        assert g[name]["blocking"] is True, name
    assert g["core_only_auc"]["value"] > 0.9
    assert g["metadata_leakage"]["value"]["column"] == "psfdepth_z"
    assert g["finite_pixels"]["detail"]["by_store"]["survey"] == 1
    assert g["null_injection"]["value"] == 1
    assert g["loader_once_per_epoch"]["detail"]["max_repeats"] == 2
    for name in ("bandset_consistent", "metric_names", "split_region_cap"):
        assert g[name]["passed"] is True, name


def test_class_balance_fires_on_bad_pixels(tmp_path):
    cfg, sv, tr = make_all(tmp_path)
    run_split(cfg)
    lay = cfg.layout
    t = read_table(lay.train, ["kind"])
    mb = read_samples(lay.train, slice(None), ["maskbits"])["maskbits"]
    mb[(t["kind"] == "injection").to_numpy(), :4, :] |= 1 << 1  # BRIGHT rows only on lenses
    write_columns(lay.train, {"maskbits": mb})
    cfg2 = config_from_dict(cfg.model_dump(), overrides=[
        "gates.non_blocking=[class_balance_conditions]", "audit.loader_workers=0"])
    run_audit(cfg2)
    g = _gates(cfg2)["class_balance_conditions"]
    assert g["passed"] is False and g["blocking"] is False
    assert "bad_pixel_frac" in g["detail"]["flagged"]


def test_no_stores_is_an_error(tmp_path):
    from .synth_stores import make_cfg

    with pytest.raises(FileNotFoundError, match="no complete store"):
        run_audit(make_cfg(tmp_path))

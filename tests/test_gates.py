"""Gate evaluators: each fires on the failure it guards against, and passes when clean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.signal

from gen5dask import gates as G
from gen5dask.config import config_from_dict


def _moffat(fwhm, beta=3.5, size=None):
    """Slow, obvious Moffat kernel (reference, independent of gen5dask.kernels.psf)."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    size = size or 2 * int(np.ceil(4 * fwhm)) + 1
    y, x = np.mgrid[:size, :size] - size // 2
    k = (1 + (x**2 + y**2) / alpha**2) ** (-beta)
    return k / k.sum()


def _conv(img, ker):
    return scipy.signal.fftconvolve(img, ker, mode="same")


def test_anchor_coordinates(tmp_path):
    acc = tmp_path / "anchors.csv"
    rej = tmp_path / "anchors_rejected.csv"
    g = G.anchor_coordinates_gate(acc, rej, max_sep_arcsec=1.0)
    assert g["passed"] is False and g["blocking"] is True and "not evaluated" in g["detail"]
    pd.DataFrame({"id": [1, 2, 3], "match_sep_arcsec": [0.1, 0.3, 0.2],
                  "centre_source": [True, True, True]}).to_csv(acc, index=False)
    pd.DataFrame({"id": [4], "reason": ["off target"]}).to_csv(rej, index=False)
    g = G.anchor_coordinates_gate(acc, rej, max_sep_arcsec=1.0)
    assert g["passed"] is True and g["value"] == pytest.approx(1 / 3)
    # planted: an accepted anchor with the earlier pipeline's ~3 arcmin coordinate error
    pd.DataFrame({"id": [1, 2, 3], "match_sep_arcsec": [0.1, 180.0, 0.2],
                  "center_source": ["yes", "yes", "no"]}).to_csv(acc, index=False)
    g = G.anchor_coordinates_gate(acc, rej, max_sep_arcsec=1.0)
    assert g["passed"] is False and g["detail"]["n_off_target_accepted"] == 2
    assert g["detail"]["offenders"] == ["2", "3"]


def test_psf_convolution_reference_passes_and_shift_fires():
    kw = {"fwhm_pix": [2.0, 5.0], "centroid_tol_pix": 0.01, "flux_tol": 1e-4}
    assert G.psf_convolution_gate(moffat_kernel=_moffat, convolve=_conv, **kw)["passed"]
    shifted = G.psf_convolution_gate(
        moffat_kernel=_moffat, convolve=lambda i, k: np.roll(_conv(i, k), 1, axis=1), **kw)
    assert shifted["passed"] is False
    assert shifted["value"]["centroid_shift_pix"] == pytest.approx(1.0, abs=1e-6)
    lossy = G.psf_convolution_gate(moffat_kernel=lambda f, b, s: 0.99 * _moffat(f),
                                   convolve=_conv, **kw)
    assert lossy["passed"] is False


def test_psf_convolution_real_kernels():
    pytest.importorskip("gen5dask.kernels.psf")
    g = G.psf_convolution_gate(fwhm_pix=[2.0, 4.6, 7.0], centroid_tol_pix=0.01, flux_tol=1e-4)
    assert g["passed"] is True


def _rows():
    rng = np.random.default_rng(0)
    n = 120
    region = np.repeat(np.arange(12), 10)
    split = np.where(region < 8, "train", np.where(region < 10, "val", "test"))
    return pd.DataFrame({
        "store": "survey", "sample": np.arange(n), "ra": 150 + region + rng.uniform(0, 0.5, n),
        "dec": rng.uniform(0, 1, n), "host_sample": -1, "region": region, "split": split})


def _split_gates(rows, cap=0.2):
    out = G.split_gates(rows, host_store="survey", dup_radius_arcsec=5.0, max_region_frac=cap)
    return {g["name"]: g for g in out}


def test_split_gates_clean():
    assert all(g["passed"] for g in _split_gates(_rows()).values())


def test_split_gates_fire():
    rows = _rows()
    leaky = rows.copy()
    leaky.loc[0, "split"] = "test"  # region 0 now in train and test
    assert _split_gates(leaky)["split_regions_disjoint"]["passed"] is False
    # a host and its injection in different splits
    inj = pd.DataFrame({"store": "train", "sample": [5000], "ra": [rows.ra[3]],
                        "dec": [rows.dec[3]], "host_sample": [3], "region": [11],
                        "split": ["test"]})
    g = _split_gates(pd.concat([rows, inj], ignore_index=True))
    assert g["split_hosts_disjoint"]["passed"] is False
    assert g["split_hosts_disjoint"]["detail"]["hosts_in_several_splits"] == [3]
    # a near duplicate (2") of a train object in a test region
    dup = rows.iloc[[0]].assign(sample=9999, ra=rows.ra[0] + 2 / 3600, region=11, split="test")
    g = _split_gates(pd.concat([rows, dup], ignore_index=True))
    nd = g["split_near_duplicates"]
    assert nd["passed"] is False and nd["value"] == 1
    assert _split_gates(rows, cap=0.05)["split_region_cap"]["passed"] is False
    none = _split_gates(rows.assign(split=""))
    assert all(g["passed"] is False for g in none.values())


def test_numeric_gates():
    assert G.core_only_gate({"calibrated": {"auc": 0.98}, "uncalibrated": {"auc": 0.6}},
                            mode="calibrated", max_auc=0.75)["passed"] is False
    ok = G.core_only_gate({"calibrated": {"auc": 0.55}, "uncalibrated": {"auc": 0.99}},
                          mode="calibrated", max_auc=0.75)
    assert ok["passed"] and ok["detail"]["by_mode"]["uncalibrated"]["auc"] == 0.99
    empty = G.core_only_gate({}, mode="calibrated", max_auc=0.75)  # cannot be evaluated: fails
    assert empty["passed"] is False and empty["blocking"] and "not evaluated" in empty["detail"]
    leak = G.leakage_gate({"psfsize_r": 0.93, "ra": 0.51, "host_mag_r": None}, max_dev=0.1)
    assert leak["passed"] is False and list(leak["detail"]["flagged"]) == ["psfsize_r"]
    assert G.leakage_gate({"ra": 0.45}, max_dev=0.1)["passed"] is True
    from gen5dask.evaluate.stats import effect_size_summary

    rng = np.random.default_rng(1)
    lab = np.r_[np.zeros(200), np.ones(200)]
    same = effect_size_summary(rng.normal(size=400), lab)
    shifted = effect_size_summary(rng.normal(size=400) + lab, lab)
    assert G.class_balance_gate({"bad_pixel_frac": same}, max_abs_delta=0.2)["passed"]
    fired = G.class_balance_gate({"bad_pixel_frac": same, "invvar_median_r": shifted},
                                 max_abs_delta=0.2)
    assert fired["passed"] is False and list(fired["detail"]["flagged"]) == ["invvar_median_r"]
    assert G.count_gate("finite_pixels", {"a": 0, "b": 0}, what="x")["passed"]
    assert G.count_gate("finite_pixels", {"a": 0, "b": 2}, what="x")["passed"] is False
    assert G.bandset_gate({"a": ["g", "r", "z"]}, {"a": 0}, {"a": 10}, expected=["g", "r", "z"],
                          max_missing_frac=0.0)["passed"]
    assert G.bandset_gate({"a": ["g", "r"]}, {"a": 0}, {"a": 10}, expected=["g", "r", "z"],
                          max_missing_frac=0.0)["passed"] is False
    known = G.known_metric_names([0.01, 0.001])
    assert "tier_a_recall_at_fpr_0.01" in known
    assert G.metric_names_gate({"train.selection_metric": "val_auc"}, known)["passed"]
    assert G.metric_names_gate({"train.selection_metric": "val_AUC"}, known)["passed"] is False
    assert G.loader_once_gate(np.arange(10), np.arange(10), num_workers=2)["passed"]
    rep = G.loader_once_gate(np.r_[np.arange(10), np.arange(10)], np.arange(10), num_workers=2)
    assert rep["passed"] is False and rep["detail"]["max_repeats"] == 2


def test_gate_records_and_blocking(tmp_path):
    with pytest.raises(ValueError, match="unknown gate"):
        G.gate("no_such_gate", True)
    gates = [G.gate("null_injection", False, value=3), G.gate("finite_pixels", True),
             G.not_evaluated("anchor_coordinates", "missing"),
             G.gate("metadata_leakage", False)]
    gates = G.apply_blocking(gates, ["metadata_leakage", "anchor_coordinates"])
    assert G.blocking_failures(gates) == ["null_injection"]
    assert G.blocking_failures(gates, ["null_injection"]) == []
    cfg = config_from_dict({"output_dir": str(tmp_path)})
    with pytest.warns(UserWarning, match="not found"):
        assert G.check_gates(cfg) == []
    cfg.layout.gates_json.write_text(json.dumps(gates))
    assert G.load_gates(cfg.layout.gates_json) == gates
    assert G.check_gates(cfg) == ["null_injection"]
    cfg2 = config_from_dict({"output_dir": str(tmp_path)},
                            overrides=["gates.override=[null_injection]"])
    with pytest.warns(UserWarning, match="overridden"):
        assert G.check_gates(cfg2) == []
    bad = config_from_dict({"output_dir": str(tmp_path)}, overrides=["gates.override=[nope]"])
    with pytest.raises(ValueError, match="nope"):
        G.check_gates(bad)
    assert "gates.override=[null_injection]" in G.failure_message(["null_injection"], "g.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="list of gates"):
        G.load_gates(tmp_path / "x.json")


def test_a_gate_that_cannot_be_evaluated_is_a_blocking_failure_with_a_reason(tmp_path):
    g = G.not_evaluated("loader_once_per_epoch", "gen5dask.train.dataset: boom")
    assert g["passed"] is False and g["blocking"] is True and "boom" in g["detail"]
    assert G.blocking_failures([g]) == ["loader_once_per_epoch"]
    with pytest.raises(ValueError, match="True or False"):
        G.gate("finite_pixels", None)
    missing = G.anchor_coordinates_gate(tmp_path / "nope.csv", max_sep_arcsec=2.0)
    assert missing["passed"] is False and "not found" in missing["detail"]

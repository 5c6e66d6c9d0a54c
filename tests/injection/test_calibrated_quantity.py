"""calibrate.quantity: the peak-pixel arc S/N as the calibrated quantity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gen5dask.injection.amplitude import solve_nearest, solve_peak
from gen5dask.injection.calibration import read_target, target_of
from gen5dask.injection.laws import TargetDistribution
from gen5dask.kernels import photometry


def _arcs(n=20, size=24, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size // 2
    arcs = np.empty((n, size, size))
    for i in range(n):
        r0, w = rng.uniform(4, 8), rng.uniform(0.8, 2)
        arcs[i] = np.exp(-((np.hypot(x, y) - r0) ** 2) / (2 * w * w)) * (np.arctan2(y, x) > 0)
    arcs /= arcs.sum(axis=(1, 2), keepdims=True)  # unit flux
    iv = rng.uniform(200, 800, (n, size, size)).astype(np.float32)
    iv[:, 0, :] = 0.0  # a bad row
    return arcs.astype(np.float32), iv


def test_solve_peak_attains_every_target():
    arcs, iv = _arcs()
    t = np.geomspace(0.3, 40, arcs.shape[0])
    s = solve_peak(arcs, iv, t)
    got = photometry.arc_snr(arcs * s[:, None, None], iv).arc_snr_peak
    np.testing.assert_allclose(got, t, rtol=1e-6)
    # independent: peak of a * sqrt(invvar) over good pixels is linear in the amplitude
    ref = t / np.max(arcs * np.sqrt(iv), axis=(1, 2))
    np.testing.assert_allclose(s, ref, rtol=1e-6)
    s2, gap = solve_nearest(arcs, iv, t, quantity="arc_snr_peak")
    assert not gap.any() and np.array_equal(s, s2)
    assert np.isinf(solve_peak(np.zeros_like(arcs[:1]), iv[:1], [2.0])[0])
    with pytest.raises(ValueError, match="unknown calibrated quantity"):
        solve_nearest(arcs, iv, t, quantity="snr_opt")


def test_target_quantity_round_trip(tmp_path):
    with pytest.raises(ValueError, match="calibrated quantity"):
        TargetDistribution([1, 2], [1.0], "snr_opt")
    p = tmp_path / "calibration.json"
    p.write_text(json.dumps({"bins": [1, 2, 4], "target_fractions": [0.5, 0.5],
                             "source": "plan"}))
    t, _ = read_target(p)
    assert t.quantity == "arc_snr"  # files from before the key calibrated arc_snr
    t = target_of({"bins": [1, 2, 4], "target_fractions": [0.5, 0.5],
                   "quantity": "arc_snr_peak"})
    assert t.quantity == "arc_snr_peak"


def test_inject_calibrates_the_peak(tmp_path):
    """End to end through calibrate + inject: the calibrated rows follow the plan's table in
    arc_snr_peak, and calibration.json records the quantity and the achieved fractions."""
    from gen5dask.stages.calibrate import run_calibrate
    from gen5dask.stages.inject import run_inject
    from gen5dask.store import read_table
    from tests.stages.test_calibrate import cfg_for
    from tests.stages.test_inject import make_hosts

    make_hosts(tmp_path / "hosts.zarr", 80, chunk=64, seed=3)
    bins = [0.3, 0.8, 2.0, 5.0, 20.0]
    cfg = cfg_for(tmp_path / "out", tmp_path / "hosts.zarr", inject={"replicates": 2},
                  calibrate={"quantity": "arc_snr_peak", "bins": bins})
    run_calibrate(cfg)
    run_inject(cfg)
    cj = json.loads(cfg.layout.calibration_json.read_text())
    assert cj["quantity"] == "arc_snr_peak"
    tab = read_table(cfg.layout.train, ["kind", "inject_mode", "quality", "arc_snr_peak"])
    cal = ((tab["kind"] == "injection") & (tab["inject_mode"] == "calibrated")
           & (tab["quality"] == "ok")).to_numpy()
    peak = tab["arc_snr_peak"].to_numpy()[cal]
    assert peak.size > 100 and peak.min() >= bins[0] * (1 - 1e-5)
    # recount the achieved fractions independently of calibration_summary
    k = np.minimum(np.searchsorted(bins, peak, side="right") - 1, len(bins) - 2)
    fr = np.bincount(k, minlength=len(bins) - 1) / peak.size
    q = tab["quality"].to_numpy()[((tab["kind"] == "injection")
                                   & (tab["inject_mode"] == "calibrated")).to_numpy()]
    if (q == "ok").all():
        np.testing.assert_allclose(cj["achieved_fractions"], fr, atol=1e-12)
    np.testing.assert_allclose(fr, [0.4, 0.4, 0.15, 0.05], atol=0.12)
    assert cj["unattainable"] == 0

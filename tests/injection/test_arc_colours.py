"""Arc colours in the anchors' annuli against known injected colours."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.injection.arc_colours import colour_law_from, measure_arc_colours
from gen5dask.injection.calibration import target_of
from gen5dask.injection.laws import ColourLaw, TargetDistribution, draw_injection_params

S = 48
BANDS = ("g", "r", "z")


def _anchors(n, gr, rz, *, arc_flux_r, seed=0, host_r=0.0):
    """Elliptical-ish red host + a partial ring of known colour + white noise (sigma 1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:S, :S] - S // 2
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    out = np.empty((n, 3, S, S))
    for i in range(n):
        r0 = rng.uniform(6, 10)
        ring = np.exp(-((r - r0) ** 2) / 2.0) * (np.cos(phi - rng.uniform(0, 6.3)) > 0.3)
        ring *= arc_flux_r[i] / ring.sum()
        host = host_r * np.exp(-np.hypot(x, 0.7 * y) / 3.0)
        for k, c in enumerate((10 ** (-0.4 * gr[i]), 1.0, 10 ** (0.4 * rz[i]))):
            out[i, k] = host * (0.3, 1.0, 1.8)[k] + ring * c + rng.normal(0, 1, (S, S))
    return out


def test_recovers_known_colours_without_selection_bias():
    rng = np.random.default_rng(1)
    n = 60
    gr, rz = rng.normal(1.2, 0.3, n), rng.normal(0.9, 0.25, n)
    flux = rng.uniform(150, 600, n)  # r-band arc S/N ~ 10-40
    m = measure_arc_colours(_anchors(n, gr, rz, arc_flux_r=flux), BANDS)
    ok = np.isfinite(m["g_r"])
    assert ok.sum() >= 50
    # per-anchor errors are honest and the median error is unbiased
    assert abs(np.median(m["g_r"][ok] - gr[ok])) < 0.08
    assert abs(np.median(m["r_z"][ok] - rz[ok])) < 0.08
    pull = (m["g_r"][ok] - gr[ok]) / m["g_r_err"][ok]
    assert 0.5 < np.std(pull) < 2.0
    law, summ = colour_law_from(m)
    assert law.gr_mean == pytest.approx(1.2, abs=0.12)
    assert law.rz_mean == pytest.approx(0.9, abs=0.12)
    assert law.gr_std == pytest.approx(0.3, abs=0.12)
    assert summ["n_used"] == int(ok.sum())


def test_faint_and_empty_anchors_are_left_out():
    n = 6
    m = measure_arc_colours(_anchors(n, np.ones(n), np.ones(n), arc_flux_r=np.full(n, 1e-3)),
                            BANDS)
    assert np.isnan(m["g_r"]).sum() >= 5
    with pytest.raises(ValueError, match="only .* anchors have a measurable arc"):
        colour_law_from(m)
    with pytest.raises(ValueError, match="missing"):
        measure_arc_colours(np.zeros((1, 2, S, S)), ("g", "r"))


def test_colour_law_draws_and_round_trip():
    law = ColourLaw(1.2, 0.4, 0.9, 0.3)
    u = (np.arange(20000) + 0.5) / 20000
    gr, rz = law.draw(u, u[::-1])
    assert np.mean(gr) == pytest.approx(1.2, abs=1e-3)
    assert np.std(gr) == pytest.approx(0.4, rel=0.01)
    assert np.std(rz) == pytest.approx(0.3, rel=0.01)
    with pytest.raises(ValueError, match="std >= 0"):
        ColourLaw(1.0, -0.1, 0.0, 0.1)
    t = target_of({"bins": [1, 2], "target_fractions": [1.0],
                   "colours": {"source": "anchors", "law": law.to_dict()}})
    assert t.colours == law
    assert target_of({"bins": [1, 2], "target_fractions": [1.0],
                      "colours": {"source": "prior", "law": None}}).colours is None
    # calibrated rows take the law, uncalibrated keep the prior; other draws are unchanged
    from gen5dask.config import config_from_dict
    from gen5dask.injection.laws import MODE_CODES, Laws

    laws = Laws.from_config(config_from_dict({}).inject)
    ids = np.arange(4000)
    modes = np.where(ids % 2, MODE_CODES["calibrated"], MODE_CODES["uncalibrated"])
    kw = dict(seed=3, host_ids=ids, replicates=np.zeros(ids.size, int), modes=modes)
    a = draw_injection_params(laws, target=TargetDistribution([1, 2], [1.0], colours=law), **kw)
    b = draw_injection_params(laws, target=TargetDistribution([1, 2], [1.0]), **kw)
    cal = modes == MODE_CODES["calibrated"]
    assert np.array_equal(a["src_gr"][~cal], b["src_gr"][~cal])
    assert np.array_equal(a["theta_e"], b["theta_e"])
    lo, hi = laws.src_gr_range
    assert np.all((b["src_gr"] >= lo) & (b["src_gr"] <= hi))
    assert np.mean(a["src_gr"][cal]) == pytest.approx(1.2, abs=0.05)

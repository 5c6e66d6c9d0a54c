"""Footprint, bricks, observing-condition fields and the depth <-> pixel-noise relation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from gen5dask.config.simulate import SimulateConfig
from gen5dask.kernels.psf import moffat_kernel
from gen5dask.sim import sky
from gen5dask.store.schema import brickname_for

BANDS = ("g", "r", "z")


def _positions(n, seed=0, sim=None):
    sim = sim or SimulateConfig()
    box = sky.footprint_box(sim.footprint_center, sim.footprint_size)
    u_ = np.random.default_rng(seed).uniform(size=(n, 2))
    return np.array([sky.position_in_box(a, b, box) for a, b in u_]).T, box


def test_positions_inside_footprint_and_uniform_on_sphere():
    (ra, dec), box = _positions(4000)
    assert np.all((ra >= box[0]) & (ra <= box[1]) & (dec >= box[2]) & (dec <= box[3]))
    s = np.sin(np.deg2rad(dec))
    s_lo, s_hi = np.sin(np.deg2rad(box[2])), np.sin(np.deg2rad(box[3]))
    # sin(dec) uniform: its mean is the midpoint
    assert abs(s.mean() - 0.5 * (s_lo + s_hi)) < 3 * (s_hi - s_lo) / np.sqrt(12 * 4000)


def test_conditions_within_ranges_and_deterministic():
    sim = SimulateConfig()
    (ra, dec), _ = _positions(3000)
    c1 = sky.observing_conditions(ra, dec, sim=sim, seed=7, bands=BANDS)
    c2 = sky.observing_conditions(ra, dec, sim=sim, seed=7, bands=BANDS)
    c3 = sky.observing_conditions(ra, dec, sim=sim, seed=8, bands=BANDS)
    np.testing.assert_array_equal(c1.psfsize, c2.psfsize)
    assert not np.array_equal(c1.psfdepth, c3.psfdepth)
    assert c1.psfsize.min() >= 0.75 and c1.psfsize.max() <= 1.6
    d_r = c1.psfdepth[:, 1]
    assert d_r.min() >= 23.6 and d_r.max() <= 26.8
    # band ordering of seeing and depth as configured (g worst seeing, z deepest-offset)
    med = np.median(c1.psfsize, axis=0)
    assert med[0] > med[1] > med[2]
    assert np.median(c1.psfdepth[:, 0] - d_r) == pytest.approx(0.5, abs=0.3)
    assert np.median(c1.psfdepth[:, 2] - d_r) == pytest.approx(-0.9, abs=0.3)
    assert 23.7 < np.median(d_r) < 24.8


def test_conditions_spatially_correlated():
    sim = SimulateConfig()
    (ra, dec), _ = _positions(600, seed=1)
    rng = np.random.default_rng(2)
    d_ra, d_dec = rng.normal(0, 0.05, (2, ra.size))  # ~0.07 deg away
    near = sky.observing_conditions(ra + d_ra, dec + d_dec, sim=sim, seed=3, bands=BANDS)
    base = sky.observing_conditions(ra, dec, sim=sim, seed=3, bands=BANDS)
    far = sky.observing_conditions(np.roll(ra, 300), np.roll(dec, 300), sim=sim, seed=3,
                                   bands=BANDS)
    for field in ("psfsize", "psfdepth"):
        a, b, c = (getattr(x, field)[:, 1] for x in (base, near, far))
        sep_far = SkyCoord(ra * u.deg, dec * u.deg).separation(
            SkyCoord(np.roll(ra, 300) * u.deg, np.roll(dec, 300) * u.deg)).deg
        sel = sep_far > 3.0
        assert np.mean(np.abs(a - b)) < 0.5 * np.mean(np.abs(a - c)[sel])


def test_depth_sigma_round_trip_and_noise_measurement():
    depth = np.array([23.6, 24.0, 25.3, 26.8])
    fwhm_pix = 1.3 / 0.262
    ker = moffat_kernel(fwhm_pix, 3.5)
    nea = sky.nea_of_kernel(ker)
    assert nea == pytest.approx(sky.nea_moffat(fwhm_pix, 3.5), rel=0.03)
    assert sky.nea_gaussian(fwhm_pix) == pytest.approx(4 * np.pi * (fwhm_pix / 2.3548) ** 2,
                                                       rel=1e-4)
    sigma = sky.pixel_sigma(depth, nea)
    np.testing.assert_allclose(sky.psfdepth_from_sigma(sigma, nea), depth, atol=1e-10)
    np.testing.assert_allclose(sky.ivar_to_psfdepth(sky.psfdepth_to_ivar(depth)), depth)
    # Monte Carlo: the PSF-weighted point-source flux of pure noise has 1/sqrt(psfdepth_ivar)
    rng = np.random.default_rng(0)
    k = ker.shape[0]
    noise = rng.normal(0.0, sigma[1], size=(4000, k, k))
    flux = (noise * ker).sum(axis=(1, 2)) / (ker**2).sum()
    m5 = sky.ivar_to_psfdepth(1.0 / flux.var())
    assert m5 == pytest.approx(depth[1], abs=0.05)


def test_brick_bounds_and_nprimary_match_brick_names():
    pix = 0.262
    for ra, dec in ((150.1249, 2.1249), (150.0, 2.0), (10.37, -30.1251), (359.99, 0.2)):
        lo_ra, hi_ra, lo_dec, hi_dec = (float(v) for v in sky.brick_bounds(ra, dec))
        assert lo_ra <= ra % 360 < hi_ra and lo_dec <= dec < hi_dec
        name = brickname_for(ra, dec)
        assert brickname_for(0.5 * (lo_ra + hi_ra), 0.5 * (lo_dec + hi_dec)) == name
        mask = sky.nprimary_mask(ra, dec, 32, pix)
        c = 16
        off = (np.arange(32) - c) * pix / 3600.0
        rr = ra - off[None, :] / np.cos(np.deg2rad(dec))
        dd = dec + off[:, None]
        names = brickname_for(np.broadcast_to(rr, (32, 32)), np.broadcast_to(dd, (32, 32)))
        np.testing.assert_array_equal(mask, names != name)


def test_offset_position_separation():
    ra, dec = sky.offset_position(150.0, 2.0, 180.0 * 0.6, 180.0 * 0.8)
    sep = SkyCoord(150 * u.deg, 2 * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg))
    assert sep.arcsec == pytest.approx(180.0, rel=1e-6)


def test_bad_footprint_and_missing_band_raise():
    with pytest.raises(ValueError, match="footprint"):
        sky.footprint_box((150.0, 88.0), (10.0, 6.0))
    with pytest.raises(ValueError, match="band 'u'"):
        sky.observing_conditions([150.0], [2.0], sim=SimulateConfig(), seed=0, bands=("u",))

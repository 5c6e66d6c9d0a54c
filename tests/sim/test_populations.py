"""Light components, their renderer (vs a numpy reference), draws and mask layouts."""

from __future__ import annotations

import numpy as np
import pytest

from gen5dask.config.simulate import SimulateConfig
from gen5dask.kernels.photometry import MASKBITS
from gen5dask.sim import populations as pop
from gen5dask.sim.maskbits import draw_stamp_masks, moffat_image

PIX = 0.262


def _rows():
    return np.array([
        pop.sersic(0.1, -0.2, reff=0.6, n=4.0, q=0.7, pa=0.4, pixscale=PIX),
        pop.ring(0.0, 0.0, radius=1.2, sigma=0.15, q=0.9, pa=1.0),
        pop.gauss(0.8, 0.5, sigma=0.12, q=0.8, pa=0.2),
        pop.spiral(0.0, 0.0, h=0.8, arms=2, pitch=0.3, q=0.9, pa=0.3, phase=1.0, sharpness=3.0),
        pop.tail(-0.5, 0.2, radius=1.5, sigma=0.2, phi0=0.5, dphi=-2.0, fade=1.0),
    ])


def test_render_components_matches_reference():
    rows = _rows()
    flux = np.array([[1.0, 2.0], [0.5, 0.1], [0.3, 0.3], [1.0, 0.0], [0.2, 0.4]])
    owner = np.array([0, 0, 1, 1, 0], dtype=np.int64)
    npix, origin = 20, -10
    out = np.zeros((2, 2, npix, npix))
    pop.render_components(rows, flux, owner, PIX, origin, 3, np.empty((npix, npix)), out)
    ref = pop.render_components_reference(rows, flux, owner, pixscale=PIX, origin=origin, ss=3,
                                          n=2, npix=npix)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("n", [1.0, 4.0, 6.0])
def test_sersic_flux_conserved_on_large_region(n):
    row = pop.sersic(0.0, 0.0, reff=0.4, n=n, q=0.6, pa=0.3, pixscale=PIX)
    npix = 161
    out = np.zeros((1, 1, npix, npix))
    pop.render_components(row[None], np.ones((1, 1)), np.zeros(1, np.int64), PIX, -80, 3,
                          np.empty((npix, npix)), out)
    # enclosed fraction within the region (half-size 21") is > 99 % for these profiles
    assert out.sum() == pytest.approx(1.0, abs=0.02)


def test_numeric_components_have_unit_flux():
    rows = _rows()[1:]
    npix = 41
    out = np.zeros((len(rows), 1, npix, npix))
    pop.render_components(rows, np.ones((len(rows), 1)), np.arange(len(rows), dtype=np.int64),
                          PIX, -20, 3, np.empty((npix, npix)), out)
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, rtol=1e-9)
    assert np.all(out >= 0)


def test_band_fluxes_colours():
    f = pop.band_fluxes(20.0, 0.5, 0.3, ("g", "r", "z"))
    np.testing.assert_allclose(pop.mag_of_flux(f), [20.5, 20.0, 19.7])
    with pytest.raises(ValueError, match="band 'u'"):
        pop.band_fluxes(20.0, 0.5, 0.3, ("u",))


def test_piecewise_uniform_matches_table():
    sim = SimulateConfig()
    g = np.random.default_rng(0)
    draws = np.array([pop.draw_piecewise_uniform(g, sim.arc_snr_bins, sim.arc_snr_fractions)
                      for _ in range(4000)])
    v, lo, hi = draws.T
    assert np.all((v >= lo) & (v < hi))
    counts = np.histogram(v, sim.arc_snr_bins)[0]
    expected = 4000 * np.asarray(sim.arc_snr_fractions)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 16.3  # 99.9 % point of chi2 with 3 dof


def test_counts_law_inverse_cdf():
    u = np.linspace(0, 1, 1001)
    m = np.array([pop.draw_counts_mag(x, 17.0, 20.5, 0.3) for x in u])
    assert m[0] == pytest.approx(17.0) and m[-1] == pytest.approx(20.5)
    assert np.all(np.diff(m) > 0)
    assert np.median(m) > 18.75  # counts rise towards faint magnitudes
    assert pop.draw_counts_mag(0.5, 17.0, 20.0, 0.0) == pytest.approx(18.5)


def test_hard_negative_subtypes_render():
    sim = SimulateConfig()
    for sub in ("ring_galaxy", "spiral", "merger", "edge_on"):
        comps, mag = pop.hard_negative_components(np.random.default_rng(1), sim, sub,
                                                  pixscale=PIX, bands=("g", "r", "z"))
        flux = np.array([f for _, f in comps])
        assert pop.mag_of_flux(flux[:, 1].sum()) == pytest.approx(mag, abs=1e-9)
    with pytest.raises(ValueError, match="subtype"):
        pop.hard_negative_components(np.random.default_rng(1), sim, "blob", pixscale=PIX,
                                     bands=("r",))


def test_anchor_mag_offset_hits_core_ratio_noise_free():
    """Deflector light alone: the calibrated offset gives the configured core ratio."""
    from gen5dask.kernels import psf
    from gen5dask.kernels.photometry import core_brightness
    from gen5dask.kernels.rng import generator

    sim = SimulateConfig(anchor_core_ratio=40.0)
    dm = pop.anchor_mag_offset(sim, seed=5, stamp_size=48, pixscale=PIX)
    ker = psf.moffat_kernel(1.3 / PIX, 3.5)
    k = ker.shape[0]
    npix = 48 + k - 1
    cores = np.empty((2, 150))
    for j in range(150):  # independent draws (not the calibration stream)
        shape = pop.draw_lrg(generator(99, "test", j), sim)
        for t, (off, scale) in enumerate(((0.0, 1.0), (dm, sim.anchor_reff_scale))):
            row, f = pop.lrg_component(shape, pixscale=PIX, bands=("r",), mag_offset=off,
                                       reff_scale=scale)
            reg = np.zeros((1, 1, npix, npix))
            pop.render_components(row[None], f[None], np.zeros(1, np.int64), PIX,
                                  -24 - k // 2, 3, np.empty((npix, npix)), reg)
            img = psf.convolve_bands(reg[:, 0], ker[None, None], np.ones((1, 1)),
                                     stamp_shape=(48, 48))
            cores[t, j] = core_brightness(img[:, 0]).median_core[0]
    ratio = np.median(cores[0]) / np.median(cores[1])
    assert 40.0 / 1.5 < ratio < 40.0 * 1.5


def test_mask_layouts_rates_and_effects():
    bands = ("g", "r", "z")
    fwhm = np.array([5.5, 5.0, 4.6])
    none = SimulateConfig(bright_star_rate=0, medium_star_rate=0, ccd_gap_rate=0,
                          allmask_rate=0, wise_rate=0, bailout_rate=0, depth_step_rate=0)
    m = draw_stamp_masks(np.random.default_rng(0), sim=none, bands=bands, stamp_size=32,
                         pixscale=PIX, fwhm_pix=fwhm)
    assert not m.maskbits.any() and np.all(m.ivar_factor == 1) and not m.star_light.any()
    every = SimulateConfig(bright_star_rate=1, medium_star_rate=1, ccd_gap_rate=1,
                           allmask_rate=1, wise_rate=1, bailout_rate=1, depth_step_rate=1,
                           bleed_probability=1)
    seen = 0
    for seed in range(40):
        m = draw_stamp_masks(np.random.default_rng(seed), sim=every, bands=bands,
                             stamp_size=64, pixscale=PIX, fwhm_pix=fwhm)
        assert m.maskbits.max() > 0
        assert m.maskbits[32, 32] & (1 << MASKBITS["BRIGHT"])  # the halo covers the centre
        assert np.all(m.maskbits & (1 << MASKBITS["BAILOUT"]))
        assert np.all(m.ivar_factor[m.saturated] == 0)
        assert np.all(m.ivar_factor[m.zero_image] == 0)
        for j, b in enumerate(bands):
            bit = 1 << MASKBITS[f"SATUR_{b.upper()}"]
            np.testing.assert_array_equal((m.maskbits & bit) != 0, m.saturated[j])
        seen += int(m.saturated.any())
        assert np.all(m.ivar_factor >= 0) and np.all(m.ivar_factor <= 1)
    assert seen > 0  # some bright stars land in the stamp and saturate


def test_moffat_image_flux():
    img = moffat_image(10.0, 100.0, 100.0, 5.0, 3.5, (201, 201))
    assert img.sum() == pytest.approx(10.0, rel=2e-3)
    assert np.unravel_index(img.argmax(), img.shape) == (100, 100)

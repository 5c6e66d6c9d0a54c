"""The physical lens population and the visual-selection model, against independent numerics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import Planck18
from scipy import integrate, stats

from gen5dask.config.lenspop import LensPopConfig
from gen5dask.kernels import psf as _psf
from gen5dask.kernels import rng
from gen5dask.kernels.photometry import arc_snr
from gen5dask.kernels.render import render_lensed_sersic
from gen5dask.sim import lenspop as lp
from gen5dask.sim import sky

PIX = 0.262
P = lp.LensPopParams.from_config(LensPopConfig())


def _own_comoving_distance_mpc(z):
    """Flat LCDM comoving distance by quadrature (matter + Lambda + radiation, massive nu as
    astropy's Planck18 treats them) -- independent of the module's astropy table."""
    h0 = Planck18.H0.to_value("km/(s Mpc)")

    def inv_e(zz):
        return 1.0 / Planck18.efunc(zz)

    return lp.C_KM_S / h0 * np.array([integrate.quad(inv_e, 0.0, zz)[0] for zz in np.atleast_1d(z)])


def test_params_mirror_config_fields():
    cfg_fields = set(LensPopConfig.model_fields)
    par_fields = {f.name for f in dataclasses.fields(lp.LensPopParams)}
    assert cfg_fields == par_fields


def test_sis_einstein_radius_analytic_limit():
    # sigma = 250 km/s, z_l = 0.5, z_s = 2 with astropy's D_ls / D_s directly
    dls = Planck18.angular_diameter_distance(0.5, 2.0)
    ds = Planck18.angular_diameter_distance(2.0)
    want = (4 * np.pi * (250.0 / 299792.458) ** 2 * (dls / ds).decompose().value * u.rad).to_value(
        "arcsec")
    got = lp.einstein_radius_arcsec(250.0, 0.5, 2.0)
    assert got == pytest.approx(want, rel=1e-4)
    # and by hand: 4 pi (sigma/c)^2 = 1.80254" times D_ls/D_s = 1 - D_C(0.5)/D_C(2)
    dc = _own_comoving_distance_mpc([0.5, 2.0])
    assert got == pytest.approx(1.80254 * (1 - dc[0] / dc[1]), rel=2e-4)
    assert 1.10 < got < 1.18  # Planck18: 1.14"
    assert lp.einstein_radius_arcsec(250.0, 2.0, 1.0) == 0.0  # deflector behind the source


def test_einstein_radius_matches_astropy_over_the_population():
    g = np.random.default_rng(3)
    pop = lp.draw_lens_population(g, P, 400)
    dls = Planck18.angular_diameter_distance(pop["z_lens"], pop["z_source"])
    ds = Planck18.angular_diameter_distance(pop["z_source"])
    want = (4 * np.pi * (pop["sigma_v"] / lp.C_KM_S) ** 2 * (dls / ds).decompose().value
            * lp.ARCSEC_PER_RAD)
    np.testing.assert_allclose(pop["theta_e"], want, rtol=2e-4)


def test_lensing_weighted_vdf_ks():
    g = np.random.default_rng(11)
    s = lp.draw_velocity_dispersion(g, P, 20000)
    grid = np.linspace(1.0, 800.0, 40001)

    def cdf(weight_power):
        pdf = lp.velocity_dispersion_function(grid, P) * grid**weight_power
        c = integrate.cumulative_trapezoid(pdf, grid, initial=0.0)
        return lambda x: np.interp(x, grid, c / c[-1])

    assert stats.kstest(s, cdf(4)).pvalue > 1e-3
    # the test has power: the VDF without the sigma^4 lensing weight is rejected
    assert stats.kstest(s, cdf(0)).pvalue < 1e-10
    assert np.median(s) == pytest.approx(210.0, abs=5.0)


def test_lens_redshift_given_source_ks():
    g = np.random.default_rng(5)
    zs = 2.0
    zl = lp.draw_lens_redshift(g, np.full(20000, zs), P)
    assert zl.min() > 0 and zl.max() < zs
    # dV/dz (D_ls / D_s)^2 with astropy, not the Beta(3, 3) identity the module uses
    grid = np.linspace(1e-4, zs - 1e-4, 4001)
    w = (Planck18.differential_comoving_volume(grid).value
         * (Planck18.angular_diameter_distance(grid, zs)
            / Planck18.angular_diameter_distance(zs)).value ** 2)
    c = integrate.cumulative_trapezoid(w, grid, initial=0.0)
    assert stats.kstest(zl, lambda x: np.interp(x, grid, c / c[-1])).pvalue > 1e-3
    # without the lensing weight (volume only) the distribution is rejected
    c0 = integrate.cumulative_trapezoid(Planck18.differential_comoving_volume(grid).value, grid,
                                        initial=0.0)
    assert stats.kstest(zl, lambda x: np.interp(x, grid, c0 / c0[-1])).pvalue < 1e-10


def test_source_magnitude_and_redshift_marginals():
    g = np.random.default_rng(7)
    pop = lp.draw_lens_population(g, P, 20000)
    # the joint N(m) p(z | i = m - <r-z>/2) W(z) with the lens-plane weight
    # W(z) = int dV/dz_l (D_ls/D_s)^2 dz_l computed numerically with astropy
    zg = np.linspace(0.01, P.z_max, 300)
    wz = np.empty_like(zg)
    for k, zs in enumerate(zg):
        zl = np.linspace(1e-4, zs - 1e-4, 200)
        f = (Planck18.differential_comoving_volume(zl).value
             * (Planck18.angular_diameter_distance(zl, zs)
                / Planck18.angular_diameter_distance(zs)).value ** 2)
        wz[k] = integrate.trapezoid(f, zl)
    mg = np.linspace(*P.src_mag_r, 261)
    z0 = np.maximum(P.src_z0_slope * (mg - 0.5 * 0.95) + P.src_z0_offset, 0.01)[:, None]
    joint = zg[None] ** 2 * np.exp(-zg[None] / z0) / (2 * z0**3)
    joint *= 10.0 ** (P.src_counts_slope * mg)[:, None] * wz[None]
    pm = integrate.trapezoid(joint, zg, axis=1)
    pz = integrate.trapezoid(joint, mg, axis=0)
    cm = integrate.cumulative_trapezoid(pm, mg, initial=0.0)
    cz = integrate.cumulative_trapezoid(pz, zg, initial=0.0)
    assert stats.kstest(pop["src_mag_r"], lambda x: np.interp(x, mg, cm / cm[-1])).pvalue > 1e-3
    assert stats.kstest(pop["z_source"], lambda x: np.interp(x, zg, cz / cz[-1])).pvalue > 1e-3
    # the test has power: the redshift law without the lensing weight W(z) is rejected
    pz0 = integrate.trapezoid(joint / wz[None], mg, axis=0)
    cz0 = integrate.cumulative_trapezoid(pz0, zg, initial=0.0)
    assert stats.kstest(pop["z_source"], lambda x: np.interp(x, zg, cz0 / cz0[-1])).pvalue < 1e-10


def test_colours_reproduce_published_annulus_measurement():
    g = np.random.default_rng(9)
    pop = lp.draw_lens_population(g, P, 20000)
    n = pop["src_gr"].size
    for key, mean, std in (("src_gr", 1.23, 0.39), ("src_rz", 0.95, 0.27)):
        v = pop[key]
        assert abs(v.mean() - mean) < 4 * std / np.sqrt(n)
        assert abs(v.std() - std) < 4 * std / np.sqrt(2 * n)


def test_source_size_relation_by_hand():
    m, z = 24.0, 1.5
    dl = Planck18.luminosity_distance(z).to_value("pc")
    muv = m - 5 * np.log10(dl / 10) + 2.5 * np.log10(1 + z)
    want = 1.3 * (10 ** (-0.4 * (muv + 21.0))) ** 0.27 * ((1 + z) / 4) ** -1.2
    assert lp.source_size_kpc(m, z, P) == pytest.approx(want, rel=1e-4)
    # faint galaxies are small: intrinsic half-light radius ~0.2" at R ~ 26 (Smail et al. 1995)
    g = np.random.default_rng(2)
    pop = lp.draw_lens_population(g, P, 8000)
    sel = (pop["src_mag_r"] > 25.5) & (pop["src_mag_r"] < 26.5)
    assert 0.08 < np.median(pop["src_reff"][sel]) < 0.3


def test_lens_shape_laws():
    g = np.random.default_rng(4)
    pop = lp.draw_lens_population(g, P, 20000)
    e = 1 - pop["lens_q"]
    assert e.min() >= 0 and e.max() <= P.lens_e_max
    ref = stats.truncnorm((0 - 0.3) / 0.16, (0.9 - 0.3) / 0.16, loc=0.3, scale=0.16)
    assert stats.kstest(e, ref.cdf).pvalue > 1e-3
    gam = np.hypot(pop["shear_g1"], pop["shear_g2"])
    assert np.median(gam) == pytest.approx(0.05, rel=0.03)
    assert np.std(np.log10(gam)) == pytest.approx(0.2, rel=0.03)
    r = np.hypot(pop["src_x"], pop["src_y"]) / pop["theta_e"]
    assert r.max() <= 1.0 and stats.kstest(r**2, "uniform").pvalue > 1e-3


def test_population_deterministic_by_key():
    a = lp.draw_lens_population(rng.generator(1, lp.STAGE, 5), P, 50)
    b = lp.draw_lens_population(rng.generator(1, lp.STAGE, 5), P, 50)
    c = lp.draw_lens_population(rng.generator(1, lp.STAGE, 6), P, 50)
    assert set(a) == set(lp.POPULATION_KEYS)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["theta_e"], c["theta_e"])


def test_selection_probability_monotone_and_limits():
    base = {"arc_snr": 20.0, "theta_e": 1.2, "src_reff": 0.2, "magnification": 6.0,
            "psf_fwhm": 1.3}
    grid = np.linspace(0.0, 3.0, 61)
    for key, sign in (("arc_snr", 1), ("theta_e", 1), ("magnification", 1), ("psf_fwhm", -1)):
        for width in (0.0, 0.1):
            par = dataclasses.replace(P, selection_snr_width_dex=width,
                                      selection_geometry_width_dex=width)
            args = {**base, key: base[key] * grid}
            p = lp.visual_selection_probability(**args, params=par)
            assert np.all((0 <= p) & (p <= 1))
            assert np.all(sign * np.diff(p) >= -1e-15), (key, width)
    # at threshold S/N (other criteria comfortably met) the soft step is 1/2; far above, 1
    p = lp.visual_selection_probability(**{**base, "arc_snr": np.array([0.0, 20.0, 200.0])},
                                        params=P)
    np.testing.assert_allclose(p, [0.0, 0.5, 1.0], atol=1e-12)
    # Collett's hard cuts: unresolved (theta_E < FWHM / 2) or mu < 3 never pass
    assert lp.visual_selection_probability(**{**base, "theta_e": 0.6}, params=P) == 0.0
    assert lp.visual_selection_probability(**{**base, "magnification": 2.9}, params=P) == 0.0
    assert lp.visual_selection_probability(**{**base, "arc_snr": 12.0}, params=P,
                                           snr_min=10.0) > 0.5


def _anchor_conditions(fwhm=1.3, depth=24.0):
    k = int(_psf.moffat_size(1.6 / PIX, 3.5))
    ker = np.empty((1, 1, k, k))
    _psf.moffat_fill_batch(ker, np.array([[fwhm / PIX]]), 3.5)
    sigma = float(sky.pixel_sigma(np.array([[depth]]), sky.nea_of_kernel(ker))[0, 0])
    return ker[0, 0], fwhm, sigma


def test_select_visible_lens_deterministic_and_visible():
    ker, fwhm, sigma = _anchor_conditions()
    kw = {"psf_kernel_r": ker, "psf_fwhm_r": fwhm, "pixel_sigma_r": sigma, "psfdepth_r": 24.0,
          "stamp_size": 64, "pixscale": PIX, "deflector_pa": 0.7}
    sel = [lp.select_visible_lens(rng.generator(3, lp.STAGE, i), P, **kw) for i in range(6)]
    again = lp.select_visible_lens(rng.generator(3, lp.STAGE, 0), P, **kw)
    assert again == sel[0]
    assert len({s.lens["theta_e"] for s in sel}) == 6
    for s in sel:
        lens = s.lens
        assert lens["lens_pa"] == pytest.approx(np.mod(0.7 + lens["lens_dpa"], np.pi))
        # Collett's geometric criteria hold exactly (hard by default)
        assert lens["theta_e"] ** 2 > lens["src_reff"] ** 2 + (fwhm / 2) ** 2
        assert lens["magnification"] > 3 and lens["magnification"] * lens["src_reff"] > fwhm / 2
        assert s.p_select > 0 and s.n_candidates >= 1
        # re-rendering the accepted lens independently reproduces its S/N and magnification
        arc, mu = render_lensed_sersic(
            stamp_size=64, pixscale=PIX, psf_kernels=ker[None, None],
            src_flux_bands=[[10 ** ((22.5 - lens["src_mag_r"]) / 2.5)]],
            **{k: [lens[k]] for k in ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2",
                                      "src_x", "src_y", "src_reff", "src_n", "src_q",
                                      "src_pa")})
        snr = arc_snr(arc[:, 0], np.full((1, 64, 64), 1 / sigma**2, np.float32)).arc_snr[0]
        assert snr == pytest.approx(s.arc_snr, rel=1e-6)
        assert mu[0] == pytest.approx(lens["magnification"], rel=1e-9)
    # visible arcs: the selected S/N sits at or above the 20 threshold (soft by 0.1 dex)
    assert min(s.arc_snr for s in sel) > 20 * 10 ** (-0.45)


def test_select_visible_lens_deeper_field_accepts_sooner():
    # the same candidate stream (same counts limit): in a deeper field every candidate's P is
    # at least as high, so the first acceptance comes no later
    for i in range(2):
        got = []
        for depth in (23.7, 25.0):
            ker, fwhm, sigma = _anchor_conditions(depth=depth)
            got.append(lp.select_visible_lens(
                rng.generator(8, lp.STAGE, i), P, psf_kernel_r=ker, psf_fwhm_r=fwhm,
                pixel_sigma_r=sigma, psfdepth_r=23.7, stamp_size=64, pixscale=PIX))
        assert got[1].n_candidates <= got[0].n_candidates


def test_counts_limit_follows_depth():
    g = np.random.default_rng(1)
    pop = lp.draw_lens_population(g, P, 4000, mag_faint=24.5)
    assert pop["src_mag_r"].max() <= 24.5 and pop["src_mag_r"].min() >= P.src_mag_r[0]
    assert pop["src_mag_r"].max() > 24.45  # the counts rise to the limit
    assert lp.draw_lens_population(g, P, 4000)["src_mag_r"].max() > 29.9


def test_select_visible_lens_errors_name_the_sample():
    ker, fwhm, sigma = _anchor_conditions()
    strict = dataclasses.replace(P, selection_snr_min=1e6, max_candidates=32)
    with pytest.raises(ValueError, match="anchor 1000000007.*32 candidates"):
        lp.select_visible_lens(rng.generator(1, lp.STAGE, 7), strict, psf_kernel_r=ker,
                               psf_fwhm_r=fwhm, pixel_sigma_r=sigma, psfdepth_r=24.0,
                               stamp_size=64, pixscale=PIX, label="anchor 1000000007")
    with pytest.raises(ValueError, match="must be > 0"):
        lp.select_visible_lens(rng.generator(1, lp.STAGE, 7), P, psf_kernel_r=ker,
                               psf_fwhm_r=np.nan, pixel_sigma_r=sigma, psfdepth_r=24.0,
                               stamp_size=64, pixscale=PIX)


def test_config_rejects_bad_ranges():
    with pytest.raises(ValueError, match="src_q_range"):
        LensPopConfig(src_q_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="src_mag_r"):
        LensPopConfig(src_mag_r=(27.0, 20.0))

"""Chunk renderer: flux, compact sources, symmetry, pixelated sources, input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen5dask.kernels.profiles import (
    sersic_amplitude_for_flux,
    sersic_bn,
    sersic_ellipse,
    sersic_total_flux,
)
from gen5dask.kernels.render import (
    WORK_COUNTERS,
    render_lensed_image,
    render_lensed_sersic,
)


def one(**over):
    base = dict(
        stamp_size=64, pixscale=0.262, theta_e=[0.0], lens_q=[1.0], lens_pa=[0.0],
        shear_g1=[0.0], shear_g2=[0.0], src_x=[0.0], src_y=[0.0], src_reff=[0.05],
        src_n=[1.0], src_q=[1.0], src_pa=[0.0], src_flux_bands=[[1.0, 2.0, 3.0]],
        psf_fwhm_arcsec=[[1.2, 1.1, 1.0]],
    )
    base.update(over)
    return base


# ------------------------------------------------------------------ Sersic profile
@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_bn_is_half_light(n):
    from scipy.special import gammainc

    assert gammainc(2 * n, sersic_bn(n)) == pytest.approx(0.5, abs=1e-12)


def test_bn_limits_and_asymptotics():
    # Ciotti & Bertin (1999): b_n ~ 2n - 1/3 + 4/(405 n) + 46/(25515 n^2)
    for n in (2.0, 4.0, 8.0):
        cb = 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2)
        assert sersic_bn(n) == pytest.approx(cb, rel=1e-4)
    with pytest.raises(ValueError, match="src_n"):
        sersic_bn(0.1)


@pytest.mark.parametrize(("n", "q"), [(0.5, 1.0), (1.0, 0.4), (4.0, 0.7), (2.5, 0.25)])
def test_sersic_total_flux_numeric(n, q):
    # brute-force integral on a polar grid in the (sqrt(q) x', y'/sqrt(q)) frame is the same as
    # integrating the elliptical profile on a fine cartesian grid: q cancels.
    reff = 0.4
    ieff = 2.0
    r = np.geomspace(1e-7, 400 * reff, 400001)
    prof = sersic_ellipse(r, 0.0, i_eff=ieff, reff=reff, n=n, q=1.0, pa=0.0)
    total = np.trapezoid(2 * np.pi * r * prof, r)
    assert sersic_total_flux(ieff, reff, n) == pytest.approx(total, rel=1e-4)
    # cartesian check of the q cancellation (moderate accuracy)
    x = np.linspace(-8, 8, 2001)
    xx, yy = np.meshgrid(x, x)
    cart = sersic_ellipse(xx, yy, i_eff=ieff, reff=reff, n=min(n, 1.0), q=q, pa=0.3).sum()
    cart *= (x[1] - x[0]) ** 2
    assert cart == pytest.approx(sersic_total_flux(ieff, reff, min(n, 1.0)), rel=2e-3)
    assert sersic_amplitude_for_flux(total, reff, n) == pytest.approx(ieff, rel=1e-4)


# ------------------------------------------------------------------ fluxes
@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0])
def test_compact_unlensed_flux(n):
    arc, mu = render_lensed_sersic(**one(src_n=[n], src_reff=[0.05], src_x=[0.07]))
    np.testing.assert_allclose(arc[0].sum(axis=(1, 2)), [1.0, 2.0, 3.0], rtol=5e-3)
    assert mu[0] == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("n", [0.5, 1.0, 4.0])
def test_compact_lensed_flux(n):
    # SIS, source at beta = 1.0 inside theta_E = 1.5: mu = 2 theta_E / beta = 3 in the point
    # limit (an n = 4 source's wings reach beta, so only n <= 1 is held to the point limit)
    kw = one(theta_e=[1.5], src_x=[1.0], src_n=[n], src_reff=[0.05])
    arc, mu = render_lensed_sersic(**kw)
    if n <= 1:
        assert mu[0] == pytest.approx(3.0, rel=5e-3)
    np.testing.assert_allclose(arc[0].sum(axis=(1, 2)), mu[0] * np.array([1.0, 2.0, 3.0]),
                               rtol=5e-3)
    # converged reference: 10x tighter tolerances, higher order
    arc2, mu2 = render_lensed_sersic(**kw, tol_scale=0.1, supersample=5, max_depth=16)
    assert mu[0] == pytest.approx(mu2[0], rel=5e-3)


def test_extended_unlensed_flux_and_truncation():
    arc, mu = render_lensed_sersic(**one(stamp_size=101, src_reff=[0.8], src_n=[2.0],
                                         src_q=[0.6], src_pa=[0.4]))
    # stamp holds all but the far wings (and the 0.1 % truncation)
    np.testing.assert_allclose(arc[0].sum(axis=(1, 2)), [1.0, 2.0, 3.0], rtol=5e-3)
    assert mu[0] == pytest.approx(1.0, abs=3e-3)


def test_flux_linear_in_amplitude_and_bands_share_shape():
    kw = one(theta_e=[1.2], lens_q=[0.7], src_x=[0.2], src_reff=[0.3],
             psf_fwhm_arcsec=[[1.1, 1.1, 1.1]])
    arc, _ = render_lensed_sersic(**kw)
    # float32 FFTs: equal to ~1e-6 of the peak
    np.testing.assert_allclose(arc[0, 1], 2 * arc[0, 0], rtol=1e-4, atol=2e-6 * arc.max())
    np.testing.assert_allclose(arc[0, 2], 3 * arc[0, 0], rtol=1e-4, atol=2e-6 * arc.max())
    arc10, _ = render_lensed_sersic(**{**kw, "src_flux_bands": [[10.0, 20.0, 30.0]]})
    np.testing.assert_allclose(arc10, 10 * arc, rtol=1e-4, atol=2e-6 * arc10.max())


def test_chunk_equals_single_samples_and_is_deterministic():
    rng = np.random.default_rng(5)
    n = 5
    kw = dict(
        stamp_size=40, pixscale=0.262, theta_e=rng.uniform(0.5, 2, n),
        lens_q=rng.uniform(0.3, 1, n), lens_pa=rng.uniform(0, 3, n),
        shear_g1=rng.normal(0, 0.05, n), shear_g2=rng.normal(0, 0.05, n),
        src_x=rng.uniform(-0.5, 0.5, n), src_y=rng.uniform(-0.5, 0.5, n),
        src_reff=rng.uniform(0.05, 0.5, n), src_n=rng.uniform(0.5, 4, n),
        src_q=rng.uniform(0.3, 1, n), src_pa=rng.uniform(0, 3, n),
        src_flux_bands=rng.uniform(1, 3, (n, 3)), psf_fwhm_arcsec=rng.uniform(0.9, 1.5, (n, 3)),
    )
    arc, mu = render_lensed_sersic(**kw)
    assert arc.dtype == np.float32 and arc.shape == (n, 3, 40, 40)
    assert mu.dtype == np.float64 and np.all(mu >= 0.99)
    assert np.all(np.isfinite(arc))
    arc_b, mu_b = render_lensed_sersic(**kw)
    np.testing.assert_array_equal(arc, arc_b)
    np.testing.assert_array_equal(mu, mu_b)
    # one sample alone (its kernel size differs, so compare to float32 FFT precision)
    sub = {k: (v[2:3] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    arc1, mu1 = render_lensed_sersic(**sub)
    np.testing.assert_allclose(arc1[0], arc[2], atol=2e-3 * arc[2].max())
    assert mu1[0] == mu[2]


@settings(max_examples=8, deadline=None)
@given(
    te=st.floats(0.5, 2.0), q=st.floats(0.3, 1.0), pa=st.floats(0, np.pi),
    g1=st.floats(-0.08, 0.08), g2=st.floats(-0.08, 0.08), sx=st.floats(-0.6, 0.6),
    sy=st.floats(-0.6, 0.6), sq=st.floats(0.4, 1.0), spa=st.floats(0, np.pi),
)
def test_property_rotation_by_90_degrees(te, q, pa, g1, g2, sx, sy, sq, spa):
    base = one(stamp_size=41, theta_e=[te], lens_q=[q], lens_pa=[pa], shear_g1=[g1],
               shear_g2=[g2], src_x=[sx], src_y=[sy], src_reff=[0.25], src_q=[sq],
               src_pa=[spa], src_flux_bands=[[1.0]], psf_fwhm_arcsec=[[1.0]])
    rot = dict(base, lens_pa=[pa + np.pi / 2], shear_g1=[-g1], shear_g2=[-g2], src_x=[-sy],
               src_y=[sx], src_pa=[spa + np.pi / 2])
    a, mu_a = render_lensed_sersic(**base)
    b, mu_b = render_lensed_sersic(**rot)
    # (x, y) -> (-y, x): new[row, col] = old[n-1-col, row], i.e. np.rot90(old, -1)
    np.testing.assert_allclose(b[0, 0], np.rot90(a[0, 0], -1), atol=5e-3 * a.max())
    assert mu_b[0] == pytest.approx(mu_a[0], rel=5e-3)


def test_work_counters():
    work = np.zeros(len(WORK_COUNTERS), dtype=np.int64)
    render_lensed_sersic(**one(theta_e=[1.0], src_reff=[0.2]), work=work)
    assert work[0] > 0 and work[3] > 0
    with pytest.raises(ValueError, match="work"):
        render_lensed_sersic(**one(), work=np.zeros(3))


# ------------------------------------------------------------------ PSF handling
def test_supplied_psf_kernels_match_moffat_path():
    from gen5dask.kernels.psf import moffat_kernel

    kw = one(theta_e=[1.0], src_reff=[0.3], src_flux_bands=[[1.0]], psf_fwhm_arcsec=[[1.2]])
    a, _ = render_lensed_sersic(**kw)
    ker = moffat_kernel(1.2 / 0.262)[None, None] * 5.0  # any positive scale: normalised
    b, _ = render_lensed_sersic(**{**kw, "psf_fwhm_arcsec": None, "psf_kernels": ker})
    np.testing.assert_allclose(a, b, atol=1e-6 * a.max())
    with pytest.raises(ValueError, match="odd"):
        render_lensed_sersic(**{**kw, "psf_kernels": np.ones((1, 1, 4, 4))})


@pytest.mark.parametrize("bad", [0.0, -0.5, np.nan, np.inf])
def test_bad_fwhm_names_sample_and_band(bad):
    fw = np.ones((3, 3))
    fw[1, 2] = bad
    kw = one(theta_e=[1.0] * 3, lens_q=[1.0] * 3, lens_pa=[0.0] * 3, shear_g1=[0.0] * 3,
             shear_g2=[0.0] * 3, src_x=[0.0] * 3, src_y=[0.0] * 3, src_reff=[0.2] * 3,
             src_n=[1.0] * 3, src_q=[1.0] * 3, src_pa=[0.0] * 3,
             src_flux_bands=np.ones((3, 3)), psf_fwhm_arcsec=fw)
    with pytest.raises(ValueError, match=r"sample index 1, band 'z'"):
        render_lensed_sersic(**kw, bands=("g", "r", "z"))


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("src_reff", [0.0], "src_reff"), ("src_n", [12.0], "src_n"), ("lens_q", [0.0], "lens_q"),
        ("theta_e", [np.nan], "theta_e"), ("shear_g1", [0.95], "shear_g1"),
        ("src_flux_bands", [[1.0, np.nan, 1.0]], "src_flux_bands"), ("src_x", [1, 2], "src_x"),
    ],
)
def test_bad_inputs(key, value, match):
    with pytest.raises(ValueError, match=match):
        render_lensed_sersic(**one(**{key: value}))


# ------------------------------------------------------------------ pixelated sources
def _sersic_image(reff, n, pix, size):
    yy, xx = (np.indices((size, size)) - size // 2) * pix
    return sersic_ellipse(xx, yy, i_eff=1.0, reff=reff, n=n, q=1.0, pa=0.0)


def test_image_source_unlensed_flux_conserved():
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1, (31, 27))
    arc, mu = render_lensed_image(
        stamp_size=48, pixscale=0.262, theta_e=[0.0], lens_q=[1.0], lens_pa=[0.0],
        shear_g1=[0.0], shear_g2=[0.0], src_x=[0.3], src_y=[-0.2], src_image=img,
        src_pixscale=0.03, src_flux_bands=[[2.0, 4.0]], psf_fwhm_arcsec=[[1.0, 1.3]],
    )
    # white-noise source sampled about once per source pixel: ~0.1 % sampling error
    np.testing.assert_allclose(arc[0].sum(axis=(1, 2)), [2.0, 4.0], rtol=3e-3)
    assert mu[0] == pytest.approx(1.0, abs=3e-3)


def test_image_source_matches_sersic_render():
    # a finely sampled smooth (n = 0.5) Sersic image must lens like the analytic profile
    reff, n, spix = 0.3, 0.5, 0.02
    img = _sersic_image(reff, n, spix, 121)
    kw = dict(stamp_size=48, pixscale=0.262, theta_e=[1.3], lens_q=[0.7], lens_pa=[0.4],
              shear_g1=[0.02], shear_g2=[-0.01], src_x=[0.15], src_y=[0.1],
              src_flux_bands=[[1.0]], psf_fwhm_arcsec=[[1.1]])
    a, mu_a = render_lensed_image(**kw, src_image=img, src_pixscale=spix)
    b, mu_b = render_lensed_sersic(**kw, src_reff=[reff], src_n=[n], src_q=[1.0],
                                   src_pa=[0.0])
    np.testing.assert_allclose(a, b, atol=0.01 * b.max())
    assert mu_a[0] == pytest.approx(mu_b[0], rel=5e-3)


def test_image_source_per_sample_images_and_errors():
    rng = np.random.default_rng(4)
    imgs = rng.uniform(0, 1, (2, 9, 9))
    kw = dict(stamp_size=32, pixscale=0.262, theta_e=[1.0, 1.0], lens_q=[1.0, 0.8],
              lens_pa=[0.0, 0.0], shear_g1=[0.0, 0.0], shear_g2=[0.0, 0.0],
              src_x=[0.1, 0.1], src_y=[0.0, 0.0], src_pixscale=[0.05, 0.05],
              src_flux_bands=[[1.0], [1.0]], psf_fwhm_arcsec=[[1.0], [1.0]])
    arc, mu = render_lensed_image(**kw, src_image=imgs, src_pa=[0.0, 1.0])
    assert arc.shape == (2, 1, 32, 32) and np.all(mu > 1)
    with pytest.raises(ValueError, match="src_image"):
        render_lensed_image(**kw, src_image=np.zeros((9, 9)))
    with pytest.raises(ValueError, match="src_image"):
        render_lensed_image(**kw, src_image=np.ones((3, 9, 9)))
    with pytest.raises(ValueError, match="src_pixscale"):
        render_lensed_image(**{**kw, "src_pixscale": [0.05, -1.0]}, src_image=imgs)


# ------------------------------------------------------------------ internal ray tracing
@pytest.mark.parametrize("q", [0.05, 0.2, 0.5, 0.8, 1.0])
def test_direction_table_trace_matches_exact_deflection(q):
    # the renderer traces rays through a per-sample direction table of the SIE (degree-0
    # homogeneous); it must agree with the exact SIE + shear deflection to < 2e-8 theta_E
    from gen5dask.kernels.lensing import sie_shear_deflection
    from gen5dask.kernels.raytrace import fill_deflection_table, table_intervals, trace

    rng = np.random.default_rng(11)
    te, pa, g1, g2 = 1.7, 0.7, 0.03, -0.05
    x = np.concatenate([rng.uniform(-20, 20, 4000), rng.uniform(-0.02, 0.02, 500),
                        [0.0, 0.0, 1.0, -1.0, 3.0, -3.0], rng.uniform(-5, 5, 200)])
    y = np.concatenate([rng.uniform(-20, 20, 4000), rng.uniform(-0.02, 0.02, 500),
                        [0.0, 1.0, 0.0, 1.0, -3.0, 3.0], np.zeros(200)])
    x[-100:] = y[-100:] = rng.uniform(-5, 5, 100)  # diagonal |x| = |y|
    ax, ay = sie_shear_deflection(x, y, te, q, pa, g1, g2)
    nint = table_intervals(q)
    tab = np.empty((2, nint + 4, 2))
    b, s = te * np.sqrt(q), 1e-10 / np.sqrt(q)
    fill_deflection_table(tab, nint, b, s, q, np.cos(pa), np.sin(pa))
    lens = (b, s, q, np.cos(pa), np.sin(pa), g1, g2, 0.5 * nint)
    got = np.array([trace(xi, yi, lens, tab) for xi, yi in zip(x, y, strict=True)])
    err = np.hypot(got[:, 0] - (x - ax), got[:, 1] - (y - ay))
    assert err.max() < 2e-8 * te, err.max()


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 1.0])
def test_trace_jacobian_matches_finite_differences(q):
    # the Jacobian from the interpolant's derivative bounds every pixel footprint: it must
    # match a central difference of the exact deflection to well inside JACOBIAN_SAFETY
    from gen5dask.kernels.cubature import JACOBIAN_SAFETY
    from gen5dask.kernels.lensing import sie_shear_deflection
    from gen5dask.kernels.raytrace import (
        fill_deflection_table,
        square_image_radius,
        table_intervals,
        trace,
        trace_jacobian,
    )

    rng = np.random.default_rng(5)
    te, pa, g1, g2 = 1.4, -0.4, 0.04, 0.02
    x = np.concatenate([rng.uniform(-6, 6, 300), rng.uniform(-0.009, 0.009, 20)])
    y = np.concatenate([rng.uniform(-6, 6, 300), rng.uniform(-0.009, 0.009, 20)])
    nint = table_intervals(q)
    tab = np.empty((2, nint + 4, 2))
    b, s = te * np.sqrt(q), 1e-10 / np.sqrt(q)
    fill_deflection_table(tab, nint, b, s, q, np.cos(pa), np.sin(pa))
    lens = (b, s, q, np.cos(pa), np.sin(pa), g1, g2, 0.5 * nint)
    e = 1e-6
    for xi, yi in zip(x, y, strict=True):
        bx, by, j11, j12, j21, j22 = trace_jacobian(xi, yi, lens, tab)
        assert (bx, by) == pytest.approx(trace(xi, yi, lens, tab), abs=1e-12)
        ax = sie_shear_deflection(np.array([xi + e, xi - e, xi, xi]),
                                  np.array([yi, yi, yi + e, yi - e]), te, q, pa, g1, g2)
        fd = np.array([[1 - (ax[0][0] - ax[0][1]) / (2 * e), -(ax[0][2] - ax[0][3]) / (2 * e)],
                       [-(ax[1][0] - ax[1][1]) / (2 * e), 1 - (ax[1][2] - ax[1][3]) / (2 * e)]])
        got = np.array([[j11, j12], [j21, j22]])
        scale = np.abs(fd).max() + 1.0
        assert np.abs(got - fd).max() < 1e-2 * JACOBIAN_SAFETY * scale * 10, (xi, yi, got, fd)
        # the square-image radius is the farthest corner of the mapped unit square
        corners = got @ np.array([[0.5, 0.5, -0.5, -0.5], [0.5, -0.5, 0.5, -0.5]])
        assert square_image_radius(j11, j12, j21, j22) == pytest.approx(
            np.hypot(*corners).max(), rel=1e-12)

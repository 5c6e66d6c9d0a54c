"""Image models of the mock populations: light components, their renderer, per-sample draws.

A stamp's light (before the PSF) is a list of *components*, each one row of a float64 parameter
table (:data:`NPAR` columns) with a total flux per band. Coordinates are arcsec in the stamp
frame (DESIGN §4: x along columns, y along rows, origin at pixel ``(H//2, W//2)``); angles are
radians counter-clockwise from +x; elliptical radii follow lenstronomy's ``SERSIC_ELLIPSE``,
``r = sqrt(q x'^2 + y'^2 / q)``. Component types:

* ``SERSIC`` -- elliptical Sersic; analytic total-flux normalisation (light falling outside the
  rendered region is lost, as in a real cutout);
* ``RING`` -- elliptical ring, Gaussian in elliptical radius around ``R`` (width ``sigma``);
* ``GAUSS`` -- elliptical Gaussian knot or nucleus;
* ``SPIRAL`` -- logarithmic-spiral arm pattern ``exp(-r/h) * ((1 + cos(m (theta - ln(r/h) /
  tan(pitch)) - phase)) / 2)**k`` on a deprojected disc, with an inner taper;
* ``TAIL`` -- curved tidal tail: Gaussian tube of width ``sigma`` along a circular arc (centre
  of curvature ``(x0, y0)``, radius ``Rc``, from angle ``phi0`` over ``dphi``), fading along it.

Non-Sersic components are normalised numerically over the rendered region (they are compact, so
this is their total flux). The renderer integrates each pixel with ``supersample``^2 sub-pixels
within ``ss_radius`` of the component centre, 4 ``supersample`` per side within 3 px and 32 per
side within 1 px (Sersic cusps), and one central sample elsewhere.

Population models (parameters in :class:`gen5dask.config.simulate.SimulateConfig`):

* ``host`` / ``lrg``: de Vaucouleurs-like Sersic (n 3-6) with LRG colours;
* ``anchor``: a host-like deflector made fainter by a calibrated magnitude offset
  (:func:`anchor_mag_offset`) and smaller (``anchor_reff_scale``), plus an SIE+shear lensed
  Sersic source rendered by :func:`gen5dask.kernels.render.render_lensed_sersic`;
* ``stress``: bright deflector (r 16.5-18.5) with faint arcs;
* ``hard_negative``: ``ring_galaxy`` (bulge + knotty blue ring), ``spiral`` (bulge + disc +
  blue log-spiral arms), ``merger`` (two nuclei + curved tails), ``edge_on`` (thin disc + bulge);
* ``ring`` / ``procedural_ring``: an LRG host plus a thin blue unlensed ring whose S/N is drawn
  from the anchors' ``arc_snr`` table.

Neighbours (small galaxies and stars at >= ``neighbour_min_dist``) are added to every stamp.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from gen5dask import ZEROPOINT_AB
from gen5dask.injection.colour import colour_factors, mag_to_flux
from gen5dask.kernels._jit import jit
from gen5dask.kernels.profiles import sersic_bn, sersic_total_flux, sersic_unit

# component types
SERSIC, RING, GAUSS, SPIRAL, TAIL = 0, 1, 2, 3, 4
#: parameter-table columns
(C_TYPE, C_X, C_Y, C_A, C_B, C_C, C_Q, C_COS, C_SIN, C_D, C_E, C_NORM, C_EXTENT, C_SS) = range(14)
NPAR = 14


# ---------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------


def band_fluxes(mag_r: float, gr: float, rz: float, bands) -> np.ndarray:
    """Flux per band (nanomaggies) from an r magnitude and colours, by the toolkit's one colour
    law (:func:`gen5dask.injection.colour.colour_factors`: ``g = r + gr``, ``z = r - rz``,
    ``i = r - rz / 2``)."""
    return mag_to_flux(mag_r) * colour_factors(bands, gr, rz)[0]


def mag_of_flux(flux) -> np.ndarray:
    """AB magnitude of a flux in nanomaggies."""
    return ZEROPOINT_AB - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))


def _row(ctype, x0, y0, q=1.0, pa=0.0, extent=np.inf, ss_radius=np.inf) -> np.ndarray:
    p = np.zeros(NPAR)
    p[C_TYPE], p[C_X], p[C_Y] = ctype, x0, y0
    p[C_Q], p[C_COS], p[C_SIN] = q, np.cos(pa), np.sin(pa)
    p[C_EXTENT], p[C_SS] = extent, ss_radius
    return p


def sersic(x0, y0, *, reff, n, q, pa, pixscale) -> np.ndarray:
    """Parameter row of an elliptical Sersic (analytic unit-flux normalisation)."""
    p = _row(SERSIC, x0, y0, q, pa, ss_radius=max(4.0 * pixscale, 1.5 * reff))
    p[C_A], p[C_B], p[C_C] = reff, 1.0 / n, sersic_bn(n)
    p[C_NORM] = sersic_total_flux(1.0, reff, n)
    return p


def ring(x0, y0, *, radius, sigma, q, pa) -> np.ndarray:
    """Parameter row of an elliptical Gaussian ring."""
    p = _row(RING, x0, y0, q, pa, extent=(radius + 6.0 * sigma) / np.sqrt(q))
    p[C_SS] = p[C_EXTENT]
    p[C_A], p[C_B] = radius, sigma
    return p


def gauss(x0, y0, *, sigma, q=1.0, pa=0.0) -> np.ndarray:
    """Parameter row of an elliptical Gaussian knot."""
    p = _row(GAUSS, x0, y0, q, pa, extent=6.0 * sigma / np.sqrt(q))
    p[C_SS] = p[C_EXTENT]
    p[C_A] = sigma
    return p


def spiral(x0, y0, *, h, arms, pitch, q, pa, phase, sharpness) -> np.ndarray:
    """Parameter row of a logarithmic-spiral arm pattern (``pitch`` in radians)."""
    p = _row(SPIRAL, x0, y0, q, pa, extent=7.0 * h / np.sqrt(q))
    p[C_SS] = p[C_EXTENT]
    p[C_A], p[C_B], p[C_C], p[C_D], p[C_E] = h, arms, np.tan(pitch), phase, sharpness
    return p


def tail(xc, yc, *, radius, sigma, phi0, dphi, fade) -> np.ndarray:
    """Parameter row of a curved tidal tail around the centre of curvature ``(xc, yc)``."""
    p = _row(TAIL, xc, yc, extent=radius + 6.0 * sigma)
    p[C_SS] = p[C_EXTENT]
    p[C_A], p[C_B], p[C_C], p[C_D], p[C_E] = radius, sigma, phi0, dphi, fade
    return p


@jit
def component_value(p, x, y):
    """Unit-amplitude surface brightness of component row ``p`` at ``(x, y)`` arcsec."""
    t = int(p[C_TYPE])
    dx = x - p[C_X]
    dy = y - p[C_Y]
    if t == TAIL:
        rho = np.sqrt(dx * dx + dy * dy)
        phi = np.arctan2(dy, dx) - p[C_C]
        dphi = p[C_D]
        # angle along the tail, measured in the direction of dphi, wrapped to [0, 2 pi)
        s = phi if dphi >= 0 else -phi
        s = s - 2.0 * np.pi * np.floor(s / (2.0 * np.pi))
        tt = s / abs(dphi)
        if tt > 1.0:
            return 0.0
        d = (rho - p[C_A]) / p[C_B]
        return np.exp(-0.5 * d * d - p[C_E] * tt) * np.sqrt(np.sin(np.pi * tt))
    xp = p[C_COS] * dx + p[C_SIN] * dy
    yp = -p[C_SIN] * dx + p[C_COS] * dy
    q = p[C_Q]
    if t == SPIRAL:
        # deprojected disc: major axis x', minor axis y' (foreshortened by q)
        u = xp
        v = yp / q
        r = np.sqrt(u * u + v * v)
        if r <= 0.0:
            return 0.0
        h = p[C_A]
        theta = np.arctan2(v, u)
        psi = p[C_B] * (theta - np.log(r / h) / p[C_C]) - p[C_D]
        arm = (0.5 * (1.0 + np.cos(psi))) ** p[C_E]
        taper = 1.0 - np.exp(-((r / (0.5 * h)) ** 2))
        return np.exp(-r / h) * arm * taper
    r2 = q * xp * xp + yp * yp / q
    if t == SERSIC:
        reff = p[C_A]
        return sersic_unit(r2 / (reff * reff), p[C_B], p[C_C])
    if t == RING:
        d = (np.sqrt(r2) - p[C_A]) / p[C_B]
        return np.exp(-0.5 * d * d)
    if t == GAUSS:
        s = p[C_A]
        return np.exp(-0.5 * r2 / (s * s))
    return 0.0


@jit
def _eval_component(p, pixscale, origin, ss, buf):
    """Fill ``buf`` (P, P) with the pixel-integrated unit-amplitude component; return its sum."""
    npix = buf.shape[0]
    area = pixscale * pixscale
    total = 0.0
    for i in range(npix):
        yc = (origin + i) * pixscale
        for j in range(npix):
            xc = (origin + j) * pixscale
            dist = np.sqrt((xc - p[C_X]) ** 2 + (yc - p[C_Y]) ** 2)
            if dist > p[C_EXTENT] + pixscale:
                buf[i, j] = 0.0
                continue
            dpix = dist / pixscale
            if dpix < 1.0:
                m = 32
            elif dpix < 3.0:
                m = 4 * ss
            elif dist < p[C_SS]:
                m = ss
            else:
                m = 1
            acc = 0.0
            for a in range(m):
                ys = yc + ((a + 0.5) / m - 0.5) * pixscale
                for b in range(m):
                    xs = xc + ((b + 0.5) / m - 0.5) * pixscale
                    acc += component_value(p, xs, ys)
            v = acc * area / (m * m)
            buf[i, j] = v
            total += v
    return total


@jit
def render_components(params, flux, owner, pixscale, origin, ss, buf, out):
    """Add every component to its sample's per-band region image.

    Parameters
    ----------
    params : float64 ``(m, NPAR)`` component rows.
    flux : float64 ``(m, nband)`` total flux per band, nanomaggies.
    owner : int64 ``(m,)`` sample index (first axis of ``out``) of each component.
    pixscale : float, arcsec per pixel.
    origin : int, pixel offset of region pixel 0 from the stamp centre (``-(H//2) - margin``).
    ss : int, base supersampling factor.
    buf : float64 ``(P, P)`` scratch.
    out : float64 ``(n, nband, P, P)`` accumulated (not cleared) images, nanomaggies/pixel.
    """
    nb = flux.shape[1]
    npix = buf.shape[0]
    for c in range(params.shape[0]):
        total = _eval_component(params[c], pixscale, origin, ss, buf)
        norm = params[c, C_NORM]
        if params[c, C_TYPE] != SERSIC:
            norm = total
        if not norm > 0.0:
            continue
        k = owner[c]
        for b in range(nb):
            f = flux[c, b] / norm
            if f == 0.0:
                continue
            for i in range(npix):
                for j in range(npix):
                    out[k, b, i, j] += f * buf[i, j]


def render_components_reference(params, flux, owner, *, pixscale, origin, ss, n, npix):
    """Slow numpy reference of :func:`render_components` (same sampling rules)."""
    nb = flux.shape[1]
    out = np.zeros((n, nb, npix, npix))
    idx = origin + np.arange(npix)
    for c in range(params.shape[0]):
        p = params[c]
        buf = np.zeros((npix, npix))
        for i in range(npix):
            for j in range(npix):
                xc, yc = idx[j] * pixscale, idx[i] * pixscale
                dist = np.hypot(xc - p[C_X], yc - p[C_Y])
                if dist > p[C_EXTENT] + pixscale:
                    continue
                dpix = dist / pixscale
                m = 32 if dpix < 1 else 4 * ss if dpix < 3 else ss if dist < p[C_SS] else 1
                off = ((np.arange(m) + 0.5) / m - 0.5) * pixscale
                xs, ys = np.meshgrid(xc + off, yc + off)
                pts = zip(xs.ravel(), ys.ravel(), strict=True)
                vals = [component_value(p, float(a), float(b)) for a, b in pts]
                buf[i, j] = np.mean(vals) * pixscale**2
        norm = p[C_NORM] if p[C_TYPE] == SERSIC else buf.sum()
        if norm > 0:
            out[owner[c]] += flux[c][:, None, None] * buf[None] / norm
    return out


# ---------------------------------------------------------------------------------------------
# per-sample models
# ---------------------------------------------------------------------------------------------


@dataclass
class SampleModel:
    """Everything drawn for one sample before rendering."""

    sample_id: int
    kind: str
    subtype: str
    tier: str = ""
    label: int = 0
    ra: float = np.nan
    dec: float = np.nan
    true_ra: float = np.nan
    true_dec: float = np.nan
    host_mag_r: float = np.nan
    components: list = field(default_factory=list)
    """``(param_row, flux_bands)`` pairs (extended light, before the PSF)."""
    stars: list = field(default_factory=list)
    """``(x_arcsec, y_arcsec, flux_bands)`` point sources (rendered with the PSF directly)."""
    feature: str = ""
    """``"lens"`` (lensed Sersic arc), ``"ring"`` (unlensed ring) or ``""``."""
    lens: dict = field(default_factory=dict)
    """Lens and source truth (theta_e, lens_q, ..., src_gr, src_rz) for ``feature == "lens"``."""
    lens_model: str = "survey"
    """``survey`` (rendered with the survey PSF) or ``injection`` (the injection renderer,
    ``lens`` then also holds ``src_index``, -1 for Sersic sources)."""
    ring_row: np.ndarray | None = None
    """Ring component row for ``feature == "ring"`` (unit flux; colours in ``ring_colors``)."""
    ring_colors: tuple[float, float] = (0.0, 0.0)
    target_snr: float = np.nan
    """Target integrated arc S/N of the feature."""
    target_bin: tuple[float, float] = (np.nan, np.nan)
    """``[low, high)`` of the arc S/N table bin the target was drawn from."""
    name: str = ""
    z_lens: float = np.nan
    z_source: float = np.nan
    source: str = ""


def draw_piecewise_uniform(g: np.random.Generator, bins, fractions) -> tuple[float, float, float]:
    """One draw from the piecewise-uniform table ``bins`` (edges) / ``fractions`` (per bin).

    Returns ``(value, bin_low, bin_high)``.
    """
    k = int(np.searchsorted(np.cumsum(fractions), g.uniform(), side="right"))
    k = min(k, len(fractions) - 1)
    return float(g.uniform(bins[k], bins[k + 1])), float(bins[k]), float(bins[k + 1])


def draw_counts_mag(u: float, lo: float, hi: float, slope: float) -> float:
    """Inverse CDF of ``dN/dm ∝ 10**(slope m)`` on ``[lo, hi]`` (uniform when slope is 0)."""
    if slope == 0.0 or lo == hi:
        return lo + u * (hi - lo)
    a = np.log(10.0) * slope
    return float(lo + np.log1p(u * np.expm1(a * (hi - lo))) / a)


def unif(g, rng_pair):
    return float(g.uniform(rng_pair[0], rng_pair[1]))


def logunif(g, rng_pair):
    return float(np.exp(g.uniform(np.log(rng_pair[0]), np.log(rng_pair[1]))))


def draw_lrg(g: np.random.Generator, sim) -> dict:
    """Shape of an LRG-like Sersic at the centre: mag_r, gr, rz, reff (arcsec), n, q, pa."""
    m = draw_counts_mag(g.uniform(), *sim.host_mag_r, sim.host_mag_slope)
    gr, rz = unif(g, sim.host_gr), unif(g, sim.host_rz)
    reff, n, q = logunif(g, sim.host_reff), unif(g, sim.host_n), unif(g, sim.host_q)
    pa = float(g.uniform(0.0, np.pi))
    shape = {"mag_r": m, "gr": gr, "rz": rz, "reff": reff, "n": n, "q": q, "pa": pa}
    return shape


def lrg_component(shape, *, pixscale, bands, mag_offset=0.0, reff_scale=1.0):
    """Component ``(row, flux)`` of an LRG shape dict (optionally fainter / smaller)."""
    row = sersic(
        0.0, 0.0, reff=shape["reff"] * reff_scale, n=shape["n"], q=shape["q"], pa=shape["pa"],
        pixscale=pixscale,
    )
    flux = band_fluxes(shape["mag_r"] + mag_offset, shape["gr"], shape["rz"], bands)
    return row, flux


def draw_lens(g: np.random.Generator, sim, *, theta_range, deflector_pa, stress=False):
    """SIE + shear lens and Sersic source parameters (truth dict) and the target arc S/N
    ``(value, bin_low, bin_high)``."""
    theta_e = unif(g, theta_range)
    lens_q = unif(g, sim.lens_q)
    lens_pa = float((deflector_pa + g.normal(0.0, 0.2)) % np.pi)
    g1, g2 = np.clip(g.normal(0.0, sim.shear_sigma, 2), -3 * sim.shear_sigma, 3 * sim.shear_sigma)
    rad = sim.src_pos_max_frac * theta_e * np.sqrt(g.uniform())
    phi = g.uniform(0.0, 2.0 * np.pi)
    lens = {
        "theta_e": theta_e,
        "lens_q": lens_q,
        "lens_pa": lens_pa,
        "shear_g1": float(g1),
        "shear_g2": float(g2),
        "src_x": float(rad * np.cos(phi)),
        "src_y": float(rad * np.sin(phi)),
        "src_reff": logunif(g, sim.src_reff),
        "src_n": unif(g, sim.src_n),
        "src_q": unif(g, sim.src_q),
        "src_pa": float(g.uniform(0.0, np.pi)),
        "src_gr": unif(g, sim.src_gr),
        "src_rz": unif(g, sim.src_rz),
    }
    if stress:
        target = draw_piecewise_uniform(g, sim.stress_arc_snr_bins, sim.stress_arc_snr_fractions)
    else:
        target = draw_piecewise_uniform(g, sim.arc_snr_bins, sim.arc_snr_fractions)
    return lens, target


def draw_neighbours(g: np.random.Generator, sim, *, stamp_size, pixscale, bands):
    """Neighbour galaxies (components) and stars (point sources) of one stamp.

    A fixed number of variates is drawn whatever the outcome (stable stream layout).
    """
    half = (stamp_size // 2) * pixscale
    count = min(int(g.poisson(sim.neighbour_rate)), 4)
    comps, stars = [], []
    cand = g.uniform(-half, half, size=(4, 8, 2))
    props = g.uniform(size=(4, 9))
    for k in range(count):
        dist = np.hypot(cand[k, :, 0], cand[k, :, 1])
        ok = np.flatnonzero(dist >= sim.neighbour_min_dist)
        if ok.size == 0:
            continue
        x, y = cand[k, ok[0]]
        u = props[k]
        mag = sim.neighbour_mag_r[0] + u[1] * (sim.neighbour_mag_r[1] - sim.neighbour_mag_r[0])
        if u[0] < sim.neighbour_star_fraction:
            flux = band_fluxes(mag, 0.3 + u[2], 0.1 + 0.5 * u[3], bands)
            stars.append((float(x), float(y), flux))
        else:
            row = sersic(
                x, y, reff=0.2 + 0.6 * u[4], n=0.5 + 2.0 * u[5], q=0.4 + 0.6 * u[6],
                pa=np.pi * u[7], pixscale=pixscale,
            )
            comps.append((row, band_fluxes(mag, 0.3 + 1.2 * u[8], 0.2 + 0.6 * u[2], bands)))
    return comps, stars


def hard_negative_components(g: np.random.Generator, sim, subtype, *, pixscale, bands):
    """Components of a hard-negative galaxy of ``subtype``; returns ``(components, mag_r)``."""
    mag = unif(g, sim.hn_mag_r)
    total = 10.0 ** ((ZEROPOINT_AB - mag) / 2.5)
    pa = float(g.uniform(0.0, np.pi))
    comps = []

    def add(row, frac, gr, rz):
        comps.append((row, band_fluxes(mag_of_flux(total * frac), gr, rz, bands)))

    if subtype == "ring_galaxy":
        f_bulge = g.uniform(0.3, 0.6)
        radius = unif(g, sim.ring_galaxy_radius)
        q = g.uniform(0.6, 1.0)
        add(sersic(0, 0, reff=g.uniform(0.3, 1.0), n=g.uniform(1.5, 4.0), q=g.uniform(0.7, 1.0),
                   pa=pa, pixscale=pixscale), f_bulge, g.uniform(0.8, 1.4), g.uniform(0.4, 0.7))
        ring_gr, ring_rz = g.uniform(0.2, 0.6), g.uniform(0.0, 0.4)
        add(ring(0, 0, radius=radius, sigma=g.uniform(0.12, 0.3), q=q, pa=pa),
            (1 - f_bulge) * 0.6, ring_gr, ring_rz)
        n_knots = int(g.integers(4, 11))
        ang = g.uniform(0.0, 2 * np.pi, 10)
        kw = g.uniform(0.5, 1.5, 10)
        for k in range(n_knots):
            # point on the ellipse r = radius with axis ratio q, rotated by pa
            xp, yp = radius / np.sqrt(q) * np.cos(ang[k]), radius * np.sqrt(q) * np.sin(ang[k])
            x = np.cos(pa) * xp - np.sin(pa) * yp
            y = np.sin(pa) * xp + np.cos(pa) * yp
            frac = (1 - f_bulge) * 0.4 * kw[k] / kw[:n_knots].sum()
            add(gauss(x, y, sigma=g.uniform(0.08, 0.2)), frac, ring_gr - 0.1, ring_rz)
    elif subtype == "spiral":
        f_bulge, f_arms = g.uniform(0.1, 0.3), g.uniform(0.25, 0.45)
        reff_d = g.uniform(1.5, 3.5)
        q = g.uniform(0.7, 1.0)
        add(sersic(0, 0, reff=g.uniform(0.3, 0.8), n=g.uniform(2.0, 4.0), q=g.uniform(0.8, 1.0),
                   pa=pa, pixscale=pixscale), f_bulge, g.uniform(1.0, 1.4), g.uniform(0.4, 0.7))
        add(sersic(0, 0, reff=reff_d, n=1.0, q=q, pa=pa, pixscale=pixscale),
            1 - f_bulge - f_arms, g.uniform(0.4, 0.7), g.uniform(0.2, 0.5))
        arms = int(g.integers(sim.spiral_arms[0], sim.spiral_arms[1] + 1))
        add(spiral(0, 0, h=reff_d / 1.678, arms=arms, pitch=np.deg2rad(g.uniform(12.0, 30.0)),
                   q=q, pa=pa, phase=g.uniform(0, 2 * np.pi), sharpness=g.uniform(2.0, 6.0)),
            f_arms, g.uniform(0.1, 0.4), g.uniform(0.0, 0.3))
    elif subtype == "merger":
        sep = unif(g, sim.merger_separation)
        ratio = g.uniform(0.3, 1.0)
        f1 = g.uniform(0.55, 0.75) / (1 + ratio)
        f_tails = 1 - f1 * (1 + ratio)
        gr, rz = g.uniform(0.9, 1.5), g.uniform(0.4, 0.8)
        nuclei = [(-0.5 * sep * np.cos(pa), -0.5 * sep * np.sin(pa)),
                  (0.5 * sep * np.cos(pa), 0.5 * sep * np.sin(pa))]
        for (x, y), f in zip(nuclei, (f1, f1 * ratio), strict=True):
            add(sersic(x, y, reff=g.uniform(0.3, 1.0), n=g.uniform(2.0, 4.0), q=g.uniform(0.6, 1.0),
                       pa=g.uniform(0, np.pi), pixscale=pixscale), f, gr, rz)
        n_tails = int(g.integers(1, 3))
        tp = g.uniform(size=(2, 5))
        for k in range(n_tails):
            x, y = nuclei[k]
            rc = 1.5 + 2.5 * tp[k, 0]
            phi0 = 2 * np.pi * tp[k, 1]
            dphi = np.deg2rad(60 + 90 * tp[k, 2]) * (1 if tp[k, 3] < 0.5 else -1)
            xc, yc = x - rc * np.cos(phi0), y - rc * np.sin(phi0)
            add(tail(xc, yc, radius=rc, sigma=0.2 + 0.2 * tp[k, 4], phi0=phi0, dphi=dphi,
                     fade=g.uniform(0.5, 2.0)), f_tails / n_tails, gr - 0.5, rz - 0.2)
    elif subtype == "edge_on":
        f_bulge = g.uniform(0.05, 0.2)
        gr, rz = g.uniform(0.9, 1.4), g.uniform(0.5, 0.8)
        add(sersic(0, 0, reff=g.uniform(1.5, 3.0), n=g.uniform(0.8, 1.2), q=unif(g, sim.edge_on_q),
                   pa=pa, pixscale=pixscale), 1 - f_bulge, gr, rz)
        add(sersic(0, 0, reff=g.uniform(0.3, 0.6), n=2.0, q=g.uniform(0.6, 0.9), pa=pa,
                   pixscale=pixscale), f_bulge, gr + 0.1, rz)
    else:
        msg = f"unknown hard-negative subtype {subtype!r}"
        raise ValueError(msg)
    return comps, mag


# ---------------------------------------------------------------------------------------------
# anchor core-brightness calibration
# ---------------------------------------------------------------------------------------------

N_CALIBRATION = 256
CALIBRATION_STAGE = "simulate.calibration"


@functools.lru_cache(maxsize=8)
def _anchor_mag_offset_cached(sim_json: str, seed: int, stamp_size: int, pixscale: float):
    from gen5dask.config.simulate import SimulateConfig
    from gen5dask.kernels import psf as _psf
    from gen5dask.kernels import rng
    from gen5dask.kernels.photometry import core_brightness

    sim = SimulateConfig.model_validate_json(sim_json)
    fwhm_pix = sim.psfsize_median.get("r", 1.3) / pixscale
    ker = _psf.moffat_kernel(fwhm_pix, sim.psf_beta)
    k = ker.shape[0]
    npix = stamp_size + k - 1
    origin = -(stamp_size // 2) - k // 2
    cores = np.empty((2, N_CALIBRATION))
    buf = np.empty((npix, npix))
    for j in range(N_CALIBRATION):
        g = rng.generator(seed, CALIBRATION_STAGE, j)
        shape = draw_lrg(g, sim)
        for t, scale in enumerate((1.0, sim.anchor_reff_scale)):
            row, flux = lrg_component(shape, pixscale=pixscale, bands=("r",), reff_scale=scale)
            region = np.zeros((1, 1, npix, npix))
            render_components(row[None], flux[None], np.zeros(1, np.int64), pixscale, origin,
                              sim.supersample, buf, region)
            img = _psf.convolve_bands(region[:, 0], ker[None, None], np.ones((1, 1)),
                                      stamp_shape=(stamp_size, stamp_size))
            cores[t, j] = core_brightness(img[:, 0]).median_core[0]
    med_host, med_anchor_same_flux = np.median(cores[0]), np.median(cores[1])
    return float(2.5 * np.log10(sim.anchor_core_ratio * med_anchor_same_flux / med_host))


def anchor_mag_offset(sim, *, seed: int, stamp_size: int, pixscale: float) -> float:
    """Magnitude offset making anchor deflectors ``anchor_core_ratio`` fainter in the core.

    Renders :data:`N_CALIBRATION` host-like deflectors (noise-free, r band, median seeing) with
    and without the ``anchor_reff_scale`` shrink and returns
    ``2.5 log10(ratio * median(core_small) / median(core_host))``: adding it to a host-like
    magnitude makes the median core brightness (median of r < 8 px pixels) ``ratio`` times
    fainter than that of hosts. Deterministic in ``(sim, seed, stamp_size, pixscale)``.
    """
    return _anchor_mag_offset_cached(sim.model_dump_json(), int(seed), int(stamp_size),
                                     float(pixscale))


__all__ = [
    "GAUSS",
    "NPAR",
    "RING",
    "SERSIC",
    "SPIRAL",
    "TAIL",
    "SampleModel",
    "anchor_mag_offset",
    "band_fluxes",
    "component_value",
    "draw_counts_mag",
    "draw_lens",
    "draw_lrg",
    "draw_neighbours",
    "draw_piecewise_uniform",
    "gauss",
    "hard_negative_components",
    "lrg_component",
    "mag_of_flux",
    "render_components",
    "render_components_reference",
    "ring",
    "sersic",
    "spiral",
    "tail",
]

"""Source models of the renderer: elliptical Sersic and pixelated (bilinear) images (numba).

A source is a kind (:data:`KIND_SERSIC` or :data:`KIND_IMAGE`), a float64 parameter vector of
length :data:`N_SOURCE_PARAMS` (layout below, built by :func:`sersic_params` /
:func:`image_params`) and, for images, a 2-D array. Surface brightness is per arcsec^2 at unit
amplitude (a Sersic with ``I_eff = 1``; an image normalised to unit total flux), evaluated at
source-plane positions in arcsec (DESIGN §4 conventions). Every per-call constant (``q /
R_eff^2``, ``e^{b_n}``, ...) is precomputed in the parameter vector, so an evaluation costs three
transcendental calls and no division.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.profiles import sersic_bn, sersic_total_flux, sersic_truncation_radius

KIND_SERSIC = 0
KIND_IMAGE = 1

#: parameter vector layout: centre (arcsec), cos/sin of the angle, axis ratio q, R_eff
#: (arcsec), 1/n, b_n, truncation radius (arcsec), image pixel scale (arcsec), image
#: normalisation, unit total flux, q/R_eff^2, 1/(q R_eff^2), (R_t/R_eff)^2, e^{b_n},
#: 1/sqrt(q), 1/q, ln R_eff, b_n/(n R_eff).
(P_X, P_Y, P_COS, P_SIN, P_Q, P_REFF, P_INV_N, P_BN, P_RTRUNC, P_PIX, P_NORM, P_FLUX,
 P_QA, P_QB, P_RT2N, P_EBN, P_LIP, P_INVQ, P_LOGREFF, P_GRADC) = range(20)
N_SOURCE_PARAMS = 20


@jit
def source_frame(bx, by, sp):
    """Source-frame coordinates ``(u, v)`` (arcsec): ``u`` along the major axis."""
    dx = bx - sp[P_X]
    dy = by - sp[P_Y]
    return sp[P_COS] * dx + sp[P_SIN] * dy, -sp[P_SIN] * dx + sp[P_COS] * dy


@jit
def source_value(bx, by, kind, sp, img):
    """Unit-amplitude surface brightness (per arcsec^2) at source-plane position (bx, by).

    Sersic: ``exp(b_n (1 - (r / R_eff)^(1/n)))``, zero beyond the truncation radius. Image:
    bilinear interpolation of ``img`` (zero outside), pixel ``(k, l)`` centred at
    ``((l - w//2) p, (k - h//2) p)`` in the source frame.
    """
    u, v = source_frame(bx, by, sp)
    if kind == KIND_SERSIC:
        r2n = sp[P_QA] * u * u + sp[P_QB] * v * v
        if r2n > sp[P_RT2N]:
            return 0.0
        if r2n <= 0.0:
            return sp[P_EBN]
        return np.exp(sp[P_BN] * (1.0 - np.exp(0.5 * sp[P_INV_N] * np.log(r2n))))
    h = img.shape[0]
    w = img.shape[1]
    fu = u / sp[P_PIX] + (w // 2)
    fv = v / sp[P_PIX] + (h // 2)
    if fu <= -1.0 or fv <= -1.0 or fu >= w or fv >= h:
        return 0.0
    l0 = int(np.floor(fu))
    k0 = int(np.floor(fv))
    tu = fu - l0
    tv = fv - k0
    acc = 0.0
    for dk in range(2):
        k = k0 + dk
        if k < 0 or k >= h:
            continue
        wv = tv if dk == 1 else 1.0 - tv
        for dl in range(2):
            lc = l0 + dl
            if lc < 0 or lc >= w:
                continue
            wu = tu if dl == 1 else 1.0 - tu
            acc += wv * wu * img[k, lc]
    return acc * sp[P_NORM]


@jit
def source_radius(bx, by, kind, sp):
    """Distance of a source-plane point from the source centre (elliptical for a Sersic)."""
    u, v = source_frame(bx, by, sp)
    if kind == KIND_SERSIC:
        return np.sqrt(sp[P_Q] * u * u + sp[P_INVQ] * v * v)
    return np.sqrt(u * u + v * v)


@jit
def source_misses(cx, cy, rho, kind, sp, img):
    """True if the disc ``(cx, cy, rho)`` (arcsec) in the source plane holds no source light."""
    u, v = source_frame(cx, cy, sp)
    if kind == KIND_SERSIC:
        r = np.sqrt(sp[P_Q] * u * u + sp[P_INVQ] * v * v)
        return r - rho * sp[P_LIP] > sp[P_RTRUNC]
    hw = (img.shape[1] // 2 + 1.0) * sp[P_PIX]
    hh = (img.shape[0] // 2 + 1.0) * sp[P_PIX]
    return abs(u) > hw + rho or abs(v) > hh + rho


@jit
def sersic_log_gradient(r, sp):
    """``|d ln I / d r|`` (per arcsec) of the unit Sersic at elliptical radius ``r`` (arcsec)."""
    inv_n = sp[P_INV_N]
    if r <= 0.0:
        if inv_n < 1.0:
            return np.inf
        if inv_n == 1.0:
            return sp[P_GRADC]
        return 0.0
    return sp[P_GRADC] * np.exp((inv_n - 1.0) * (np.log(r) - sp[P_LOGREFF]))


@jit
def sersic_peak_on_disc(r_lo, sp):
    """Largest unit surface brightness at elliptical radius >= ``r_lo`` (arcsec)."""
    if r_lo <= 0.0:
        return sp[P_EBN]
    return np.exp(sp[P_BN] * (1.0 - np.exp(sp[P_INV_N] * (np.log(r_lo) - sp[P_LOGREFF]))))


def sersic_params(src_x, src_y, src_reff, src_n, src_q, src_pa, *, lost_fraction):
    """Parameter vectors ``(n, N_SOURCE_PARAMS)`` of unit Sersic sources and their fluxes.

    Returns ``(params, unit_flux)``: ``unit_flux`` is the total flux of the untruncated profile
    with ``I_eff = 1`` (arcsec^2); the truncation radius encloses ``1 - lost_fraction`` of it.
    """
    bn = np.atleast_1d(sersic_bn(src_n))
    funit = np.atleast_1d(sersic_total_flux(1.0, src_reff, src_n))
    rt = np.atleast_1d(sersic_truncation_radius(src_reff, src_n, lost_fraction=lost_fraction))
    n = src_x.shape[0]
    sp = np.zeros((n, N_SOURCE_PARAMS))
    sp[:, P_X], sp[:, P_Y] = src_x, src_y
    sp[:, P_COS], sp[:, P_SIN] = np.cos(src_pa), np.sin(src_pa)
    sp[:, P_Q], sp[:, P_REFF], sp[:, P_INV_N], sp[:, P_BN] = src_q, src_reff, 1.0 / src_n, bn
    sp[:, P_RTRUNC], sp[:, P_FLUX] = rt, funit
    reff2 = src_reff * src_reff
    sp[:, P_QA] = src_q / reff2
    sp[:, P_QB] = 1.0 / (src_q * reff2)
    sp[:, P_RT2N] = (rt / src_reff) ** 2
    sp[:, P_EBN] = np.exp(bn)
    sp[:, P_LIP] = 1.0 / np.sqrt(src_q)
    sp[:, P_INVQ] = 1.0 / src_q
    sp[:, P_LOGREFF] = np.log(src_reff)
    sp[:, P_GRADC] = bn / (src_n * src_reff)
    return sp, funit


def image_params(src_x, src_y, src_pa, src_pixscale, image_sums):
    """Parameter vectors ``(n, N_SOURCE_PARAMS)`` of unit-flux image sources.

    ``image_sums`` is the pixel sum of each sample's image; the bilinear interpolant then
    integrates to ``sum * src_pixscale**2``, which the normalisation divides out.
    """
    n = src_x.shape[0]
    sp = np.zeros((n, N_SOURCE_PARAMS))
    sp[:, P_X], sp[:, P_Y] = src_x, src_y
    sp[:, P_COS], sp[:, P_SIN] = np.cos(src_pa), np.sin(src_pa)
    sp[:, P_PIX] = src_pixscale
    sp[:, P_NORM] = 1.0 / (image_sums * src_pixscale**2)
    sp[:, P_FLUX] = 1.0
    sp[:, P_Q] = 1.0
    sp[:, P_INVQ] = 1.0
    sp[:, P_LIP] = 1.0
    return sp


__all__ = [
    "KIND_IMAGE",
    "KIND_SERSIC",
    "N_SOURCE_PARAMS",
    "image_params",
    "sersic_log_gradient",
    "sersic_params",
    "sersic_peak_on_disc",
    "source_frame",
    "source_misses",
    "source_radius",
    "source_value",
]

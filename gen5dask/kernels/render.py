"""Lensed-source rendering for whole chunks: SIE + shear, Sersic or pixelated source, PSF.

Pipeline per sample (one ray trace per sample; bands differ only by amplitude and PSF):

1. **Where to integrate.** The image plane is covered by the *magnification grid*, a square of
   ``magnification_grid`` x the stamp side (default 3x), enlarged when needed so that it holds
   every image of the (truncated) source: images lie within
   ``(|beta_src| + R_src + max|alpha_SIE|) / (1 - |gamma|)`` of the lens, where ``R_src`` bounds
   the source (``R_trunc / sqrt(q_src)`` for a Sersic, the half-diagonal for an image). The
   enlargement is capped at ``max_grid`` x the stamp side; beyond that cap (only for huge
   sources) the magnification is a slight underestimate.
2. **Which pixels.** The grid is split into 8x8-pixel blocks, then pixels. Each cell's corners
   are ray traced; the cell's source-plane footprint is contained in the circle around the mean
   of the traced corners through the farthest corner, widened by the bound on the deviation of
   the lens map from its bilinear interpolant, ``side^2 / 4 * max|d^2 alpha|`` with
   ``max|d^2 alpha| <= 1.5 b / (q^2 d^2)`` at distance ``d`` from the lens centre (cells that
   contain the lens centre are always kept). A cell is skipped only when that circle misses the
   source (Sersic truncated at the elliptical radius enclosing 99.9 % of its flux; image
   rectangle), so no light is ever dropped by the selection.
3. **How finely.** Each kept pixel is ray traced at its centre; from its footprint the
   relative change of the source across it (``relvar``; Sersic: ``2 rho / sqrt(q) *
   |d ln I / d r|``) picks the lowest Gauss-Legendre order m (m x m nodes, m <= ``supersample``)
   whose error for an exponential profile stays below ~3e-4 of the pixel flux; when even
   ``supersample`` is not enough the cell is split 2x2, recursively (up to ``max_depth``
   times). Cells holding the Sersic centre (a cusp unless n = 0.5) are split until they could
   hold < 1e-5 of the flux; below ``I_eff`` the limits loosen as ``I^-1/2`` (smooth, faint
   wings). Blocks outside the stamp + PSF margin are integrated as single adaptive cells (only
   their total matters). This resolves compact sources (R_eff down to 0.05", smaller than a
   pixel) and Sersic cusps at a cost proportional to the lensed source's area.
4. **Surface brightness is conserved**: each leaf contributes ``I(beta(theta)) * area``;
   pixel values are fluxes (nanomaggies per pixel) and ``sum`` over the grid is the lensed flux.
5. **PSF.** The unconvolved image on the stamp plus a ``K // 2`` margin is convolved with each
   band's kernel by zero-padded FFTs (exactly linear) and cropped to the stamp
   (:func:`psf.convolve_bands`: one image spectrum per sample, real-even DCT-I spectra for the
   symmetric Moffat kernels, inverse pruned to the stamp rows).

**Ray tracing.** The SIE deflection depends only on the direction from the lens centre, so
each sample tabulates it once along the directions ``(1, t)`` and ``(t, 1)``, ``|t| <= 1``
(spacing ``0.02 min(q, 0.5)``), and every ray is a 4-point Lagrange interpolation of that table
plus the (linear) shear: ~2.5x cheaper than the exact ``arctan``/``arctanh`` evaluation and
within ~1e-8 theta_E of it (tested); rays within ``_EXACT_RADIUS`` of the lens centre use the
exact deflection.

``magnification`` = lensed flux on the grid / unlensed flux of the same truncated source
(``(1 - 1e-3) F`` for a Sersic; ``F`` for an image source), noise-free, before the stamp cut.

Coordinates (DESIGN §4): pixel ``(i, j)`` of an ``H x H`` stamp is centred at
``x = (j - H//2) * pixscale``, ``y = (i - H//2) * pixscale`` (arcsec); angles are radians CCW
from ``+x``; this frame is passed unchanged to lenstronomy as its ``(x, y)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gen5dask.kernels import psf as _psf
from gen5dask.kernels._jit import jit
from gen5dask.kernels.lensing import (
    S_SCALE_ARCSEC,
    sie_max_deflection,
    sie_second_derivative_bound,
    sie_shear_deflection,
    sie_shear_deflection_point,
)
from gen5dask.kernels.profiles import (
    N_MAX,
    N_MIN,
    sersic_bn,
    sersic_total_flux,
    sersic_truncation_radius,
)

#: flux fraction of a Sersic source beyond its truncation radius.
SERSIC_LOST_FRACTION = 1e-3
#: block side (pixels) of the coarse selection pass.
BLOCK = 8
#: a leaf cell may be refined only if it could hold more than this fraction of the source flux.
_FLUX_FLOOR = 1e-5
#: stack capacity per recursion (>= supersample^2 + 3 * max_depth + 4).
_STACK = 4096

#: names of the optional work counters (``work=`` argument of the renderers).
WORK_COUNTERS = (
    "block_corner_traces", "active_blocks", "single_sample_pixels", "active_pixels", "cells",
    "gauss_nodes",
)

#: closer than this to the lens centre (arcsec) deflections are evaluated exactly (the SIE core
#: breaks the degree-0 homogeneity the direction table relies on only at ~1e-10 arcsec).
_EXACT_RADIUS = 0.01
#: direction-table node spacing per unit of min(lens_q, 0.5) (see :func:`_table_intervals`).
_TABLE_STEP = 0.02

_KIND_SERSIC = 0
_KIND_IMAGE = 1

# source parameter vector layout (float64[_NSP])
_SX, _SY, _SC, _SS, _SQ, _SREFF, _SINVN, _SBN, _SRT, _SPIX, _SNORM, _SFLUX = range(12)
_NSP = 12


# ---------------------------------------------------------------------------------------------
# numba core
# ---------------------------------------------------------------------------------------------
@jit
def _table_intervals(q):
    """Intervals of the direction table over t in [-1, 1]: spacing ``0.02 min(q, 0.5)``."""
    return int(np.ceil(2.0 / (_TABLE_STEP * min(q, 0.5))))


@jit
def _fill_defl_table(tab, nint, b, s, q, cpa, spa):
    """Tabulate the SIE deflection (no shear) along the directions ``(1, t)`` and ``(t, 1)``.

    The SIE deflection is homogeneous of degree 0 (it depends only on the direction from the
    lens centre, up to the ``1e-10`` arcsec core), so ``alpha(x, y) = sign(x) A(y / x)`` for
    ``|x| >= |y|`` and ``sign(y) B(x / y)`` otherwise. ``tab[0, k]`` holds ``A`` and
    ``tab[1, k]`` holds ``B`` at ``t_k = -1 + (k - 1) h``, ``h = 2 / nint``,
    ``k = 0 .. nint + 3`` (one node of padding on each side for the 4-point stencil).
    """
    h = 2.0 / nint
    for k in range(nint + 4):
        t = -1.0 + (k - 1) * h
        ax, ay = sie_shear_deflection_point(1.0, t, b, s, q, cpa, spa, 0.0, 0.0)
        tab[0, k, 0] = ax
        tab[0, k, 1] = ay
        ax, ay = sie_shear_deflection_point(t, 1.0, b, s, q, cpa, spa, 0.0, 0.0)
        tab[1, k, 0] = ax
        tab[1, k, 1] = ay


@jit
def _trace(x, y, lens, tab):
    """Source-plane position of image-plane point (x, y) (arcsec), SIE + shear.

    Away from the lens centre (``r >= _EXACT_RADIUS``) the SIE part is the 4-point Lagrange
    interpolant of the direction table of :func:`_fill_defl_table` (error < ~1e-8 theta_E,
    checked in the tests); closer in, the exact deflection is evaluated.
    """
    b, s, q, cpa, spa, g1, g2, inv_h = lens
    if x * x + y * y < _EXACT_RADIUS * _EXACT_RADIUS:
        ax, ay = sie_shear_deflection_point(x, y, b, s, q, cpa, spa, g1, g2)
        return x - ax, y - ay
    if abs(x) >= abs(y):
        t = y / x
        sec = 0
        sg = 1.0 if x > 0.0 else -1.0
    else:
        t = x / y
        sec = 1
        sg = 1.0 if y > 0.0 else -1.0
    u = (t + 1.0) * inv_h + 1.0  # >= 1
    k = int(u)
    f = u - k
    fm = f - 1.0
    fp = f + 1.0
    f2 = f - 2.0
    w0 = -f * fm * f2 * (1.0 / 6.0)
    w1 = 0.5 * fp * fm * f2
    w2 = -0.5 * fp * f * f2
    w3 = fp * f * fm * (1.0 / 6.0)
    ax = sg * (w0 * tab[sec, k - 1, 0] + w1 * tab[sec, k, 0] + w2 * tab[sec, k + 1, 0]
               + w3 * tab[sec, k + 2, 0])
    ay = sg * (w0 * tab[sec, k - 1, 1] + w1 * tab[sec, k, 1] + w2 * tab[sec, k + 1, 1]
               + w3 * tab[sec, k + 2, 1])
    return x - ax - (g1 * x + g2 * y), y - ay - (g2 * x - g1 * y)


@jit
def _src_coords(bx, by, sp):
    dx = bx - sp[_SX]
    dy = by - sp[_SY]
    u = sp[_SC] * dx + sp[_SS] * dy
    v = -sp[_SS] * dx + sp[_SC] * dy
    return u, v


@jit
def _src_value(bx, by, kind, sp, img):
    """Unit-amplitude surface brightness (per arcsec^2) at source-plane position (bx, by)."""
    u, v = _src_coords(bx, by, sp)
    if kind == _KIND_SERSIC:
        q = sp[_SQ]
        r2 = (q * u * u + v * v / q) / (sp[_SREFF] * sp[_SREFF])
        if r2 > sp[_SRT] * sp[_SRT] / (sp[_SREFF] * sp[_SREFF]):
            return 0.0
        if r2 <= 0.0:
            return np.exp(sp[_SBN])
        return np.exp(sp[_SBN] * (1.0 - np.exp(0.5 * sp[_SINVN] * np.log(r2))))
    # bilinear interpolation, zero outside; pixel (k, l) centred at ((l - w//2) p, (k - h//2) p)
    h = img.shape[0]
    w = img.shape[1]
    fu = u / sp[_SPIX] + (w // 2)
    fv = v / sp[_SPIX] + (h // 2)
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
    return acc * sp[_SNORM]


@jit
def _src_radius(bx, by, kind, sp):
    """Distance measure of a source-plane point from the source (elliptical radius for Sersic)."""
    u, v = _src_coords(bx, by, sp)
    if kind == _KIND_SERSIC:
        q = sp[_SQ]
        return np.sqrt(q * u * u + v * v / q)
    return np.sqrt(u * u + v * v)


@jit
def _src_misses(cx, cy, rho, kind, sp, img):
    """True if the disc (cx, cy, rho) in the source plane holds no source light."""
    u, v = _src_coords(cx, cy, sp)
    if kind == _KIND_SERSIC:
        q = sp[_SQ]
        r = np.sqrt(q * u * u + v * v / q)
        return r - rho / np.sqrt(q) > sp[_SRT]
    hw = (img.shape[1] // 2 + 1.0) * sp[_SPIX]
    hh = (img.shape[0] // 2 + 1.0) * sp[_SPIX]
    return abs(u) > hw + rho or abs(v) > hh + rho


@jit
def _relgrad(r, sp):
    """|d ln I / d r| of the unit Sersic at elliptical radius r (per arcsec)."""
    inv_n = sp[_SINVN]
    reff = sp[_SREFF]
    if r <= 0.0:
        if inv_n < 1.0:
            return np.inf
        if inv_n == 1.0:
            return sp[_SBN] / reff
        return 0.0
    return sp[_SBN] * inv_n / reff * np.exp((inv_n - 1.0) * np.log(r / reff))


@jit
def _cell_order(bx, by, rho, area, kind, sp, img, tols, max_order):
    """Gauss-Legendre order a cell needs; ``0`` means "split it".

    Sersic: the relative change of the source over the footprint disc (radius ``rho``,
    elliptical metric), ``relvar = 2 rho / sqrt(q) * max|d ln I / d r|``, is compared with the
    per-order limits ``tols[m]`` (error <~ 3e-4 of the cell's flux for an exponential). Below
    ``I_eff`` the limit grows as ``I^(-1/4)`` (error ~ relvar^2 I stays small in absolute
    terms), and a cell that cannot hold more than ``1e-5`` of the source flux is never split
    (it gets ``max_order``).
    Image source: one sample per source pixel across the footprint.
    """
    if kind == _KIND_SERSIC:
        q = sp[_SQ]
        lip = 1.0 / np.sqrt(q)
        r = _src_radius(bx, by, kind, sp)
        r_lo = max(r - lip * rho, 0.0)
        if r_lo > sp[_SRT]:
            return 1
        # |d ln I / d r| decreases with r for n >= 1 and increases for n < 1
        g = _relgrad(r_lo, sp) if sp[_SINVN] <= 1.0 else _relgrad(r + lip * rho, sp)
        relvar = 2.0 * lip * rho * g
        if relvar <= tols[1]:
            return 1
        rr = r_lo / sp[_SREFF]
        imax = np.exp(sp[_SBN]) if rr <= 0.0 else np.exp(
            sp[_SBN] * (1.0 - np.exp(sp[_SINVN] * np.log(rr)))
        )
        faint = imax * area <= _FLUX_FLOOR * sp[_SFLUX]
        if not faint and r_lo <= 0.0 and sp[_SINVN] < 2.0:
            # the footprint holds the centre, where I(r) is not smooth unless n = 0.5
            return 0
        if imax < 1.0:
            relvar = relvar * np.sqrt(imax)
        for m in range(1, max_order + 1):
            if relvar <= tols[m]:
                return m
        if faint:
            return max_order  # too faint to be worth splitting
        return 0
    if _src_misses(bx, by, rho, kind, sp, img):
        return 1
    need = 2.0 * rho / (tols[0] * sp[_SPIX])
    if not need <= max_order:  # also catches rho = inf (cell holds the lens centre)
        return 0
    return max(int(np.ceil(need)), 1)


@jit
def _rect_distance(x0, x1, y0, y1):
    """Distance from the origin to the rectangle [x0, x1] x [y0, y1] (0 inside)."""
    dx = 0.0
    if x0 > 0.0:
        dx = x0
    elif x1 < 0.0:
        dx = -x1
    dy = 0.0
    if y0 > 0.0:
        dy = y0
    elif y1 < 0.0:
        dy = -y1
    return np.sqrt(dx * dx + dy * dy)


@jit
def _footprint(ax, ay, bx, by, cx_, cy_, dx_, dy_):
    """Centroid and circumscribed radius of four traced corners."""
    mx = 0.25 * (ax + bx + cx_ + dx_)
    my = 0.25 * (ay + by + cy_ + dy_)
    r2 = max(
        max((ax - mx) ** 2 + (ay - my) ** 2, (bx - mx) ** 2 + (by - my) ** 2),
        max((cx_ - mx) ** 2 + (cy_ - my) ** 2, (dx_ - mx) ** 2 + (dy_ - my) ** 2),
    )
    return mx, my, np.sqrt(r2)


@jit
def _cell_gl(cx, cy, h, lens, tab, kind, sp, img, gx, gw, bx0, by0):
    """Gauss-Legendre mean of the source over a square cell; the traced centre is reused."""
    m = gx.shape[0]
    acc = 0.0
    for i in range(m):
        y = cy + 0.5 * h * gx[i]
        for j in range(m):
            x = cx + 0.5 * h * gx[j]
            if gx[i] == 0.0 and gx[j] == 0.0:
                bx, by = bx0, by0
            else:
                bx, by = _trace(x, y, lens, tab)
            acc += gw[i] * gw[j] * _src_value(bx, by, kind, sp, img)
    return acc


@jit
def _integrate_cell(
    xc, yc, side, jac, lens, tab, kind, sp, img, gxs, gws, tols, max_order,
    max_depth, stack, stats,
):
    """Flux (unit amplitude) of a square image-plane cell centred at (xc, yc), side ``side``.

    ``jac`` is the footprint circumradius per unit cell side (from traced corners). Each cell
    is integrated with the lowest Gauss-Legendre order that :func:`_cell_order` allows, or
    split 2x2 (depth-first, explicit stack) when even ``max_order`` is not enough.
    """
    b = lens[0]
    q = lens[2]
    stack[0, 0] = xc
    stack[0, 1] = yc
    stack[0, 2] = side
    stack[0, 3] = 0.0
    top = 1
    acc = 0.0
    while top > 0:
        top -= 1
        cx = stack[top, 0]
        cy = stack[top, 1]
        h = stack[top, 2]
        depth = stack[top, 3]
        stats[4] += 1
        bx, by = _trace(cx, cy, lens, tab)
        d = _rect_distance(cx - 0.5 * h, cx + 0.5 * h, cy - 0.5 * h, cy + 0.5 * h)
        rho_c = jac * h + 0.25 * h * h * sie_second_derivative_bound(b, q, d)
        m = _cell_order(bx, by, rho_c, h * h, kind, sp, img, tols, max_order)
        if m == 0:
            if depth < max_depth and top + 4 <= stack.shape[0]:
                hq = 0.25 * h
                for k in range(4):
                    stack[top, 0] = cx + (hq if (k & 1) else -hq)
                    stack[top, 1] = cy + (hq if (k & 2) else -hq)
                    stack[top, 2] = 0.5 * h
                    stack[top, 3] = depth + 1.0
                    top += 1
                continue
            m = max_order
        if m == 1:
            acc += _src_value(bx, by, kind, sp, img) * h * h
        else:
            stats[5] += m * m
            acc += _cell_gl(
                cx, cy, h, lens, tab, kind, sp, img, gxs[m, :m], gws[m, :m], bx, by
            ) * h * h
    return acc


@jit
def _render_one(
    lens, tab, kind, sp, img, pix, lo, nblk, a_lo, region, gxs, gws, tols, max_order,
    max_depth, cbx, cby, pbx, pby, stack, stats,
):
    """Integrate one sample over its grid; fill ``region`` (stamp + margin); return total flux."""
    b = lens[0]
    q = lens[2]
    bs = BLOCK
    npx = region.shape[0]
    a_hi = a_lo + npx  # region covers pixel indices [a_lo, a_hi)
    # 1) trace block corners (edge index e sits at (e - 0.5) * pix)
    for bi in range(nblk + 1):
        y = (lo + bi * bs - 0.5) * pix
        for bj in range(nblk + 1):
            x = (lo + bj * bs - 0.5) * pix
            cbx[bi, bj], cby[bi, bj] = _trace(x, y, lens, tab)
    total = 0.0
    stats[0] += (nblk + 1) * (nblk + 1)
    side_b = bs * pix
    for bi in range(nblk):
        y0 = (lo + bi * bs - 0.5) * pix
        pi0 = lo + bi * bs
        for bj in range(nblk):
            x0 = (lo + bj * bs - 0.5) * pix
            pj0 = lo + bj * bs
            mx, my, r = _footprint(
                cbx[bi, bj], cby[bi, bj], cbx[bi, bj + 1], cby[bi, bj + 1],
                cbx[bi + 1, bj], cby[bi + 1, bj], cbx[bi + 1, bj + 1], cby[bi + 1, bj + 1],
            )
            d = _rect_distance(x0, x0 + side_b, y0, y0 + side_b)
            rm = r + 0.25 * side_b * side_b * sie_second_derivative_bound(b, q, d)
            if _src_misses(mx, my, rm, kind, sp, img):
                continue
            stats[1] += 1
            outside = pi0 + bs <= a_lo or pi0 >= a_hi or pj0 + bs <= a_lo or pj0 >= a_hi
            if outside:
                # only the total matters here: integrate the block as one adaptive cell
                total += _integrate_cell(
                    x0 + 0.5 * side_b, y0 + 0.5 * side_b, side_b, r / side_b, lens, tab, kind, sp,
                    img, gxs, gws, tols, max_order, max_depth + 3, stack, stats,
                )
                continue
            # 2) trace this block's pixel corners
            for pi in range(bs + 1):
                y = y0 + pi * pix
                for pj in range(bs + 1):
                    x = x0 + pj * pix
                    pbx[pi, pj], pby[pi, pj] = _trace(x, y, lens, tab)
            for pi in range(bs):
                yc = y0 + (pi + 0.5) * pix
                for pj in range(bs):
                    xc = x0 + (pj + 0.5) * pix
                    mx, my, rp = _footprint(
                        pbx[pi, pj], pby[pi, pj], pbx[pi, pj + 1], pby[pi, pj + 1],
                        pbx[pi + 1, pj], pby[pi + 1, pj], pbx[pi + 1, pj + 1],
                        pby[pi + 1, pj + 1],
                    )
                    dp = _rect_distance(xc - 0.5 * pix, xc + 0.5 * pix, yc - 0.5 * pix,
                                        yc + 0.5 * pix)
                    rm = rp + 0.25 * pix * pix * sie_second_derivative_bound(b, q, dp)
                    if _src_misses(mx, my, rm, kind, sp, img):
                        continue
                    stats[3] += 1
                    # fast path: one central sample when the pixel needs no more
                    bx, by = _trace(xc, yc, lens, tab)
                    if _cell_order(bx, by, rm, pix * pix, kind, sp, img, tols, max_order) == 1:
                        stats[2] += 1
                        val = _src_value(bx, by, kind, sp, img) * pix * pix
                    else:
                        val = _integrate_cell(
                            xc, yc, pix, rp / pix, lens, tab, kind, sp, img, gxs, gws, tols,
                            max_order, max_depth, stack, stats,
                        )
                    total += val
                    ri = pi0 + pi - a_lo
                    rj = pj0 + pj - a_lo
                    if 0 <= ri < npx and 0 <= rj < npx:
                        region[ri, rj] = val
    return total


@jit
def _render_chunk(
    lens_arr, kind, sp_arr, imgs, img_index, pix, half, a_lo, region, gxs, gws, tols,
    max_order, max_depth, totals, stats,
):
    """Loop over samples; ``half[i]`` is the grid half-size (pixels) of sample i."""
    n = lens_arr.shape[0]
    nmax = 0
    for i in range(n):
        nb = (2 * half[i] + 1 + BLOCK - 1) // BLOCK
        nmax = max(nmax, nb)
    cbx = np.empty((nmax + 1, nmax + 1))
    cby = np.empty((nmax + 1, nmax + 1))
    pbx = np.empty((BLOCK + 1, BLOCK + 1))
    pby = np.empty((BLOCK + 1, BLOCK + 1))
    stack = np.empty((_STACK, 4))
    nint_max = 0
    for i in range(n):
        nint_max = max(nint_max, _table_intervals(lens_arr[i, 2]))
    tab = np.empty((2, nint_max + 4, 2))
    for i in range(n):
        nint = _table_intervals(lens_arr[i, 2])
        _fill_defl_table(
            tab, nint, lens_arr[i, 0], lens_arr[i, 1], lens_arr[i, 2], lens_arr[i, 3],
            lens_arr[i, 4],
        )
        lens = (
            lens_arr[i, 0], lens_arr[i, 1], lens_arr[i, 2], lens_arr[i, 3], lens_arr[i, 4],
            lens_arr[i, 5], lens_arr[i, 6], 0.5 * nint,
        )
        nb = (2 * half[i] + 1 + BLOCK - 1) // BLOCK
        totals[i] = _render_one(
            lens, tab, kind, sp_arr[i], imgs[img_index[i]], pix, -half[i], nb, a_lo,
            region[i], gxs, gws, tols, max_order, max_depth, cbx, cby, pbx, pby, stack,
            stats,
        )


# ---------------------------------------------------------------------------------------------
# python front end
# ---------------------------------------------------------------------------------------------
def _as_vec(name: str, value, n: int | None) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "(n,)" if n is None else f"({n},)"
        msg = f"{name} must have shape {want}, got {arr.shape}"
        raise ValueError(msg)
    bad = ~np.isfinite(arr)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        msg = f"{name}[{i}] = {arr[i]!r} (sample index {i}) is not finite"
        raise ValueError(msg)
    return arr


def _range_check(name: str, arr: np.ndarray, bad: np.ndarray, want: str) -> None:
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        msg = f"{name}[{i}] = {arr[i]!r} (sample index {i}) must be {want}"
        raise ValueError(msg)


def _lens_table(theta_e, lens_q, lens_pa, shear_g1, shear_g2):
    n = theta_e.shape[0]
    _range_check("theta_e", theta_e, theta_e < 0, ">= 0 arcsec")
    _range_check("lens_q", lens_q, (lens_q <= 0) | (lens_q > 1), "in (0, 1]")
    gamma = np.hypot(shear_g1, shear_g2)
    _range_check("shear_g1", shear_g1, gamma >= 0.9, "such that |(g1, g2)| < 0.9")
    sq = np.sqrt(lens_q)
    table = np.empty((n, 7))
    table[:, 0] = theta_e * sq
    table[:, 1] = S_SCALE_ARCSEC / sq
    table[:, 2] = lens_q
    table[:, 3] = np.cos(lens_pa)
    table[:, 4] = np.sin(lens_pa)
    table[:, 5] = shear_g1
    table[:, 6] = shear_g2
    amax = np.array([sie_max_deflection(table[i, 0], lens_q[i]) for i in range(n)])
    return table, amax, gamma


def _check_flux(src_flux_bands, n: int) -> np.ndarray:
    flux = np.asarray(src_flux_bands, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[0] != n:
        msg = f"src_flux_bands must have shape ({n}, nband), got {flux.shape}"
        raise ValueError(msg)
    bad = ~np.isfinite(flux)
    if np.any(bad):
        i, b = (int(v) for v in np.argwhere(bad)[0])
        msg = f"src_flux_bands[{i}, {b}] = {flux[i, b]!r} (sample index {i}) is not finite"
        raise ValueError(msg)
    return flux


def _psf_kernels(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels):
    if psf_kernels is not None:
        ker = np.asarray(psf_kernels, dtype=np.float64)
        if ker.ndim != 4 or ker.shape[:2] != (n, nband) or ker.shape[2] != ker.shape[3]:
            msg = f"psf_kernels must have shape ({n}, {nband}, K, K), got {ker.shape}"
            raise ValueError(msg)
        if ker.shape[2] % 2 == 0:
            msg = f"psf_kernels side {ker.shape[2]} must be odd (centred)"
            raise ValueError(msg)
        out = np.empty_like(ker)
        for i in range(n):
            for b in range(nband):
                out[i, b] = _psf.normalise_psf_image(ker[i, b], name=f"psf_kernels[{i}, {b}]")
        return out
    fwhm = np.asarray(psf_fwhm_arcsec, dtype=np.float64)
    if fwhm.shape != (n, nband):
        msg = f"psf_fwhm_arcsec must have shape ({n}, {nband}), got {fwhm.shape}"
        raise ValueError(msg)
    _psf.check_fwhm(fwhm, bands=bands)
    psf_beta = float(psf_beta)
    if not (np.isfinite(psf_beta) and psf_beta > 1.0):
        msg = f"psf_beta={psf_beta!r} must be finite and > 1"
        raise ValueError(msg)
    fwhm_pix = fwhm / pixscale
    k = int(np.max(_psf.moffat_size(fwhm_pix, psf_beta))) if n else 3
    out = np.empty((n, nband, k, k))
    _psf.moffat_fill_batch(out, fwhm_pix, psf_beta)
    return out


def _grid_half(
    extent_arcsec, stamp_size, pixscale, margin, magnification_grid, max_grid
) -> np.ndarray:
    base = max(stamp_size // 2 + margin, int(np.ceil(0.5 * magnification_grid * stamp_size)))
    cap = max(base, int(np.ceil(0.5 * max_grid * stamp_size)))
    need = np.ceil(extent_arcsec / pixscale).astype(np.int64) + 2
    return np.clip(need, base, cap).astype(np.int64)


#: Sersic limits on ``relvar`` (relative change across a cell footprint) per Gauss-Legendre
#: order 1..8; each keeps the rule's error for an exponential profile below ~3e-4 of the cell
#: flux (index 0 unused for Sersic sources).
_SERSIC_TOLS = np.array([0.0, 0.2, 1.7, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0])
#: maximum Gauss-Legendre order accepted as ``supersample``.
MAX_ORDER = 8


def _gauss_tables() -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes on [-1, 1] and weights summing to 1 for orders 1..MAX_ORDER."""
    gxs = np.zeros((MAX_ORDER + 1, MAX_ORDER))
    gws = np.zeros((MAX_ORDER + 1, MAX_ORDER))
    for m in range(1, MAX_ORDER + 1):
        x, w = np.polynomial.legendre.leggauss(m)
        x[np.abs(x) < 1e-15] = 0.0
        gxs[m, :m] = x
        gws[m, :m] = w / w.sum()
    return gxs, gws


_GXS, _GWS = _gauss_tables()


def _work_array(work) -> np.ndarray:
    if work is None:
        return np.zeros(len(WORK_COUNTERS), dtype=np.int64)
    if not (isinstance(work, np.ndarray) and work.dtype == np.int64
            and work.shape == (len(WORK_COUNTERS),)):
        msg = f"work must be an int64 array of shape ({len(WORK_COUNTERS)},)"
        raise ValueError(msg)
    return work


def _check_scale(tol_scale: float) -> float:
    tol_scale = float(tol_scale)
    if not (np.isfinite(tol_scale) and tol_scale > 0):
        msg = f"tol_scale={tol_scale!r} must be finite and > 0"
        raise ValueError(msg)
    return tol_scale


def _common_checks(stamp_size, pixscale, supersample, max_depth):
    if int(stamp_size) != stamp_size or stamp_size < 1:
        msg = f"stamp_size={stamp_size!r} must be a positive integer (pixels)"
        raise ValueError(msg)
    if not (np.isfinite(pixscale) and pixscale > 0):
        msg = f"pixscale={pixscale!r} must be finite and > 0 arcsec/pixel"
        raise ValueError(msg)
    if int(supersample) != supersample or not 1 <= supersample <= MAX_ORDER:
        msg = f"supersample={supersample!r} must be an integer in [1, {MAX_ORDER}]"
        raise ValueError(msg)
    if int(max_depth) != max_depth or not 0 <= max_depth <= 30:
        msg = f"max_depth={max_depth!r} must be an integer in [0, 30]"
        raise ValueError(msg)


def _finish(region, kernels, amps, totals, denom, stamp_size, workers):
    arc = _psf.convolve_bands(
        region, kernels, amps, stamp_shape=(stamp_size, stamp_size), workers=workers
    )
    return arc.astype(np.float32), totals / denom


def render_lensed_sersic(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_reff,
    src_n,
    src_q,
    src_pa,
    src_flux_bands,
    psf_fwhm_arcsec=None,
    psf_beta: float = 3.5,
    supersample: int = 3,
    psf_kernels=None,
    bands: Sequence[str] | None = None,
    tol_scale: float = 1.0,
    max_depth: int = 12,
    magnification_grid: float = 3.0,
    max_grid: float = 8.0,
    fft_workers: int = 1,
    work: np.ndarray | None = None,
):
    """Render noise-free, lensed, PSF-convolved Sersic arcs for a chunk of samples.

    Parameters
    ----------
    stamp_size : int
        Stamp side ``H = W`` in pixels; the lens sits at pixel ``(H//2, H//2)``.
    pixscale : float
        Pixel scale, arcsec/pixel (0.262 for DR10).
    theta_e, lens_q, lens_pa : array_like, shape (n,)
        SIE Einstein radius (arcsec, lenstronomy convention, >= 0), axis ratio (0, 1] and
        major-axis angle (radians CCW from +x).
    shear_g1, shear_g2 : array_like, shape (n,)
        External shear (lenstronomy ``SHEAR``), ``|g| < 0.9``.
    src_x, src_y : array_like, shape (n,)
        Unlensed source centre, arcsec in the stamp frame.
    src_reff : array_like, shape (n,)
        Sersic half-light radius along the intermediate axis, arcsec (> 0).
    src_n, src_q, src_pa : array_like, shape (n,)
        Sersic index (0.3..10), axis ratio (0, 1], major-axis angle (radians CCW from +x).
    src_flux_bands : array_like, shape (n, nband)
        Total unlensed source flux per band, nanomaggies.
    psf_fwhm_arcsec : array_like, shape (n, nband)
        Moffat FWHM per sample and band, arcsec (finite, > 0). Ignored if ``psf_kernels``.
    psf_beta : float, optional
        Moffat beta (default 3.5).
    supersample : int, optional
        Base sub-sampling factor of pixels where the source varies (default 3).
    psf_kernels : array_like, shape (n, nband, K, K), optional
        Supplied PSF images (odd ``K``); normalised with :func:`psf.normalise_psf_image`.
    bands : sequence of str, optional
        Band names for error messages.
    tol_scale : float, optional
        Multiplies every accuracy limit (smaller is more accurate and slower; default 1).
    max_depth : int, optional
        Maximum number of 2x2 refinements below the ``supersample`` level.
    magnification_grid, max_grid : float, optional
        Magnification grid side in stamp sides (default 3) and the cap of its enlargement.
    fft_workers : int, optional
        scipy.fft worker threads (default 1).
    work : numpy.ndarray, optional
        int64 array of ``len(WORK_COUNTERS)`` that the numba core increments (diagnostics).

    Returns
    -------
    arc : numpy.ndarray
        float32 ``(n, nband, H, H)``, nanomaggies per pixel.
    magnification : numpy.ndarray
        float64 ``(n,)``, total lensed / total unlensed flux (see module docstring).

    Raises
    ------
    ValueError
        On any non-finite or out-of-range input, naming the argument and sample index (and
        band for PSF FWHMs).
    """
    _common_checks(stamp_size, pixscale, supersample, max_depth)
    work = _work_array(work)
    stamp_size = int(stamp_size)
    theta_e = _as_vec("theta_e", theta_e, None)
    n = theta_e.shape[0]
    vec = {
        name: _as_vec(name, val, n)
        for name, val in (
            ("lens_q", lens_q), ("lens_pa", lens_pa), ("shear_g1", shear_g1),
            ("shear_g2", shear_g2), ("src_x", src_x), ("src_y", src_y),
            ("src_reff", src_reff), ("src_n", src_n), ("src_q", src_q), ("src_pa", src_pa),
        )
    }
    reff, sn, sq = vec["src_reff"], vec["src_n"], vec["src_q"]
    _range_check("src_reff", reff, reff <= 0, "> 0 arcsec")
    _range_check("src_n", sn, (sn < N_MIN) | (sn > N_MAX), f"in [{N_MIN}, {N_MAX}]")
    _range_check("src_q", sq, (sq <= 0) | (sq > 1), "in (0, 1]")
    flux = _check_flux(src_flux_bands, n)
    nband = flux.shape[1]
    lens, amax, gamma = _lens_table(
        theta_e, vec["lens_q"], vec["lens_pa"], vec["shear_g1"], vec["shear_g2"]
    )
    kernels = _psf_kernels(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels)
    margin = kernels.shape[-1] // 2

    bn = np.atleast_1d(sersic_bn(sn))
    funit = np.atleast_1d(sersic_total_flux(1.0, reff, sn))
    rt = np.atleast_1d(sersic_truncation_radius(reff, sn, lost_fraction=SERSIC_LOST_FRACTION))
    sp = np.zeros((n, _NSP))
    sp[:, _SX], sp[:, _SY] = vec["src_x"], vec["src_y"]
    sp[:, _SC], sp[:, _SS] = np.cos(vec["src_pa"]), np.sin(vec["src_pa"])
    sp[:, _SQ], sp[:, _SREFF], sp[:, _SINVN], sp[:, _SBN] = sq, reff, 1.0 / sn, bn
    sp[:, _SRT], sp[:, _SFLUX] = rt, funit

    extent = (np.hypot(vec["src_x"], vec["src_y"]) + rt / np.sqrt(sq) + amax) / (1.0 - gamma)
    half = _grid_half(extent, stamp_size, pixscale, margin, magnification_grid, max_grid)
    p = stamp_size + 2 * margin
    region = np.zeros((n, p, p))
    totals = np.zeros(n)
    dummy = np.zeros((1, 1, 1))
    _render_chunk(
        lens, _KIND_SERSIC, sp, dummy, np.zeros(n, dtype=np.int64), float(pixscale), half,
        -(stamp_size // 2) - margin, region, _GXS, _GWS, _SERSIC_TOLS * _check_scale(tol_scale),
        int(supersample), int(max_depth), totals, work,
    )
    amps = flux / funit[:, None]
    return _finish(
        region, kernels, amps, totals, funit * (1.0 - SERSIC_LOST_FRACTION), stamp_size,
        fft_workers,
    )


def render_lensed_image(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_image,
    src_pixscale,
    src_flux_bands,
    psf_fwhm_arcsec=None,
    psf_beta: float = 3.5,
    supersample: int = 3,
    src_pa=None,
    psf_kernels=None,
    bands: Sequence[str] | None = None,
    tol_scale: float = 1.0,
    max_depth: int = 4,
    magnification_grid: float = 3.0,
    max_grid: float = 8.0,
    fft_workers: int = 1,
    work: np.ndarray | None = None,
):
    """Render lensed, PSF-convolved images of a pixelated source (e.g. a COSMOS galaxy).

    The source surface brightness is the bilinear interpolant of ``src_image`` (zero outside),
    placed with its pixel ``(h//2, w//2)`` at ``(src_x, src_y)``, its columns along ``+x``
    rotated by ``src_pa``, and scaled so that its total flux (``sum(src_image) *
    src_pixscale**2`` before scaling; the interpolant integrates to exactly that) equals
    ``src_flux_bands``. Surface brightness is conserved along rays; image-plane cells are
    refined until their source-plane footprint is below ``refine_tol`` source pixels.

    Parameters
    ----------
    stamp_size, pixscale, theta_e, lens_q, lens_pa, shear_g1, shear_g2, src_x, src_y
        As :func:`render_lensed_sersic`.
    src_image : array_like
        ``(h, w)`` shared by all samples, or ``(n, h, w)`` one per sample (surface brightness,
        any units; only its shape matters after normalisation). Sum must be positive.
    src_pixscale : float or array_like, shape (n,)
        Source pixel scale, arcsec/pixel (e.g. 0.03 for COSMOS F814W).
    src_flux_bands : array_like, shape (n, nband)
        Total unlensed source flux per band, nanomaggies.
    psf_fwhm_arcsec, psf_beta, supersample, psf_kernels, bands, magnification_grid, max_grid,
    fft_workers
        As :func:`render_lensed_sersic`.
    src_pa : array_like, shape (n,), optional
        Source rotation, radians CCW (default 0).
    tol_scale : float, optional
        Source pixels per Gauss-Legendre node spacing allowed across a cell footprint
        (default 1: one sample per source pixel).
    max_depth : int, optional
        Maximum 2x2 refinements below the ``supersample`` level (default 4).

    Returns
    -------
    arc : numpy.ndarray
        float32 ``(n, nband, H, H)``, nanomaggies per pixel.
    magnification : numpy.ndarray
        float64 ``(n,)``, lensed flux on the grid / unlensed flux.
    """
    _common_checks(stamp_size, pixscale, supersample, max_depth)
    work = _work_array(work)
    stamp_size = int(stamp_size)
    theta_e = _as_vec("theta_e", theta_e, None)
    n = theta_e.shape[0]
    vec = {
        name: _as_vec(name, val, n)
        for name, val in (
            ("lens_q", lens_q), ("lens_pa", lens_pa), ("shear_g1", shear_g1),
            ("shear_g2", shear_g2), ("src_x", src_x), ("src_y", src_y),
        )
    }
    pa = np.zeros(n) if src_pa is None else _as_vec("src_pa", src_pa, n)
    spix = _as_vec("src_pixscale", np.broadcast_to(np.asarray(src_pixscale, float), (n,)), n)
    _range_check("src_pixscale", spix, spix <= 0, "> 0 arcsec/pixel")
    imgs = np.asarray(src_image, dtype=np.float64)
    if imgs.ndim == 2:
        imgs = imgs[None]
        index = np.zeros(n, dtype=np.int64)
    elif imgs.ndim == 3 and imgs.shape[0] == n:
        index = np.arange(n, dtype=np.int64)
    else:
        msg = f"src_image must have shape (h, w) or ({n}, h, w), got {imgs.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(imgs)):
        msg = "src_image has non-finite values"
        raise ValueError(msg)
    sums = imgs.reshape(imgs.shape[0], -1).sum(axis=1)
    if np.any(sums <= 0):
        k = int(np.flatnonzero(sums <= 0)[0])
        msg = f"src_image[{k}] sum {sums[k]!r} must be positive"
        raise ValueError(msg)
    imgs = np.ascontiguousarray(imgs)
    flux = _check_flux(src_flux_bands, n)
    nband = flux.shape[1]
    lens, amax, gamma = _lens_table(
        theta_e, vec["lens_q"], vec["lens_pa"], vec["shear_g1"], vec["shear_g2"]
    )
    kernels = _psf_kernels(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels)
    margin = kernels.shape[-1] // 2

    sp = np.zeros((n, _NSP))
    sp[:, _SX], sp[:, _SY] = vec["src_x"], vec["src_y"]
    sp[:, _SC], sp[:, _SS] = np.cos(pa), np.sin(pa)
    sp[:, _SPIX] = spix
    sp[:, _SNORM] = 1.0 / (sums[index] * spix**2)  # unit total flux
    sp[:, _SFLUX] = 1.0
    rsrc = 0.5 * np.hypot(imgs.shape[1] + 2, imgs.shape[2] + 2) * spix
    extent = (np.hypot(vec["src_x"], vec["src_y"]) + rsrc + amax) / (1.0 - gamma)
    half = _grid_half(extent, stamp_size, pixscale, margin, magnification_grid, max_grid)
    p = stamp_size + 2 * margin
    region = np.zeros((n, p, p))
    totals = np.zeros(n)
    _render_chunk(
        lens, _KIND_IMAGE, sp, imgs, index, float(pixscale), half, -(stamp_size // 2) - margin,
        region, _GXS, _GWS, np.full(MAX_ORDER + 1, _check_scale(tol_scale)), int(supersample),
        int(max_depth), totals, work,
    )
    return _finish(region, kernels, flux, totals, np.ones(n), stamp_size, fft_workers)


def reference_render_lensed_sersic(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_reff,
    src_n,
    src_q,
    src_pa,
    src_flux_bands,
    psf_fwhm_arcsec,
    psf_beta: float = 3.5,
    supersample: int = 3,
):
    """Slow, obvious numpy reference of :func:`render_lensed_sersic` (stamp only).

    Uniform ``supersample x supersample`` midpoint sampling of every pixel of the stamp plus
    the PSF margin, an untruncated Sersic, and ``psf.convolve`` per band. No magnification.

    Returns
    -------
    numpy.ndarray
        float64 ``(n, nband, H, H)``, nanomaggies per pixel.
    """
    theta_e = np.atleast_1d(np.asarray(theta_e, dtype=np.float64))
    n = theta_e.shape[0]
    flux = np.asarray(src_flux_bands, dtype=np.float64).reshape(n, -1)
    fwhm = np.asarray(psf_fwhm_arcsec, dtype=np.float64).reshape(n, -1)
    _psf.check_fwhm(fwhm)
    args = [
        np.broadcast_to(np.asarray(a, dtype=np.float64), (n,))
        for a in (lens_q, lens_pa, shear_g1, shear_g2, src_x, src_y, src_reff, src_n, src_q,
                  src_pa)
    ]
    lq, lpa, g1, g2, sx, sy, reff, sn, sq, spa = args
    h = int(stamp_size)
    out = np.zeros((n, flux.shape[1], h, h))
    s = int(supersample)
    for i in range(n):
        k = max(int(_psf.moffat_size(f / pixscale, psf_beta)) for f in fwhm[i])
        m = k // 2
        idx = np.arange(-(h // 2) - m, h - h // 2 + m)
        sub = (np.arange(s) + 0.5) / s - 0.5
        coords = (idx[:, None] + sub[None, :]).ravel() * pixscale
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        ax, ay = sie_shear_deflection(xx, yy, theta_e[i], lq[i], lpa[i], g1[i], g2[i])
        dx, dy = xx - ax - sx[i], yy - ay - sy[i]
        xp = np.cos(spa[i]) * dx + np.sin(spa[i]) * dy
        yp = -np.sin(spa[i]) * dx + np.cos(spa[i]) * dy
        r = np.sqrt(sq[i] * xp**2 + yp**2 / sq[i])
        bn = sersic_bn(sn[i])
        unit = np.exp(-bn * ((r / reff[i]) ** (1.0 / sn[i]) - 1.0))
        npix = idx.size
        img = unit.reshape(npix, s, npix, s).mean(axis=(1, 3)) * pixscale**2
        funit = sersic_total_flux(1.0, reff[i], sn[i])
        for b in range(flux.shape[1]):
            ker = _psf.moffat_kernel(fwhm[i, b] / pixscale, psf_beta, size=k)
            conv = _psf.convolve(img, ker) * flux[i, b] / funit
            out[i, b] = conv[m : m + h, m : m + h]
    return out


__all__ = [
    "BLOCK",
    "SERSIC_LOST_FRACTION",
    "reference_render_lensed_sersic",
    "render_lensed_image",
    "render_lensed_sersic",
]

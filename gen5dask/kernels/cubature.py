"""Adaptive image-plane cubature of a lensed source over a sample's grid (numba).

Per sample (see :mod:`gen5dask.kernels.render` for the whole pipeline):

1. **Which blocks.** The grid is split into :data:`BLOCK` x :data:`BLOCK`-pixel blocks whose
   corners are ray traced; a block's source-plane footprint lies in the circle around the mean
   of its traced corners through the farthest corner, widened by the bound on the deviation of
   the lens map from its bilinear interpolant, ``side^2 / 4 * max|d^2 alpha|``
   (:func:`gen5dask.kernels.lensing.sie_second_derivative_bound`). Blocks whose circle misses the
   (truncated) source are skipped: no light is dropped by the selection.
2. **Which pixels.** In a kept block each pixel centre is traced together with the Jacobian
   ``J`` of the lens map (:func:`gen5dask.kernels.raytrace.trace_jacobian`); the pixel's
   footprint lies within ``h |J d|_max + h^2 / 4 max|d^2 alpha|`` of its traced centre
   (``d`` the corners of the unit square, ``h`` the pixel side), with a relative safety margin
   of :data:`JACOBIAN_SAFETY` for the interpolated Jacobian. Pixels whose disc misses the source
   are skipped. The pixel holding the lens centre (where the map is singular) uses the
   circumradius of its four traced corners instead. A block whose worst-case pixel (footprint
   bounded from the Jacobian at the block centre and the curvature bound,
   :func:`block_pixel_radius`; source values over the block's footprint disc) needs only its
   central sample (:func:`block_single_sample`: the source's wings and smooth parts, ~60 % of
   the active blocks of DR10-like injections) skips the per-pixel bounds; its pixels get the
   same central samples, so the render is bit-identical to the per-pixel path.
3. **How finely.** From the footprint, the relative change of the source across it (Sersic:
   ``relvar = 2 rho / sqrt(q) * max|d ln I / d r|``) picks the lowest Gauss-Legendre order
   ``m`` (``m x m`` nodes, ``m <= supersample``) whose error for an exponential profile stays
   below ~3e-4 of the pixel flux (:data:`SERSIC_TOLS`); when even ``supersample`` is not enough
   the cell is split 2x2, recursively (up to ``max_depth`` times). Cells holding the Sersic
   centre (a cusp unless n = 0.5) are split until they could hold less than
   :data:`CUSP_FLUX_FLOOR` of the flux; below ``I_eff`` the limits loosen as ``I^-1/2``.
   Blocks outside the stamp + PSF margin are integrated as single adaptive cells (only their
   total matters).
4. **Surface brightness is conserved**: each leaf contributes ``I(beta(theta)) * area``; pixel
   values are fluxes (per pixel, unit amplitude) and their sum over the grid is the lensed flux.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.lensing import sie_second_derivative_bound
from gen5dask.kernels.raytrace import (
    corner_footprint,
    fill_deflection_table,
    rect_distance,
    square_image_radius,
    table_intervals,
    trace,
    trace_jacobian,
)
from gen5dask.kernels.sources import (
    KIND_SERSIC,
    P_FLUX,
    P_INV_N,
    P_LIP,
    P_PIX,
    P_REFF,
    P_RTRUNC,
    sersic_log_gradient,
    sersic_peak_on_disc,
    source_misses,
    source_radius,
    source_value,
)

#: block side (pixels) of the coarse selection pass.
BLOCK = 8
#: a cell holding the Sersic centre is refined only while it could hold more than this
#: fraction of the source flux.
CUSP_FLUX_FLOOR = 1e-5
#: relative widening of Jacobian-based footprints (the interpolated Jacobian's error is ~1e-6).
JACOBIAN_SAFETY = 1e-3
#: stack capacity per recursion (>= supersample^2 + 3 * max_depth + 4).
STACK_SIZE = 4096
#: maximum Gauss-Legendre order accepted as ``supersample``.
MAX_ORDER = 8
#: Sersic limits on ``relvar`` (relative change across a cell footprint) per Gauss-Legendre
#: order 1..8; each keeps the rule's error for an exponential profile below ~3e-4 of the cell
#: flux (index 0 unused for Sersic sources).
SERSIC_TOLS = np.array([0.0, 0.2, 1.7, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0])

#: names of the optional work counters (``work=`` argument of the renderers).
WORK_COUNTERS = (
    "block_corner_traces", "active_blocks", "single_sample_pixels", "active_pixels", "cells",
    "gauss_nodes", "single_sample_blocks",
)
#: relative and absolute widening of the block-level bounds of :func:`block_single_sample`
#: (covers the ~1e-6 relative error of the interpolated Jacobian and rounding).
BLOCK_BOUND_SLACK = 1e-5


def gauss_legendre_tables() -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes on [-1, 1] and weights summing to 1 for orders 1..MAX_ORDER.

    Row ``m`` holds the ``m`` nodes (exact 0 for the middle node of odd orders) and weights.
    """
    gxs = np.zeros((MAX_ORDER + 1, MAX_ORDER))
    gws = np.zeros((MAX_ORDER + 1, MAX_ORDER))
    for m in range(1, MAX_ORDER + 1):
        x, w = np.polynomial.legendre.leggauss(m)
        x[np.abs(x) < 1e-15] = 0.0
        gxs[m, :m] = x
        gws[m, :m] = w / w.sum()
    return gxs, gws


GL_NODES, GL_WEIGHTS = gauss_legendre_tables()


@jit
def cell_order(bx, by, rho, area, kind, sp, img, tols, max_order, cusp_floor):
    """Gauss-Legendre order a cell needs; ``0`` means "split it".

    ``(bx, by)`` is the traced cell centre and ``rho`` its footprint radius (arcsec),
    ``area`` the cell area (arcsec^2). Sersic: ``relvar = 2 rho / sqrt(q) * max|d ln I / d r|``
    over the footprint is compared with ``tols[m]``; below ``I_eff`` the limit grows as
    ``I^(-1/2)``, and a cell that cannot hold more than ``cusp_floor`` of the source flux
    is never split (it gets ``max_order``). Image source: one sample per source pixel across
    the footprint (``tols[0]`` source pixels per node spacing).
    """
    if kind == KIND_SERSIC:
        lip = sp[P_LIP]
        r = source_radius(bx, by, kind, sp)
        r_lo = max(r - lip * rho, 0.0)
        if r_lo > sp[P_RTRUNC]:
            return 1
        # |d ln I / d r| decreases with r for n >= 1 and increases for n < 1
        if sp[P_INV_N] <= 1.0:
            g = sersic_log_gradient(r_lo, sp)
        else:
            g = sersic_log_gradient(r + lip * rho, sp)
        relvar = 2.0 * lip * rho * g
        if relvar <= tols[1]:
            return 1
        imax = sersic_peak_on_disc(r_lo, sp)
        faint = imax * area <= cusp_floor * sp[P_FLUX]
        if not faint and r_lo <= 0.0 and sp[P_INV_N] < 2.0:
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
    if source_misses(bx, by, rho, kind, sp, img):
        return 1
    need = 2.0 * rho / (tols[0] * sp[P_PIX])
    if not need <= max_order:  # also catches rho = inf (cell holds the lens centre)
        return 0
    return max(int(np.ceil(need)), 1)


@jit
def cell_gauss_legendre(cx, cy, h, lens, tab, kind, sp, img, gx, gw, bx0, by0):
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
                bx, by = trace(x, y, lens, tab)
            acc += gw[i] * gw[j] * source_value(bx, by, kind, sp, img)
    return acc


@jit
def integrate_cell(
    xc, yc, side, jac, lens, tab, kind, sp, img, gxs, gws, tols, max_order,
    max_depth, cusp_floor, stack, stats,
):
    """Flux (unit amplitude) of a square image-plane cell centred at (xc, yc), side ``side``.

    ``jac`` is the footprint radius per unit cell side. Each cell is integrated with the lowest
    Gauss-Legendre order that :func:`cell_order` allows, or split 2x2 (depth-first, explicit
    stack) when even ``max_order`` is not enough.
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
        bx, by = trace(cx, cy, lens, tab)
        d = rect_distance(cx - 0.5 * h, cx + 0.5 * h, cy - 0.5 * h, cy + 0.5 * h)
        rho_c = jac * h + 0.25 * h * h * sie_second_derivative_bound(b, q, d)
        m = cell_order(bx, by, rho_c, h * h, kind, sp, img, tols, max_order, cusp_floor)
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
            acc += source_value(bx, by, kind, sp, img) * h * h
        else:
            stats[5] += m * m
            acc += cell_gauss_legendre(
                cx, cy, h, lens, tab, kind, sp, img, gxs[m, :m], gws[m, :m], bx, by
            ) * h * h
    return acc


@jit
def block_pixel_radius(j11, j12, j21, j22, side_b, pix, curv):
    """Bound (arcsec) on the source-plane footprint radius of every pixel of a block.

    ``J`` is the lens-map Jacobian at the block centre and ``curv`` bounds every directional
    second derivative of the deflection over the block
    (:func:`gen5dask.kernels.lensing.sie_second_derivative_bound` at the block's distance).
    By polarisation ``|(J(p) - J(c)) w| <= curv |p - c| |w|``; a pixel centre lies within
    ``(side_b - pix) / sqrt(2)`` of the block centre and the unit-square corners have
    ``|d| = 1 / sqrt(2)``, so the per-pixel bound of :func:`render_sample`
    (``(1 + JACOBIAN_SAFETY) |J d|_max pix + pix^2 / 4 curv``) is at most the value returned.
    """
    if not curv < np.inf:
        return np.inf
    jmax = square_image_radius(j11, j12, j21, j22) + 0.5 * curv * (side_b - pix)
    jmax = jmax * (1.0 + BLOCK_BOUND_SLACK) + BLOCK_BOUND_SLACK
    return (1.0 + JACOBIAN_SAFETY) * jmax * pix + 0.25 * pix * pix * curv


@jit
def block_single_sample(mx, my, rm, rpix, kind, sp, img, tols):
    """True if every pixel of a block needs only its central sample (:func:`cell_order` 1).

    The block's pixel centres trace into the disc ``(mx, my, rm)`` and their footprints have
    radius at most ``rpix`` (:func:`block_pixel_radius`). Sersic: the worst case over that disc
    of ``relvar = 2 rho / sqrt(q) * max|d ln I / d r|`` (with the ``I^(1/2)`` loosening below
    ``I_eff``) must be below ``tols[1]``, and no footprint may reach the source centre. Image:
    the footprint must span at most ``tols[0] / 2`` source pixels. Every quantity is a monotone
    bound of the per-pixel one, so the pixels would all get order 1 (or miss the source, where
    the central sample is exactly 0) in the per-pixel test as well.
    """
    if not rpix < np.inf:
        return False
    slack = 1.0 + BLOCK_BOUND_SLACK
    if kind == KIND_SERSIC:
        lip = sp[P_LIP]
        r = source_radius(mx, my, kind, sp)
        reach = lip * (rm + rpix) * slack + BLOCK_BOUND_SLACK * sp[P_REFF]
        r_lo = r - reach
        if r_lo <= 0.0:
            return False
        # |d ln I / d r| decreases with r for n >= 1 and increases for n < 1
        if sp[P_INV_N] <= 1.0:
            g = sersic_log_gradient(r_lo, sp)
        else:
            g = sersic_log_gradient(r + reach, sp)
        relvar = 2.0 * lip * rpix * g
        imax = sersic_peak_on_disc(r_lo, sp)
        if imax < 1.0:
            relvar = relvar * np.sqrt(imax)
        return relvar * slack <= tols[1]
    return 2.0 * rpix * slack <= tols[0] * sp[P_PIX]


@jit
def render_sample(
    lens, tab, kind, sp, img, pix, lo, nblk, a_lo, region, gxs, gws, tols, max_order,
    max_depth, cusp_floor, cbx, cby, stack, stats,
):
    """Integrate one sample over its grid; fill ``region`` (stamp + margin); return total flux.

    The grid covers pixel indices ``[lo, lo + nblk * BLOCK)`` on both axes (pixel ``i`` is
    centred at ``i * pix`` arcsec); ``region`` covers ``[a_lo, a_lo + region.shape[0])``.
    ``cbx, cby`` are scratch arrays of at least ``(nblk + 1, nblk + 1)``.
    """
    b = lens[0]
    q = lens[2]
    bs = BLOCK
    npx = region.shape[0]
    a_hi = a_lo + npx
    safety = 1.0 + JACOBIAN_SAFETY
    for bi in range(nblk + 1):  # block corners: edge index e sits at (e - 0.5) * pix
        y = (lo + bi * bs - 0.5) * pix
        for bj in range(nblk + 1):
            x = (lo + bj * bs - 0.5) * pix
            cbx[bi, bj], cby[bi, bj] = trace(x, y, lens, tab)
    total = 0.0
    stats[0] += (nblk + 1) * (nblk + 1)
    side_b = bs * pix
    area = pix * pix
    for bi in range(nblk):
        y0 = (lo + bi * bs - 0.5) * pix
        pi0 = lo + bi * bs
        for bj in range(nblk):
            x0 = (lo + bj * bs - 0.5) * pix
            pj0 = lo + bj * bs
            mx, my, r = corner_footprint(
                cbx[bi, bj], cby[bi, bj], cbx[bi, bj + 1], cby[bi, bj + 1],
                cbx[bi + 1, bj], cby[bi + 1, bj], cbx[bi + 1, bj + 1], cby[bi + 1, bj + 1],
            )
            d = rect_distance(x0, x0 + side_b, y0, y0 + side_b)
            curv = sie_second_derivative_bound(b, q, d)
            rm = r + 0.25 * side_b * side_b * curv
            if source_misses(mx, my, rm, kind, sp, img):
                continue
            stats[1] += 1
            outside = pi0 + bs <= a_lo or pi0 >= a_hi or pj0 + bs <= a_lo or pj0 >= a_hi
            if outside:
                # only the total matters here: integrate the block as one adaptive cell
                total += integrate_cell(
                    x0 + 0.5 * side_b, y0 + 0.5 * side_b, side_b, r / side_b, lens, tab, kind,
                    sp, img, gxs, gws, tols, max_order, max_depth + 3, cusp_floor, stack, stats,
                )
                continue
            # a block whose every pixel needs one sample (the source's wings, smooth parts)
            # skips the per-pixel bounds: the same central samples, the same sums
            xb = x0 + 0.5 * side_b
            yb = y0 + 0.5 * side_b
            jb = trace_jacobian(xb, yb, lens, tab)
            rpix = block_pixel_radius(jb[2], jb[3], jb[4], jb[5], side_b, pix, curv)
            if block_single_sample(mx, my, rm, rpix, kind, sp, img, tols):
                stats[6] += 1
                for k in range(bs * bs):  # row by row, as in the per-pixel loop below
                    pi, pj = divmod(k, bs)
                    # trace_jacobian, not trace: the per-pixel path's positions to the last bit
                    bx, by = trace_jacobian(x0 + (pj + 0.5) * pix, y0 + (pi + 0.5) * pix,
                                            lens, tab)[:2]
                    val = source_value(bx, by, kind, sp, img) * area
                    if val == 0.0:
                        continue  # outside the source: nothing to add or store
                    stats[3] += 1
                    stats[2] += 1
                    total += val
                    ri = pi0 + pi - a_lo
                    rj = pj0 + pj - a_lo
                    if 0 <= ri < npx and 0 <= rj < npx:
                        region[ri, rj] = val
                continue
            for pi in range(bs):
                yc = y0 + (pi + 0.5) * pix
                ri = pi0 + pi - a_lo
                for pj in range(bs):
                    xc = x0 + (pj + 0.5) * pix
                    bx, by, j11, j12, j21, j22 = trace_jacobian(xc, yc, lens, tab)
                    dp = rect_distance(xc - 0.5 * pix, xc + 0.5 * pix, yc - 0.5 * pix,
                                       yc + 0.5 * pix)
                    if dp > 0.0:
                        jac = safety * square_image_radius(j11, j12, j21, j22)
                    else:
                        # the pixel holds the lens centre, where the map is singular: use the
                        # circumradius of its traced corners (its curvature bound is infinite)
                        ax_, ay_ = trace(xc - 0.5 * pix, yc - 0.5 * pix, lens, tab)
                        bx_, by_ = trace(xc + 0.5 * pix, yc - 0.5 * pix, lens, tab)
                        cx_, cy_ = trace(xc - 0.5 * pix, yc + 0.5 * pix, lens, tab)
                        dx_, dy_ = trace(xc + 0.5 * pix, yc + 0.5 * pix, lens, tab)
                        jac = corner_footprint(ax_, ay_, bx_, by_, cx_, cy_, dx_, dy_)[2] / pix
                    rm = jac * pix + 0.25 * area * sie_second_derivative_bound(b, q, dp)
                    if source_misses(bx, by, rm, kind, sp, img):
                        continue
                    stats[3] += 1
                    m = cell_order(bx, by, rm, area, kind, sp, img, tols, max_order, cusp_floor)
                    if m == 1:
                        stats[2] += 1  # fast path: one central sample is enough
                        val = source_value(bx, by, kind, sp, img) * area
                    else:
                        val = integrate_cell(
                            xc, yc, pix, jac, lens, tab, kind, sp, img, gxs, gws, tols,
                            max_order, max_depth, cusp_floor, stack, stats,
                        )
                    total += val
                    rj = pj0 + pj - a_lo
                    if 0 <= ri < npx and 0 <= rj < npx:
                        region[ri, rj] = val
    return total


@jit
def render_chunk(
    lens_arr, kind, sp_arr, imgs, img_index, pix, half, a_lo, region, gxs, gws, tols,
    max_order, max_depth, cusp_floor, totals, stats,
):
    """Integrate every sample of a chunk; ``half[i]`` is sample i's grid half-size (pixels).

    ``lens_arr`` is ``(n, 7)`` from :func:`gen5dask.kernels.raytrace.lens_tuples`, ``sp_arr``
    ``(n, N_SOURCE_PARAMS)``, ``imgs[img_index[i]]`` sample i's source image (ignored for a
    Sersic), ``region`` ``(n, P, P)`` zeroed output (stamp + margin, unit amplitude, flux per
    pixel), ``cusp_floor`` the flux fraction below which cusp cells stop splitting (Sersic),
    ``totals`` ``(n,)`` the lensed flux on the whole grid, ``stats`` the work counters.
    Scratch arrays are allocated once per chunk.
    """
    n = lens_arr.shape[0]
    nmax = 0
    for i in range(n):
        nb = (2 * half[i] + 1 + BLOCK - 1) // BLOCK
        nmax = max(nmax, nb)
    cbx = np.empty((nmax + 1, nmax + 1))
    cby = np.empty((nmax + 1, nmax + 1))
    stack = np.empty((STACK_SIZE, 4))
    nint_max = 0
    for i in range(n):
        nint_max = max(nint_max, table_intervals(lens_arr[i, 2]))
    tab = np.empty((2, nint_max + 4, 2))
    for i in range(n):
        nint = table_intervals(lens_arr[i, 2])
        fill_deflection_table(
            tab, nint, lens_arr[i, 0], lens_arr[i, 1], lens_arr[i, 2], lens_arr[i, 3],
            lens_arr[i, 4],
        )
        lens = (
            lens_arr[i, 0], lens_arr[i, 1], lens_arr[i, 2], lens_arr[i, 3], lens_arr[i, 4],
            lens_arr[i, 5], lens_arr[i, 6], 0.5 * nint,
        )
        nb = (2 * half[i] + 1 + BLOCK - 1) // BLOCK
        totals[i] = render_sample(
            lens, tab, kind, sp_arr[i], imgs[img_index[i]], pix, -half[i], nb, a_lo,
            region[i], gxs, gws, tols, max_order, max_depth, cusp_floor, cbx, cby, stack, stats,
        )


__all__ = [
    "BLOCK",
    "BLOCK_BOUND_SLACK",
    "CUSP_FLUX_FLOOR",
    "GL_NODES",
    "GL_WEIGHTS",
    "JACOBIAN_SAFETY",
    "MAX_ORDER",
    "SERSIC_TOLS",
    "STACK_SIZE",
    "WORK_COUNTERS",
    "block_pixel_radius",
    "block_single_sample",
    "cell_gauss_legendre",
    "cell_order",
    "gauss_legendre_tables",
    "integrate_cell",
    "render_chunk",
    "render_sample",
]

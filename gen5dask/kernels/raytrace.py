"""Ray tracing through SIE + external shear with a per-sample direction table (numba).

The SIE deflection depends only on the direction from the lens centre (it is homogeneous of
degree 0 up to lenstronomy's ``1e-10`` arcsec core), so each sample tabulates it once along the
directions ``(1, t)`` and ``(t, 1)``, ``|t| <= 1`` (spacing ``0.02 min(q, 0.5)``), and every ray
is a 4-point Lagrange interpolation of that table plus the (linear) shear: ~3x cheaper than the
exact ``arctan``/``arctanh`` evaluation of :mod:`gen5dask.kernels.lensing` and within ~1e-8
theta_E of it (tested). Rays within :data:`EXACT_RADIUS` of the lens centre use the exact
deflection. :func:`trace_jacobian` also returns the Jacobian ``d beta / d theta`` of the lens
map from the derivative of the same interpolant (the renderer's cell footprints).

A *lens tuple* is ``(b, s, q, cos pa, sin pa, g1, g2, 1 / h)``: the SIE constants of
:func:`gen5dask.kernels.lensing.sie_constants` (arcsec), the axis ratio, the position angle's
cosine and sine, the shear and the inverse table spacing. Positions are arcsec in the stamp
frame (DESIGN §4).
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.lensing import (
    S_SCALE_ARCSEC,
    sie_max_deflection,
    sie_shear_deflection_point,
)
from gen5dask.kernels.render_checks import range_check

#: closer than this to the lens centre (arcsec) deflections are evaluated exactly (the SIE core
#: breaks the degree-0 homogeneity the direction table relies on only at ~1e-10 arcsec).
EXACT_RADIUS = 0.01
#: direction-table node spacing per unit of min(lens_q, 0.5) (see :func:`table_intervals`).
TABLE_STEP = 0.02
#: half-width (arcsec) of the finite-difference step of the exact Jacobian near the centre.
_FD_STEP = 1e-6


@jit
def table_intervals(q):
    """Intervals of the direction table over t in [-1, 1]: spacing ``0.02 min(q, 0.5)``."""
    return int(np.ceil(2.0 / (TABLE_STEP * min(q, 0.5))))


@jit
def fill_deflection_table(tab, nint, b, s, q, cpa, spa):
    """Tabulate the SIE deflection (no shear) along the directions ``(1, t)`` and ``(t, 1)``.

    ``alpha(x, y) = sign(x) A(y / x)`` for ``|x| >= |y|`` and ``sign(y) B(x / y)`` otherwise.
    ``tab[0, k]`` holds ``A`` and ``tab[1, k]`` holds ``B`` at ``t_k = -1 + (k - 1) h``,
    ``h = 2 / nint``, ``k = 0 .. nint + 3`` (one node of padding on each side for the 4-point
    stencil). ``tab`` must have shape ``(2, >= nint + 4, 2)``; it is overwritten.
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
def lagrange_weights(t, inv_h):
    """Node index ``k`` and 4-point Lagrange weights of direction ``t`` in the table.

    ``u = (t + 1) / h + 1 >= 1``; ``k = floor(u)``, ``f = u - k``; the interpolant is
    ``w0 T[k-1] + w1 T[k] + w2 T[k+1] + w3 T[k+2]``. Returns ``(k, f, w0, w1, w2, w3)``.
    """
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
    return k, f, w0, w1, w2, w3


@jit
def trace(x, y, lens, tab):
    """Source-plane position (arcsec) of image-plane point ``(x, y)`` (arcsec), SIE + shear.

    Away from the lens centre (``r >= EXACT_RADIUS``) the SIE part is the 4-point Lagrange
    interpolant of the direction table (error < ~1e-8 theta_E, tested); closer in, the exact
    deflection is evaluated.
    """
    b, s, q, cpa, spa, g1, g2, inv_h = lens
    if x * x + y * y < EXACT_RADIUS * EXACT_RADIUS:
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
    k, f, w0, w1, w2, w3 = lagrange_weights(t, inv_h)
    ax = sg * (w0 * tab[sec, k - 1, 0] + w1 * tab[sec, k, 0] + w2 * tab[sec, k + 1, 0]
               + w3 * tab[sec, k + 2, 0])
    ay = sg * (w0 * tab[sec, k - 1, 1] + w1 * tab[sec, k, 1] + w2 * tab[sec, k + 1, 1]
               + w3 * tab[sec, k + 2, 1])
    return x - ax - (g1 * x + g2 * y), y - ay - (g2 * x - g1 * y)


@jit
def trace_jacobian(x, y, lens, tab):
    """Source position and lens-map Jacobian at ``(x, y)``: ``(bx, by, j11, j12, j21, j22)``.

    ``j_ab = d beta_a / d theta_b`` (dimensionless). Away from the centre the SIE part is the
    derivative of the same Lagrange interpolant as :func:`trace` (relative error ~1e-6, well
    inside the safety factor of the renderer's footprint bounds); within ``EXACT_RADIUS`` it is
    a central finite difference of the exact deflection (the renderer never relies on it there:
    its curvature bound is infinite at the centre).
    """
    b, s, q, cpa, spa, g1, g2, inv_h = lens
    if x * x + y * y < EXACT_RADIUS * EXACT_RADIUS:
        ax, ay = sie_shear_deflection_point(x, y, b, s, q, cpa, spa, g1, g2)
        e = _FD_STEP
        axp, ayp = sie_shear_deflection_point(x + e, y, b, s, q, cpa, spa, g1, g2)
        axm, aym = sie_shear_deflection_point(x - e, y, b, s, q, cpa, spa, g1, g2)
        bxp, byp = sie_shear_deflection_point(x, y + e, b, s, q, cpa, spa, g1, g2)
        bxm, bym = sie_shear_deflection_point(x, y - e, b, s, q, cpa, spa, g1, g2)
        inv = 0.5 / e
        return (x - ax, y - ay, 1.0 - (axp - axm) * inv, -(bxp - bxm) * inv,
                -(ayp - aym) * inv, 1.0 - (byp - bym) * inv)
    if abs(x) >= abs(y):
        inv_d = 1.0 / x
        t = y * inv_d
        sec = 0
        sg = 1.0 if x > 0.0 else -1.0
    else:
        inv_d = 1.0 / y
        t = x * inv_d
        sec = 1
        sg = 1.0 if y > 0.0 else -1.0
    k, f, w0, w1, w2, w3 = lagrange_weights(t, inv_h)
    ff = f * f
    d0 = -(3.0 * ff - 6.0 * f + 2.0) * (1.0 / 6.0)
    d1 = 0.5 * (3.0 * ff - 4.0 * f - 1.0)
    d2 = -0.5 * (3.0 * ff - 2.0 * f - 2.0)
    d3 = (3.0 * ff - 1.0) * (1.0 / 6.0)
    t0x = tab[sec, k - 1, 0]
    t1x = tab[sec, k, 0]
    t2x = tab[sec, k + 1, 0]
    t3x = tab[sec, k + 2, 0]
    t0y = tab[sec, k - 1, 1]
    t1y = tab[sec, k, 1]
    t2y = tab[sec, k + 1, 1]
    t3y = tab[sec, k + 2, 1]
    ax = sg * (w0 * t0x + w1 * t1x + w2 * t2x + w3 * t3x)
    ay = sg * (w0 * t0y + w1 * t1y + w2 * t2y + w3 * t3y)
    # dA/dt = dA/du * inv_h; dt/d(other) = 1/d, dt/d(own) = -t/d
    sx = sg * inv_h * inv_d * (d0 * t0x + d1 * t1x + d2 * t2x + d3 * t3x)
    sy = sg * inv_h * inv_d * (d0 * t0y + d1 * t1y + d2 * t2y + d3 * t3y)
    if sec == 0:  # t = y / x
        axx, axy, ayx, ayy = -t * sx, sx, -t * sy, sy
    else:  # t = x / y
        axx, axy, ayx, ayy = sx, -t * sx, sy, -t * sy
    return (x - ax - (g1 * x + g2 * y), y - ay - (g2 * x - g1 * y),
            1.0 - axx - g1, -axy - g2, -ayx - g2, 1.0 - ayy + g1)


@jit
def rect_distance(x0, x1, y0, y1):
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
def corner_footprint(ax, ay, bx, by, cx_, cy_, dx_, dy_):
    """Centroid and circumscribed radius of four traced corners."""
    mx = 0.25 * (ax + bx + cx_ + dx_)
    my = 0.25 * (ay + by + cy_ + dy_)
    r2 = max(
        max((ax - mx) ** 2 + (ay - my) ** 2, (bx - mx) ** 2 + (by - my) ** 2),
        max((cx_ - mx) ** 2 + (cy_ - my) ** 2, (dx_ - mx) ** 2 + (dy_ - my) ** 2),
    )
    return mx, my, np.sqrt(r2)


@jit
def square_image_radius(j11, j12, j21, j22):
    """Largest ``|J d|`` over the corners ``d = (+-1, +-1) / 2`` of a unit square (per side).

    The image of a square of side ``h`` centred at ``c`` under the linear map ``J`` lies
    within ``h`` times this radius of ``J c`` (the image is a parallelogram; its farthest point
    from the centre is a corner).
    """
    a2 = (j11 + j12) ** 2 + (j21 + j22) ** 2
    b2 = (j11 - j12) ** 2 + (j21 - j22) ** 2
    return 0.5 * np.sqrt(max(a2, b2))


def lens_tuples(theta_e, lens_q, lens_pa, shear_g1, shear_g2):
    """Per-sample lens constants ``(n, 7)`` (b, s, q, cos pa, sin pa, g1, g2), max |alpha|, |g|.

    Inputs are validated float64 vectors of one length ``n`` (arcsec, radians); raises
    ``ValueError`` naming the argument and sample index for out-of-range values.
    """
    n = theta_e.shape[0]
    range_check("theta_e", theta_e, theta_e < 0, ">= 0 arcsec")
    range_check("lens_q", lens_q, (lens_q <= 0) | (lens_q > 1), "in (0, 1]")
    gamma = np.hypot(shear_g1, shear_g2)
    range_check("shear_g1", shear_g1, gamma >= 0.9, "such that |(g1, g2)| < 0.9")
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


__all__ = [
    "EXACT_RADIUS",
    "TABLE_STEP",
    "corner_footprint",
    "fill_deflection_table",
    "lagrange_weights",
    "lens_tuples",
    "rect_distance",
    "square_image_radius",
    "table_intervals",
    "trace",
    "trace_jacobian",
]

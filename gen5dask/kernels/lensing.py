"""SIE + external-shear deflections (numba), matched to lenstronomy's ``SIE`` and ``SHEAR``.

Coordinate convention (DESIGN §4): positions are arcsec in the stamp frame, ``x`` along columns
and ``y`` along rows with the origin at the centre pixel ``(H//2, W//2)``; angles are radians
counter-clockwise from ``+x``. Our ``(x, y)`` are passed to lenstronomy *unchanged* as its
``(x, y)`` (lenstronomy's first coordinate is "RA-like"); that is, the stamp frame is used as
lenstronomy's angular frame with an identity pixel-to-angle matrix ``diag(pixscale, pixscale)``.
Under this mapping our deflections equal lenstronomy's to floating-point accuracy.

The lens is lenstronomy's ``SIE`` (the NIE of Keeton & Kochanek 1998 with lenstronomy's tiny core
``s_scale = 1e-10`` arcsec, which also makes the exact centre finite) with the Einstein radius in
lenstronomy's product-averaged convention and ellipticity

    e = (1 - q) / (1 + q),  e1 = e cos(2 pa),  e2 = e sin(2 pa),

i.e. the major axis lies at angle ``pa`` from ``+x``. External shear is lenstronomy's ``SHEAR``
with ``ra_0 = dec_0 = 0``: ``alpha = (g1 x + g2 y, g2 x - g1 y)``.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit

#: lenstronomy's SIE core radius (arcsec); physically negligible, keeps the centre finite.
S_SCALE_ARCSEC = 1e-10
#: below this value of sqrt(1 - q^2) the q -> 1 series is used (exact to float64 there).
_E_SERIES = 1e-7


@jit
def sie_constants(theta_e, q):
    """Major-axis normalisation ``b`` and core ``s`` (arcsec) of lenstronomy's SIE.

    Parameters
    ----------
    theta_e : float
        Einstein radius, arcsec (lenstronomy's product-averaged convention).
    q : float
        Axis ratio minor/major, ``0 < q <= 1``.

    Returns
    -------
    b, s : float
        ``b = theta_e * sqrt(q)`` and ``s = S_SCALE_ARCSEC / sqrt(q)``, arcsec.
    """
    sq = np.sqrt(q)
    return theta_e * sq, S_SCALE_ARCSEC / sq


@jit
def sie_major_axis_deflection(x, y, b, s, q):
    """Deflection (arcsec) of the NIE in its major-axis frame (Keeton & Kochanek 1998).

    ``x`` is along the major axis. Uses the q -> 1 series when ``sqrt(1 - q^2) < 1e-7``.
    """
    e2 = (1.0 - q) * (1.0 + q)
    psi = np.sqrt(q * q * (s * s + x * x) + y * y)
    zx = x / (psi + s)
    zy = y / (psi + q * q * s)
    if e2 < _E_SERIES * _E_SERIES:
        ax = b * zx * (1.0 - e2 * zx * zx / 3.0)
        ay = b * zy * (1.0 + e2 * zy * zy / 3.0)
    else:
        e = np.sqrt(e2)
        ax = b / e * np.arctan(e * zx)
        ay = b / e * np.arctanh(e * zy)
    return ax, ay


@jit
def sie_shear_deflection_point(x, y, b, s, q, cpa, spa, g1, g2):
    """Deflection (arcsec) at one point for precomputed lens constants.

    ``cpa, spa`` are cos and sin of the lens position angle.
    """
    xr = cpa * x + spa * y
    yr = -spa * x + cpa * y
    axr, ayr = sie_major_axis_deflection(xr, yr, b, s, q)
    ax = cpa * axr - spa * ayr + g1 * x + g2 * y
    ay = spa * axr + cpa * ayr + g2 * x - g1 * y
    return ax, ay


@jit
def _deflect_array(x, y, b, s, q, cpa, spa, g1, g2, ax, ay):
    for i in range(x.size):
        ax[i], ay[i] = sie_shear_deflection_point(x[i], y[i], b, s, q, cpa, spa, g1, g2)


def _check_lens(theta_e: float, q: float, pa: float, g1: float, g2: float) -> None:
    for name, v in (("theta_e", theta_e), ("q", q), ("pa", pa), ("g1", g1), ("g2", g2)):
        if not np.isfinite(v):
            msg = f"lens parameter {name}={v!r} is not finite"
            raise ValueError(msg)
    if theta_e < 0:
        msg = f"lens parameter theta_e={theta_e!r} must be >= 0 arcsec"
        raise ValueError(msg)
    if not 0.0 < q <= 1.0:
        msg = f"lens parameter q={q!r} must be in (0, 1]"
        raise ValueError(msg)


def sie_shear_deflection(x, y, theta_e, q, pa, g1, g2):
    """Deflection of an SIE plus external shear at arbitrary positions.

    Parameters
    ----------
    x, y : array_like
        Image-plane positions, arcsec, stamp frame (see module docstring). Any matching shape.
    theta_e : float
        Einstein radius, arcsec (lenstronomy's product-averaged convention).
    q : float
        Lens axis ratio (minor/major), ``0 < q <= 1``.
    pa : float
        Lens major-axis position angle, radians CCW from ``+x``.
    g1, g2 : float
        External shear components (dimensionless), lenstronomy ``SHEAR`` with zero origin.

    Returns
    -------
    alpha_x, alpha_y : numpy.ndarray
        Deflection components, arcsec, float64, shape of ``x``. The source-plane position is
        ``(x - alpha_x, y - alpha_y)``.

    Raises
    ------
    ValueError
        If a lens parameter is non-finite or out of range, naming it.
    """
    theta_e, q, pa, g1, g2 = (float(v) for v in (theta_e, q, pa, g1, g2))
    _check_lens(theta_e, q, pa, g1, g2)
    xa, ya = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    xf = np.ascontiguousarray(xa).ravel()
    yf = np.ascontiguousarray(ya).ravel()
    ax = np.empty_like(xf)
    ay = np.empty_like(xf)
    b, s = sie_constants(theta_e, q)
    _deflect_array(xf, yf, b, s, q, np.cos(pa), np.sin(pa), g1, g2, ax, ay)
    return ax.reshape(xa.shape), ay.reshape(xa.shape)


@jit
def sie_max_deflection(b, q):
    """Upper bound (arcsec) on ``|alpha|`` of the SIE (no shear) anywhere in the plane."""
    e2 = (1.0 - q) * (1.0 + q)
    if e2 < _E_SERIES * _E_SERIES:
        return b * np.sqrt(1.0 + 1.0 / (q * q))
    e = np.sqrt(e2)
    return b / e * np.hypot(np.arctan(e / q), np.arctanh(e))


@jit
def sie_second_derivative_bound(b, q, d):
    """Bound on any directional second derivative of the SIE deflection at distance ``d``.

    The SIE deflection is homogeneous of degree 0, so its second derivatives scale as
    ``b / d**2`` times a function of angle and ``q``; ``1.5 b / (q**2 d**2)`` bounds the
    numerically maximised angular factor for ``0.05 <= q <= 1`` (checked in the tests).
    Returns 0 for ``b <= 0`` (no lens) and ``inf`` for ``d <= 0``.
    """
    if b <= 0.0:
        return 0.0
    if d <= 0.0:
        return np.inf
    return 1.5 * b / (q * q * d * d)


__all__ = [
    "S_SCALE_ARCSEC",
    "sie_constants",
    "sie_major_axis_deflection",
    "sie_max_deflection",
    "sie_second_derivative_bound",
    "sie_shear_deflection",
    "sie_shear_deflection_point",
]

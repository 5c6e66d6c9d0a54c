"""Selection function: completeness of held-out injections in 1-D and 2-D bins (DESIGN §7).

A bin's completeness is ``k / n`` where ``n`` counts the injections whose binned quantity falls
in ``[lo, hi)`` and ``k`` those called lenses at the operating point (``score > threshold``);
each bin carries a Wilson interval. Values outside the edges (and NaN) are not counted. Edges may
end in ``inf`` for an open top bin; in the returned JSON-ready dicts a non-finite edge is ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gen5dask.evaluate.stats import finite_or_none, wilson_interval

__all__ = ["completeness_1d", "completeness_2d", "edges_to_json"]


def edges_to_json(edges: Sequence[float]) -> list[float | None]:
    """Bin edges as a JSON list (``None`` for an infinite edge)."""
    return [finite_or_none(e) for e in edges]


def _check_edges(edges: Sequence[float], name: str) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.isnan(e)) or np.any(np.diff(e) <= 0):
        msg = f"{name}: bin edges must be >= 2 strictly increasing numbers, got {list(edges)}"
        raise ValueError(msg)
    return e


def _bin_index(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Bin of each value in half-open bins ``[e[i], e[i+1])``; -1 outside or NaN."""
    idx = np.searchsorted(e, x, side="right") - 1
    idx[(idx < 0) | (idx >= e.size - 1) | ~np.isfinite(x)] = -1
    return idx


def completeness_1d(
    values: np.ndarray,
    passed: np.ndarray,
    edges: Sequence[float],
    *,
    conf: float = 0.95,
    name: str = "quantity",
) -> dict:
    """Completeness of injections binned in one quantity.

    Parameters
    ----------
    values : array_like of float
        Binned quantity per injection (e.g. theta_E/PSF FWHM, arc_snr, psfdepth_r in AB mag).
    passed : array_like of bool
        Whether each injection is called a lens at the operating point.
    edges : sequence of float
        Strictly increasing bin edges (same unit as ``values``); bins are ``[lo, hi)``.
    conf : float
        Confidence level of the Wilson intervals.
    name : str
        Name of the quantity (reported, and used in error messages).

    Returns
    -------
    dict
        ``{"quantity", "edges", "n", "k", "completeness", "lo", "hi"}``; per-bin lists, with
        ``None`` completeness/interval for empty bins.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    p = np.asarray(passed, dtype=bool).ravel()
    if x.shape != p.shape:
        msg = f"completeness_1d({name}): values {x.shape} and passed {p.shape} differ"
        raise ValueError(msg)
    e = _check_edges(edges, f"completeness_1d({name})")
    idx = _bin_index(x, e)
    nb = e.size - 1
    ok = idx >= 0
    n = np.bincount(idx[ok], minlength=nb)
    k = np.bincount(idx[ok], weights=p[ok].astype(np.float64), minlength=nb).astype(np.int64)
    comp, lo, hi = [], [], []
    for ki, ni in zip(k.tolist(), n.tolist(), strict=True):
        wl, wh = wilson_interval(ki, ni, conf)
        comp.append(ki / ni if ni else None)
        lo.append(wl)
        hi.append(wh)
    return {"quantity": name, "edges": edges_to_json(e), "n": n.tolist(), "k": k.tolist(),
            "completeness": comp, "lo": lo, "hi": hi}


def completeness_2d(
    x: np.ndarray,
    y: np.ndarray,
    passed: np.ndarray,
    x_edges: Sequence[float],
    y_edges: Sequence[float],
    *,
    conf: float = 0.95,
    x_name: str = "x",
    y_name: str = "y",
) -> dict:
    """Completeness map of injections binned in two quantities.

    Parameters
    ----------
    x, y : array_like of float
        The two binned quantities per injection.
    passed : array_like of bool
        Whether each injection is called a lens at the operating point.
    x_edges, y_edges : sequence of float
        Strictly increasing edges; bins are ``[lo, hi)``.
    conf : float
        Confidence level of the Wilson intervals.
    x_name, y_name : str
        Names of the quantities.

    Returns
    -------
    dict
        ``{"x", "y", "x_edges", "y_edges", "n", "k", "completeness", "lo", "hi"}`` where each
        map is a nested list indexed ``[ix][iy]``.
    """
    xv = np.asarray(x, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(passed, dtype=bool).ravel()
    if not (xv.shape == yv.shape == p.shape):
        msg = f"completeness_2d({x_name}, {y_name}): x, y, passed lengths differ"
        raise ValueError(msg)
    ex = _check_edges(x_edges, f"completeness_2d({x_name})")
    ey = _check_edges(y_edges, f"completeness_2d({y_name})")
    ix, iy = _bin_index(xv, ex), _bin_index(yv, ey)
    nx, ny = ex.size - 1, ey.size - 1
    ok = (ix >= 0) & (iy >= 0)
    flat = ix[ok] * ny + iy[ok]
    n = np.bincount(flat, minlength=nx * ny).reshape(nx, ny)
    k = np.bincount(flat, weights=p[ok].astype(np.float64), minlength=nx * ny)
    k = k.astype(np.int64).reshape(nx, ny)
    comp = [[None] * ny for _ in range(nx)]
    lo = [[None] * ny for _ in range(nx)]
    hi = [[None] * ny for _ in range(nx)]
    for i in range(nx):
        for j in range(ny):
            ni, ki = int(n[i, j]), int(k[i, j])
            lo[i][j], hi[i][j] = wilson_interval(ki, ni, conf)
            comp[i][j] = ki / ni if ni else None
    return {"x": x_name, "y": y_name, "x_edges": edges_to_json(ex),
            "y_edges": edges_to_json(ey), "n": n.tolist(), "k": k.tolist(),
            "completeness": comp, "lo": lo, "hi": hi}

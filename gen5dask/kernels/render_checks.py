"""Input validation shared by the renderers: every error names the argument and sample index."""

from __future__ import annotations

import numpy as np


def as_vec(name: str, value, n: int | None) -> np.ndarray:
    """Finite float64 vector of length ``n`` (any length if ``None``), else ``ValueError``."""
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


def range_check(name: str, arr: np.ndarray, bad: np.ndarray, want: str) -> None:
    """Raise ``ValueError`` for the first ``bad`` entry of ``arr`` ("must be ``want``")."""
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        msg = f"{name}[{i}] = {arr[i]!r} (sample index {i}) must be {want}"
        raise ValueError(msg)


def check_flux(src_flux_bands, n: int) -> np.ndarray:
    """Finite float64 ``(n, nband)`` fluxes (nanomaggies), else ``ValueError``."""
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


def check_render_options(stamp_size, pixscale, supersample, max_depth, *, max_order: int):
    """Validate the scalar options of the renderers (pixels, arcsec/pixel, orders)."""
    if int(stamp_size) != stamp_size or stamp_size < 1:
        msg = f"stamp_size={stamp_size!r} must be a positive integer (pixels)"
        raise ValueError(msg)
    if not (np.isfinite(pixscale) and pixscale > 0):
        msg = f"pixscale={pixscale!r} must be finite and > 0 arcsec/pixel"
        raise ValueError(msg)
    if int(supersample) != supersample or not 1 <= supersample <= max_order:
        msg = f"supersample={supersample!r} must be an integer in [1, {max_order}]"
        raise ValueError(msg)
    if int(max_depth) != max_depth or not 0 <= max_depth <= 30:
        msg = f"max_depth={max_depth!r} must be an integer in [0, 30]"
        raise ValueError(msg)


def check_tol_scale(tol_scale: float) -> float:
    """``tol_scale`` as a finite positive float, else ``ValueError``."""
    tol_scale = float(tol_scale)
    if not (np.isfinite(tol_scale) and tol_scale > 0):
        msg = f"tol_scale={tol_scale!r} must be finite and > 0"
        raise ValueError(msg)
    return tol_scale


def work_array(work, n_counters: int) -> np.ndarray:
    """The caller's int64 work-counter array, or a fresh zeroed one when ``work`` is None."""
    if work is None:
        return np.zeros(n_counters, dtype=np.int64)
    if not (isinstance(work, np.ndarray) and work.dtype == np.int64
            and work.shape == (n_counters,)):
        msg = f"work must be an int64 array of shape ({n_counters},)"
        raise ValueError(msg)
    return work


__all__ = [
    "as_vec",
    "check_flux",
    "check_render_options",
    "check_tol_scale",
    "range_check",
    "work_array",
]

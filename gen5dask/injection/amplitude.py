"""The amplitude policy of lensed arcs: solve the source flux for a target ``arc_snr``.

``arc_snr(s)`` jumps where pixels enter ``A = {a >= sigma}`` (see
:mod:`gen5dask.kernels.photometry`), so some targets -- common below arc_snr ~ 2 -- are attained
by no amplitude. :func:`solve_nearest` returns the exact amplitude where a linear piece attains
the target, and at a jump the side of it inside the bin the target was drawn from when exactly
one side is (so a drawn table's fractions are kept), else the side nearer the target. Used by
``inject`` (calibrated mode), ``calibrate`` (dry runs) and the mock survey's lensed and ring
features, so every arc of the toolkit follows one policy.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels import photometry

#: relative margin used at a jump (>> float32 rounding of the arc).
JUMP_MARGIN = 1e-6


def solve_peak(arc_unit_r, invvar_r, target) -> np.ndarray:
    """Amplitude whose ``arc_snr_peak = max(a * sqrt(invvar))`` is the target.

    The peak is linear in the amplitude, so ``s = target / peak(unit arc)``: every target is
    attained (float64 nanomaggies; ``inf`` where no good pixel lies under the arc).
    """
    target = np.asarray(target, dtype=np.float64)
    unit_peak = photometry.arc_snr(arc_unit_r, invvar_r).arc_snr_peak
    with np.errstate(divide="ignore"):
        return np.where(unit_peak > 0, target / np.where(unit_peak > 0, unit_peak, 1.0), np.inf)


def solve_nearest(
    arc_unit_r, invvar_r, target, bounds: tuple[np.ndarray, np.ndarray] | None = None,
    *, quantity: str = "arc_snr",
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude whose arc_snr (or, with ``quantity="arc_snr_peak"``, peak S/N) is the target,
    or the nearest attainable value.

    Parameters
    ----------
    arc_unit_r : numpy.ndarray
        ``(n, H, W)`` r-band arc for unit source flux (nanomaggies per pixel per nanomaggy).
    invvar_r : numpy.ndarray
        ``(n, H, W)`` r-band inverse variance, nanomaggies^-2.
    target : numpy.ndarray
        ``(n,)`` target arc_snr.
    bounds : (numpy.ndarray, numpy.ndarray), optional
        ``[low, high)`` of the table bin each target was drawn from
        (:meth:`gen5dask.injection.laws.TargetDistribution.bin_of`).
    quantity : {"arc_snr", "arc_snr_peak"}
        The calibrated quantity; the peak has no jumps (:func:`solve_peak`, ``gap`` all False).

    Returns
    -------
    s : numpy.ndarray
        float64 amplitudes, nanomaggies (``inf`` where unreachable: no good pixel under the
        arc). The exact solver returns the smallest ``s`` with ``arc_snr >= target`` (the top
        of a jump); the value just below the jump is used instead when it is nearer the target
        and positive.
    gap : numpy.ndarray
        bool, True where the target is not attainable.
    """
    if quantity == "arc_snr_peak":
        s = solve_peak(arc_unit_r, invvar_r, target)
        return s, np.zeros(s.shape, dtype=bool)
    if quantity != "arc_snr":
        msg = f"unknown calibrated quantity {quantity!r} (arc_snr or arc_snr_peak)"
        raise ValueError(msg)
    target = np.asarray(target, dtype=np.float64)
    s = photometry.solve_amplitude_for_arc_snr(arc_unit_r, invvar_r, target)
    u = np.asarray(arc_unit_r, dtype=np.float64)
    fin = np.isfinite(s) & (s > 0)
    f_hi = np.zeros(s.shape)
    f_hi[fin] = photometry.arc_snr(u[fin] * s[fin, None, None], invvar_r[fin]).arc_snr
    gap = fin & (f_hi > target * (1.0 + 1e-9))
    if gap.any():
        s_lo = s[gap] * (1.0 - JUMP_MARGIN)
        f_lo = photometry.arc_snr(u[gap] * s_lo[:, None, None], invvar_r[gap]).arc_snr
        use = (f_lo > 0) & (target[gap] - f_lo < f_hi[gap] - target[gap])
        if bounds is not None:
            lo, hi = (np.broadcast_to(np.asarray(b, np.float64), s.shape)[gap] for b in bounds)
            in_lo = (f_lo > 0) & (f_lo >= lo) & (f_lo < hi)
            in_hi = (f_hi[gap] >= lo) & (f_hi[gap] < hi)
            use = np.where(in_lo != in_hi, in_lo, use)
        rows = np.flatnonzero(gap)
        s[rows[use]] = s_lo[use]
        # top of the jump: pixels sit exactly at a >= sigma; the margin keeps them there after
        # the arc is rounded to float32
        s[rows[~use]] *= 1.0 + JUMP_MARGIN
    return s, gap


__all__ = ["JUMP_MARGIN", "solve_nearest", "solve_peak"]

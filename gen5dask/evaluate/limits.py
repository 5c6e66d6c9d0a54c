"""The physical limit of a recall: the matched-filter detector (DESIGN §4, §12).

A detector that knows the noise-free arc ``a`` exactly, in Gaussian noise of the stored inverse
variance, thresholds the matched-filter statistic ``t = sum a (d - host) invvar / SNR_opt``,
which is N(0, 1) without the arc and N(SNR_opt, 1) with it, where

    SNR_opt = sqrt( sum_bands sum_pixels a^2 invvar )      (good pixels, invvar > 0).

At false-positive rate ``a`` its threshold is ``Phi^-1(1 - a)`` and its recall

    R_opt(a) = Phi( SNR_opt - Phi^-1(1 - a) ).

No detector working on the same pixels does better on average, so the mean of ``R_opt`` over a
population is the ceiling beside which every measured recall is reported (the ratio
recall / limit says how much of the physically available signal a network uses).

Also here: the recall of injections reweighted to another population's distribution of a
quantity (e.g. arc S/N), used by the closed-loop check (Tier-A recall must equal the injection
recall reweighted to the anchors' arc S/N distribution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

from gen5dask.evaluate.stats import bootstrap_rng

__all__ = [
    "limit_recall",
    "matched_filter_recall",
    "reweight_bins",
    "reweighted_recall",
    "reweighted_recall_bootstrap_ci",
    "snr_opt_from_pixels",
]


def snr_opt_from_pixels(arc: np.ndarray, invvar: np.ndarray) -> np.ndarray:
    """``SNR_opt`` of each sample from its noise-free arc and inverse variance.

    Parameters
    ----------
    arc : array (n, bands, y, x) of float
        Noise-free arc flux, nanomaggies.
    invvar : array (n, bands, y, x) of float
        Inverse variance, nanomaggies^-2; pixels with ``invvar <= 0`` (no data) are ignored.

    Returns
    -------
    array (n,) of float64
        ``sqrt(sum a^2 invvar)`` over good pixels (dimensionless).
    """
    a = np.asarray(arc, dtype=np.float64)
    w = np.asarray(invvar, dtype=np.float64)
    if a.shape != w.shape or a.ndim < 2:
        msg = f"snr_opt_from_pixels: arc {a.shape} and invvar {w.shape} must match, ndim >= 2"
        raise ValueError(msg)
    w = np.where(w > 0.0, w, 0.0)
    return np.sqrt((a * a * w).reshape(a.shape[0], -1).sum(axis=1))


def matched_filter_recall(snr_opt: np.ndarray, fpr: float) -> np.ndarray:
    """Recall of the matched-filter detector at false-positive rate ``fpr`` (fraction).

    ``Phi(SNR_opt - Phi^-1(1 - fpr))`` per sample; NaN where ``snr_opt`` is NaN.
    """
    if not 0.0 < fpr < 1.0:
        msg = f"matched_filter_recall: fpr must be in (0, 1), got {fpr}"
        raise ValueError(msg)
    s = np.asarray(snr_opt, dtype=np.float64)
    return ndtr(s - ndtri(1.0 - fpr))


def limit_recall(snr_opt: np.ndarray, fpr: float) -> tuple[float | None, int, int]:
    """Mean matched-filter recall of a population: ``(mean, n_with_snr_opt, n_missing)``.

    Samples without a truth arc (``snr_opt`` NaN) are left out and counted in ``n_missing``; the
    mean is ``None`` when no sample has ``snr_opt``.
    """
    s = np.asarray(snr_opt, dtype=np.float64).ravel()
    ok = np.isfinite(s)
    n_ok = int(ok.sum())
    if n_ok == 0:
        return None, 0, int(s.size)
    return float(matched_filter_recall(s[ok], fpr).mean()), n_ok, int(s.size - n_ok)


def reweight_bins(target_values: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin edges at quantiles of the target population (equal target counts per bin).

    The outer edges are open (``-inf``, ``+inf``) so every sample falls in a bin; duplicate
    quantiles (ties) are merged.
    """
    t = np.asarray(target_values, dtype=np.float64)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return np.array([-np.inf, np.inf])
    nb = max(1, min(int(n_bins), t.size))
    inner = np.unique(np.quantile(t, np.linspace(0.0, 1.0, nb + 1)[1:-1])) if nb > 1 else []
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _bin_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[~np.isfinite(x)] = -1
    return idx


def _binned(pos_scores, pos_values, target_values, edges):
    """Positives' scores, their bins and the target's bins (-1 outside), and the bin count."""
    e = np.asarray(edges, dtype=np.float64)
    s = np.asarray(pos_scores, dtype=np.float64).ravel()
    pj = _bin_of(np.asarray(pos_values, dtype=np.float64).ravel(), e)
    ti = _bin_of(np.asarray(target_values, dtype=np.float64).ravel(), e)
    return s, pj, ti, e.size - 1


def reweighted_recall(
    pos_scores: np.ndarray,
    pos_values: np.ndarray,
    target_values: np.ndarray,
    threshold: float,
    edges: Sequence[float],
) -> dict:
    """Recall of positives reweighted to a target population's distribution of a quantity.

    With bins ``b`` of ``edges``, target fractions ``pi_b`` and the positives' recall ``r_b`` in
    each bin (score strictly above ``threshold``, the DESIGN §7 rule),
    ``recall = sum_b pi_b r_b / sum_b pi_b`` over bins that hold positives. ``coverage`` is the
    target fraction in bins that hold positives (1 means the reweighting is complete).

    Returns
    -------
    dict
        ``recall`` (None when undefined), ``coverage``, ``n_target``, ``n_pos``, and per-bin
        ``pi``, ``n``, ``k``.
    """
    s, pj, ti, nb = _binned(pos_scores, pos_values, target_values, edges)
    pi = np.bincount(ti[ti >= 0], minlength=nb).astype(np.float64)
    n_target = int(pi.sum())
    pi = pi / n_target if n_target else pi
    ok = pj >= 0
    n = np.bincount(pj[ok], minlength=nb)
    passed = (s > threshold) if not math.isnan(threshold) else np.zeros(s.size, bool)
    k = np.bincount(pj[ok], weights=passed[ok].astype(np.float64), minlength=nb)
    has = n > 0
    cover = float(pi[has].sum())
    rec = float(np.sum(pi[has] * k[has] / n[has]) / cover) if cover > 0 and n_target else None
    return {"recall": rec, "coverage": cover, "n_target": n_target, "n_pos": int(ok.sum()),
            "pi": pi.tolist(), "n": n.tolist(), "k": k.astype(np.int64).tolist()}


def reweighted_recall_bootstrap_ci(
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    pos_values: np.ndarray,
    target_values: np.ndarray,
    k_fp: int,
    edges: Sequence[float],
    *,
    n_boot: int,
    seed: int,
    conf: float = 0.95,
    name: str = "reweighted_recall",
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of :func:`reweighted_recall` at the operating point that
    leaves ``k_fp`` negatives above the threshold.

    All three samples are resampled independently: the threshold (the (k+1)-th highest of N
    resampled negatives is ``sorted_neg[floor(U N)]``, ``U ~ Beta(N-k, k+1)``), the target
    fractions (multinomial) and each bin's passed count (binomial at the bin's fraction above the
    resampled threshold; bin sizes multinomial), so the interval carries every source of
    sampling error of the point estimate. Cost O(n log n + n_boot * bins).
    """
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64).ravel())
    s, pj, ti, nb = _binned(pos_scores, pos_values, target_values, edges)
    n_t = int((ti >= 0).sum())
    n_p = int((pj >= 0).sum())
    if neg.size == 0 or n_t == 0 or n_p == 0:
        return None, None
    pi = np.bincount(ti[ti >= 0], minlength=nb) / n_t
    n = np.bincount(pj[pj >= 0], minlength=nb)
    per_bin = [np.sort(s[pj == b]) for b in range(nb)]
    rng = bootstrap_rng(seed, name)
    big_n = neg.size
    if k_fp >= big_n:
        thr = np.full(n_boot, -np.inf)
    else:
        u = rng.beta(big_n - k_fp, k_fp + 1, size=n_boot)
        thr = neg[np.minimum((u * big_n).astype(np.int64), big_n - 1)]
    pis = rng.multinomial(n_t, pi, size=n_boot) / n_t
    ns = rng.multinomial(n_p, n / n_p, size=n_boot)
    reps = np.full(n_boot, np.nan)
    for b_i in range(n_boot):
        num = den = 0.0
        for b in range(nb):
            nb_b = ns[b_i, b]
            if nb_b == 0 or per_bin[b].size == 0:
                continue
            arr = per_bin[b]
            frac = (arr.size - np.searchsorted(arr, thr[b_i], side="right")) / arr.size
            r_b = rng.binomial(nb_b, frac) / nb_b
            num += pis[b_i, b] * r_b
            den += pis[b_i, b]
        if den > 0:
            reps[b_i] = num / den
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return None, None
    lo, hi = np.quantile(reps, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(lo), float(hi)

"""Per-class statistics of one column with the class as an integer code (no per-row strings).

The audit's class-balance tables and mask-bit fractions at catalogue scale: one float column
and one small-int code column at a time, instead of a table with a string ``kind`` per row.
:func:`effect_sizes_by_code` returns exactly what
:func:`gen5dask.evaluate.stats.effect_size_summary` returns for the decoded labels (tested);
:func:`class_means` what ``pandas`` ``groupby(label).mean()`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gen5dask.evaluate.stats import cliffs_delta, group_summary

#: kept for callers of the audit-side name; the one implementation is evaluate.stats
cliffs_delta_sorted = cliffs_delta


def auc_by_ranks(y: np.ndarray, x: np.ndarray) -> float:
    """ROC AUC of score ``x`` for binary labels ``y`` (1 positive), ties counting one half.

    The Mann-Whitney form ``U / (n_pos n_neg)`` with ``2U`` summed exactly in integers over the
    distinct values of one sort (``2U = sum_v pos_v (2 neg_below_v + neg_v)``), so the only
    rounding is the final division; equal to ``sklearn.metrics.roc_auc_score`` up to its
    floating-point trapezoid sums (tested to 1e-12). Needs both classes present.
    """
    y = np.asarray(y).ravel().astype(bool)
    x = np.asarray(x, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        msg = "auc_by_ranks: both classes must be present"
        raise ValueError(msg)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    del order
    new = np.ones(xs.size, dtype=bool)
    new[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    pos = np.add.reduceat(ys.astype(np.int64), starts)
    cnt = np.diff(np.r_[starts, xs.size])
    neg = cnt - pos
    neg_below = np.cumsum(neg) - neg
    two_u = int(np.sum(pos * (2 * neg_below + neg)))
    return two_u / (2 * n_pos * n_neg)


def effect_sizes_by_code(values: np.ndarray, code: np.ndarray, names: Sequence[str]) -> dict:
    """Per-class summary and pairwise effect sizes of ``values`` grouped by ``code``.

    Parameters
    ----------
    values : array_like
        The quantity (any unit), one per sample; non-finite values are dropped.
    code : array_like of int
        Class index of each sample into ``names`` (rows with a code outside ``names`` are
        dropped).
    names : sequence of str
        Class name of each code.

    Returns
    -------
    dict
        ``{"classes": {name: {n, mean, median, iqr}}, "pairs": [{a, b, cliffs_delta, ks_stat,
        ks_p}, ...]}``: classes present among the finite values, in sorted name order, one pair
        per unordered class pair (the result of ``effect_size_summary(values, names[code])``).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    c = np.asarray(code).ravel().astype(np.int64)
    if v.shape != c.shape:
        msg = f"effect_sizes_by_code: values {v.shape} and codes {c.shape} differ"
        raise ValueError(msg)
    ok = np.isfinite(v) & (c >= 0) & (c < len(names))
    v, c = v[ok], c[ok]
    present = np.flatnonzero(np.bincount(c, minlength=len(names)))
    by_name = sorted((str(names[k]), int(k)) for k in present)
    order = np.argsort(c, kind="stable")  # rows of each class, in row order
    cut = np.searchsorted(c[order], np.arange(len(names) + 1))
    groups = {nm: v[order[cut[k]:cut[k + 1]]] for nm, k in by_name}
    del order
    return group_summary(groups)


def class_means(values: np.ndarray, code: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Mean of ``values`` per class (NaN skipped), as ``pandas`` ``groupby(name).mean()``.

    Classes present in ``code`` in sorted name order; an all-NaN class has NaN.
    """
    c = np.asarray(code).ravel().astype(np.int64)
    s = pd.Series(np.asarray(values, dtype=np.float64).ravel()).groupby(c).mean()
    return dict(sorted((str(names[int(k)]), float(m)) for k, m in s.items()))


__all__ = ["auc_by_ranks", "class_means", "cliffs_delta_sorted", "effect_sizes_by_code"]

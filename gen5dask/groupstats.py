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
from scipy import stats as _st

from gen5dask.evaluate.stats import cliffs_delta, finite_or_none


def _median_and_iqr(x: np.ndarray) -> tuple[float | None, float | None]:
    if x.size == 0:
        return None, None
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return finite_or_none(q50), finite_or_none(q75 - q25)


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
    out: dict = {"classes": {}, "pairs": []}
    for nm, x in groups.items():
        med, iqr = _median_and_iqr(x)
        out["classes"][nm] = {"n": int(x.size), "mean": finite_or_none(x.mean()),
                              "median": med, "iqr": iqr}
    classes = list(groups)
    for i, ca in enumerate(classes):
        for cb in classes[i + 1:]:
            xa, xb = groups[ca], groups[cb]
            ks = _st.ks_2samp(xa, xb)
            out["pairs"].append({
                "a": ca, "b": cb, "cliffs_delta": cliffs_delta(xa, xb),
                "ks_stat": finite_or_none(ks.statistic), "ks_p": finite_or_none(ks.pvalue),
            })
    return out


def class_means(values: np.ndarray, code: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Mean of ``values`` per class (NaN skipped), as ``pandas`` ``groupby(name).mean()``.

    Classes present in ``code`` in sorted name order; an all-NaN class has NaN.
    """
    c = np.asarray(code).ravel().astype(np.int64)
    s = pd.Series(np.asarray(values, dtype=np.float64).ravel()).groupby(c).mean()
    return dict(sorted((str(names[int(k)]), float(m)) for k, m in s.items()))


__all__ = ["class_means", "effect_sizes_by_code"]

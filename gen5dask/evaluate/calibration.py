"""How well a calibration recovered a known distribution (the mock survey knows the truth).

``calibrate.target: anchors`` measures the anchors (visibility proxy) and inverts the measurement
into an implied arc S/N per anchor. In the mock survey every anchor also carries its true arc S/N,
so the recovery can be scored: :func:`recovery_distance` compares the recovered and the true
samples — two-sample Kolmogorov–Smirnov statistic and p-value, 1-Wasserstein distance in
``log10`` (arc S/N spans decades, so the distance is in dex), the median ratio, and the binned
fractions side by side in the calibration bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["recovery_distance"]


def recovery_distance(recovered: np.ndarray, true: np.ndarray,
                      bins: Sequence[float] | None = None) -> dict:
    """Distance between a recovered and a true positive-valued distribution.

    Parameters
    ----------
    recovered, true : array_like of float
        Samples (e.g. implied and true arc S/N of the anchors); non-finite or non-positive values
        are left out and counted.
    bins : sequence of float, optional
        Edges for the side-by-side fractions (values outside are not counted).

    Returns
    -------
    dict
        ``n_recovered``, ``n_true``, ``n_left_out``, ``ks_statistic``, ``ks_pvalue``,
        ``wasserstein_log10`` (dex), ``median_ratio`` (recovered / true medians), and with
        ``bins``: ``bins``, ``fractions_recovered``, ``fractions_true``. None values when a
        sample is empty.
    """
    r = np.asarray(recovered, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    ok_r = np.isfinite(r) & (r > 0)
    ok_t = np.isfinite(t) & (t > 0)
    out = {"n_recovered": int(ok_r.sum()), "n_true": int(ok_t.sum()),
           "n_left_out": int((~ok_r).sum() + (~ok_t).sum()), "ks_statistic": None,
           "ks_pvalue": None, "wasserstein_log10": None, "median_ratio": None}
    r, t = r[ok_r], t[ok_t]
    if r.size and t.size:
        ks = stats.ks_2samp(r, t)
        out.update({"ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                    "wasserstein_log10": float(stats.wasserstein_distance(np.log10(r),
                                                                          np.log10(t))),
                    "median_ratio": float(np.median(r) / np.median(t))})
    if bins is not None:
        e = np.asarray(bins, dtype=np.float64)
        hr = np.histogram(r, e)[0]
        ht = np.histogram(t, e)[0]
        out.update({"bins": e.tolist(),
                    "fractions_recovered": (hr / max(r.size, 1)).tolist(),
                    "fractions_true": (ht / max(t.size, 1)).tolist()})
    return out

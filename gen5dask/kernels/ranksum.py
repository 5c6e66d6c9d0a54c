"""Mann-Whitney sums of resampled rank groups (numba), for the AUC bootstrap.

:func:`resampled_auc_sum` is one replicate of
:func:`gen5dask.evaluate.metrics.auc_bootstrap_ci`: given the rank group (index into the sorted
distinct scores) of every negative and positive and one resample of each class (row indices),
it returns ``2 * sum_g wp[g] * (below[g] + wn[g] / 2)``, where ``wn``/``wp`` count the
resampled negatives/positives per group and ``below[g]`` the resampled negatives in lower
groups: twice the Mann-Whitney U with ties counting one half, as an exact integer. The numpy
form (``bincount`` of the gathered groups, ``cumsum``, ``dot`` in float64) gives the same U
exactly (every partial sum is a half-integer below 2^53), so ``U / (n_neg n_pos)`` is
bit-identical; this form makes one pass over each resample and one over the groups.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit


@jit
def resampled_auc_sum(g_neg, g_pos, idx_neg, idx_pos, wn, wp):
    """``2 U`` (int64) of one resample; ``wn``, ``wp`` are int64 scratch of the group count."""
    ng = wn.shape[0]
    for g in range(ng):
        wn[g] = 0
        wp[g] = 0
    for i in range(idx_neg.shape[0]):
        wn[g_neg[idx_neg[i]]] += 1
    for i in range(idx_pos.shape[0]):
        wp[g_pos[idx_pos[i]]] += 1
    below = np.int64(0)
    acc = np.int64(0)
    for g in range(ng):
        acc += wp[g] * (2 * below + wn[g])
        below += wn[g]
    return acc


__all__ = ["resampled_auc_sum"]

"""Greedy assignment of weighted items (sky regions) to bins (splits), for many orders (numba).

Used by :func:`gen5dask.regions.assign_splits`: each candidate is one permutation of the
regions; the first regions fill the minimum counts (test, val, then train), the rest go one by
one to the split with the largest remaining deficit ``target - load`` (ties: the lowest split
index, as ``numpy.argmax``). Pure arithmetic in a fixed order, so the result is bit-identical to
the obvious Python loop (tested).
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels._jit import jit


@jit
def greedy_assign(perms, weights, target, fill):
    """Split index ``(n_candidates, n_regions)`` of each region for each permutation.

    Parameters
    ----------
    perms : int64 array ``(n_candidates, n_regions)``
        Region orders (each row a permutation of ``0 .. n_regions - 1``).
    weights : float64 array ``(n_regions,)``
        Objects per region.
    target : float64 array ``(n_bins,)``
        Target load per bin (same units as ``weights``).
    fill : int64 array
        Bin of the k-th region in each order for ``k < len(fill)`` (the minimum counts).
    """
    nc, nr = perms.shape
    nb = target.shape[0]
    out = np.empty((nc, nr), dtype=np.int64)
    load = np.empty(nb)
    for c in range(nc):
        load[:] = 0.0
        for k in range(nr):
            r = perms[c, k]
            if k < fill.shape[0]:
                s = fill[k]
            else:
                s = 0
                best = target[0] - load[0]
                for j in range(1, nb):
                    d = target[j] - load[j]
                    if d > best:
                        best = d
                        s = j
            out[c, r] = s
            load[s] += weights[r]
    return out


__all__ = ["greedy_assign"]

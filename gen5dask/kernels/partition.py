"""Partitions of items (numba): greedy assignment of weighted regions to splits, and
connected components of a link graph by union-find.


Used by :func:`gen5dask.regions.assign_splits`: each candidate is one permutation of the
regions; the first regions fill the minimum counts (test, val, then train), the rest go one by
one to the split with the largest remaining deficit ``target - load`` (ties: the lowest split
index, as ``numpy.argmax``). Pure arithmetic in a fixed order, so the result is bit-identical to
the obvious Python loop (tested).

:func:`union_edges` / :func:`component_labels` are a union-find (path halving, union by the
smaller root index) over ``n_nodes`` nodes: the connected components of the same graph as
``scipy.sparse.csgraph.connected_components``, with one ``int64`` per node and no adjacency
matrix (the split's host links and near-duplicate pairs at 10^7 rows).
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


@jit
def _root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@jit
def union_edges(parent, a, b):
    """Merge the components of every edge ``(a[k], b[k])`` in ``parent`` (in place).

    ``parent`` is an int64 array initialised to ``arange(n_nodes)``; the root of a component
    is its smallest node index.
    """
    for k in range(a.shape[0]):
        ra = _root(parent, a[k])
        rb = _root(parent, b[k])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb


@jit
def union_pairs_to(parent, a, b_offset, b):
    """:func:`union_edges` for the edges ``(a[k], b_offset + b[k])``, without the sum array."""
    for k in range(a.shape[0]):
        ra = _root(parent, a[k])
        rb = _root(parent, b_offset + b[k])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb


@jit
def component_labels(parent, n_first):
    """Component label of nodes ``0 .. n_first - 1``, numbered by first appearance (0, 1, ...).

    Node ``i`` gets the number of distinct components among nodes ``0 .. i - 1`` if its
    component first appears at ``i``. ``parent`` is consumed: it is fully compressed, then each
    root stores its component's label as ``-(label + 1)`` (no second node-sized array).
    """
    n = parent.shape[0]
    for i in range(n):
        parent[i] = _root(parent, i)
    out = np.empty(n_first, dtype=np.int64)
    nxt = 0
    for i in range(n_first):
        r = parent[i]
        if r < 0:  # i is a root that already has its label
            out[i] = -r - 1
            continue
        if parent[r] >= 0:  # first appearance of this component (parent[r] == r)
            parent[r] = -(nxt + 1)
            nxt += 1
        out[i] = -parent[r] - 1
    return out


__all__ = ["component_labels", "greedy_assign", "union_edges", "union_pairs_to"]

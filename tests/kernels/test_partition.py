"""Greedy region-to-split assignment: identical to the obvious Python loop."""

from __future__ import annotations

import numpy as np

from gen5dask.kernels.partition import greedy_assign


def _python_greedy(perm, w, target, mins):
    assign = np.empty(perm.size, dtype=np.int64)
    load = np.zeros(3)
    fill = [2] * mins[2] + [1] * mins[1] + [0] * mins[0]
    for k, r in enumerate(perm):
        s = fill[k] if k < len(fill) else int(np.argmax(target - load))
        assign[r] = s
        load[s] += w[r]
    return assign


def test_greedy_assign_matches_python_loop():
    rng = np.random.default_rng(0)
    for nr in (4, 17, 300):
        w = rng.integers(1, 50, nr).astype(np.float64)
        w[: nr // 4] = 7.0  # ties in the deficits
        target = np.array([0.7, 0.15, 0.15]) * w.sum()
        mins = (1, 1, 2)
        perms = np.stack([rng.permutation(nr) for _ in range(50)])
        fill = np.asarray([2] * mins[2] + [1] * mins[1] + [0] * mins[0], dtype=np.int64)
        got = greedy_assign(perms, w, target, fill)
        want = np.stack([_python_greedy(p, w, target, mins) for p in perms])
        np.testing.assert_array_equal(got, want)

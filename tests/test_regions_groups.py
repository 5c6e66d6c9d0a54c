"""Near-duplicate groups by union-find and the KD-tree pair search equal their reference forms."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, search_around_sky
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from gen5dask.kernels.partition import component_labels, union_edges
from gen5dask.regions import close_pairs, near_duplicate_groups, unique_positions


def _clustered(n, seed):
    rng = np.random.default_rng(seed)
    centres = np.stack([rng.uniform(359.9, 360.1, 40) % 360, rng.uniform(-1, 1, 40)], 1)
    k = rng.integers(0, 40, n)
    ra = (centres[k, 0] + rng.normal(0, 3 / 3600, n)) % 360  # ~3 arcsec scatter, across RA 0
    dec = centres[k, 1] + rng.normal(0, 3 / 3600, n)
    dup = rng.random(n) < 0.2
    ra[dup], dec[dup] = ra[0], dec[0]  # exact duplicates too
    return ra, dec


def test_close_pairs_equals_search_around_sky():
    ra, dec = _clustered(3000, 0)
    upos, _ = unique_positions(ra, dec)
    c = SkyCoord(upos[:, 0] * u.deg, upos[:, 1] * u.deg)
    for radius in (0.5, 2.0, 5.0):
        i1, i2, _, _ = search_around_sky(c, c, radius * u.arcsec)
        keep = i1 < i2
        want = np.stack([i1[keep], i2[keep]], 1)
        want = want[np.lexsort((want[:, 1], want[:, 0]))]
        got = close_pairs(upos[:, 0], upos[:, 1], radius)
        assert got.shape[0] > 100
        np.testing.assert_array_equal(got, want)
    assert close_pairs([1.0], [2.0], 5.0).shape == (0, 2)
    assert close_pairs(upos[:, 0], upos[:, 1], 0.0).shape == (0, 2)


def _reference_groups(ra, dec, radius, links, n_extra):
    """The earlier implementation: scipy sparse graph + connected_components."""
    n = ra.size
    upos, uinv = unique_positions(ra, dec)
    nu = upos.shape[0]
    src, dst = [np.arange(n)], [n + n_extra + uinv]
    c = SkyCoord(upos[:, 0] * u.deg, upos[:, 1] * u.deg)
    i1, i2, _, _ = search_around_sky(c, c, radius * u.arcsec)
    keep = i1 < i2
    src.append(n + n_extra + i1[keep])
    dst.append(n + n_extra + i2[keep])
    src.append(links[0])
    dst.append(links[1])
    s, d = np.concatenate(src), np.concatenate(dst)
    m = n + n_extra + nu
    g = sparse.coo_matrix((np.ones(s.size, dtype=np.int8), (s, d)), shape=(m, m))
    _, lab = connected_components(g, directed=False)
    lab = lab[:n]
    _, first, inv = np.unique(lab, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv.ravel()]


def test_near_duplicate_groups_equal_connected_components():
    ra, dec = _clustered(4000, 1)
    rng = np.random.default_rng(2)
    n, n_extra = ra.size, 300
    a = rng.integers(0, n, 2500)
    b = n + rng.integers(0, n_extra, 2500)
    for radius in (0.0, 1.0, 4.0):
        got = near_duplicate_groups(ra, dec, radius_arcsec=radius, links=(a, b),
                                    n_extra_nodes=n_extra)
        want = _reference_groups(ra, dec, radius, (a, b), n_extra)
        np.testing.assert_array_equal(got, want)
        assert 1 < got.max() + 1 < n  # non-trivial grouping


def test_union_find_labels_by_first_appearance():
    parent = np.arange(8, dtype=np.int64)
    union_edges(parent, np.array([5, 6, 2]), np.array([1, 7, 7]))
    # components: {0}, {1,5}, {2,6,7}, {3}, {4}; rows 0..5 numbered by first appearance
    np.testing.assert_array_equal(component_labels(parent, 6), [0, 1, 2, 3, 4, 1])

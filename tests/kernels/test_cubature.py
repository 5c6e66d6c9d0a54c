"""Block-level fast path of the cubature: its bounds dominate the per-pixel ones.

:func:`block_single_sample` lets a whole 8x8 block skip the per-pixel footprint bounds; the
render stays bit-identical only if every pixel of such a block would have got order 1 (or
missed the source) in the per-pixel test. These tests check that on random lenses, sources
and blocks, with the per-pixel test written out as in ``render_sample``.
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels.cubature import (
    BLOCK,
    CUSP_FLUX_FLOOR,
    JACOBIAN_SAFETY,
    SERSIC_TOLS,
    block_pixel_radius,
    block_single_sample,
    cell_order,
)
from gen5dask.kernels.lensing import sie_second_derivative_bound
from gen5dask.kernels.raytrace import (
    corner_footprint,
    fill_deflection_table,
    lens_tuples,
    rect_distance,
    square_image_radius,
    table_intervals,
    trace,
    trace_jacobian,
)
from gen5dask.kernels.sources import KIND_SERSIC, sersic_params, source_misses

PIX = 0.262


def _lens(rng):
    table, _, _ = lens_tuples(
        np.array([rng.uniform(0.5, 2.5)]), np.array([rng.uniform(0.3, 1.0)]),
        np.array([rng.uniform(0, np.pi)]), np.array([rng.normal(0, 0.05)]),
        np.array([rng.normal(0, 0.05)]),
    )
    nint = table_intervals(table[0, 2])
    tab = np.empty((2, nint + 4, 2))
    fill_deflection_table(tab, nint, *table[0, :5])
    return (*table[0], 0.5 * nint), tab


def _source(rng):
    sp, _ = sersic_params(
        np.array([rng.normal(0, 0.4)]), np.array([rng.normal(0, 0.4)]),
        np.array([rng.uniform(0.05, 0.5)]), np.array([rng.uniform(0.5, 4.0)]),
        np.array([rng.uniform(0.3, 1.0)]), np.array([rng.uniform(0, np.pi)]),
        lost_fraction=1e-3,
    )
    return sp[0]


def test_block_bounds_dominate_every_pixel():
    rng = np.random.default_rng(11)
    img = np.zeros((1, 1))
    side_b = BLOCK * PIX
    n_fast = 0
    for _ in range(40):
        lens, tab = _lens(rng)
        sp = _source(rng)
        b, q = lens[0], lens[2]
        for bi in range(-12, 12):
            for bj in range(-12, 12):
                x0 = (bj * BLOCK - 0.5) * PIX
                y0 = (bi * BLOCK - 0.5) * PIX
                corners = [trace(x0 + dx, y0 + dy, lens, tab)
                           for dy in (0.0, side_b) for dx in (0.0, side_b)]
                mx, my, r = corner_footprint(*[c for xy in corners for c in xy])
                d = rect_distance(x0, x0 + side_b, y0, y0 + side_b)
                curv = sie_second_derivative_bound(b, q, d)
                rm = r + 0.25 * side_b * side_b * curv
                jb = trace_jacobian(x0 + 0.5 * side_b, y0 + 0.5 * side_b, lens, tab)
                rpix = block_pixel_radius(jb[2], jb[3], jb[4], jb[5], side_b, PIX, curv)
                fast = block_single_sample(mx, my, rm, rpix, KIND_SERSIC, sp, img, SERSIC_TOLS)
                if not np.isfinite(rpix):
                    assert not fast
                    continue
                n_fast += fast
                for pi in range(BLOCK):
                    yc = y0 + (pi + 0.5) * PIX
                    for pj in range(BLOCK):
                        xc = x0 + (pj + 0.5) * PIX
                        bx, by, j11, j12, j21, j22 = trace_jacobian(xc, yc, lens, tab)
                        dp = rect_distance(xc - 0.5 * PIX, xc + 0.5 * PIX, yc - 0.5 * PIX,
                                           yc + 0.5 * PIX)
                        jac = (1.0 + JACOBIAN_SAFETY) * square_image_radius(j11, j12, j21, j22)
                        rho = jac * PIX + 0.25 * PIX * PIX * sie_second_derivative_bound(b, q, dp)
                        # the pixel's own footprint lies inside the block's bounds
                        assert rho <= rpix
                        assert np.hypot(bx - mx, by - my) <= rm * (1 + 1e-9)
                        if fast and not source_misses(bx, by, rho, KIND_SERSIC, sp, img):
                            m = cell_order(bx, by, rho, PIX * PIX, KIND_SERSIC, sp, img,
                                           SERSIC_TOLS, 3, CUSP_FLUX_FLOOR)
                            assert m == 1
    assert n_fast > 100  # the test exercises the fast path


def test_block_with_the_lens_centre_never_takes_the_fast_path():
    sp = sersic_params(np.array([0.0]), np.array([0.0]), np.array([0.3]), np.array([4.0]),
                       np.array([1.0]), np.array([0.0]), lost_fraction=1e-3)[0][0]
    assert block_pixel_radius(1.0, 0.0, 0.0, 1.0, BLOCK * PIX, PIX, np.inf) == np.inf
    assert not block_single_sample(5.0, 5.0, 0.1, np.inf, KIND_SERSIC, sp, np.zeros((1, 1)),
                                   SERSIC_TOLS)
    # a footprint disc that reaches the source centre (the cusp) is refined pixel by pixel
    assert not block_single_sample(0.2, 0.0, 0.3, 0.05, KIND_SERSIC, sp, np.zeros((1, 1)),
                                   SERSIC_TOLS)
    # far in the wings of the same source one sample per pixel suffices
    assert block_single_sample(8.0, 0.0, 0.5, 0.2, KIND_SERSIC, sp, np.zeros((1, 1)),
                               SERSIC_TOLS)

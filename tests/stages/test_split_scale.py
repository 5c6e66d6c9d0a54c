"""The vectorised table helpers of ``split`` equal their obvious pandas/numpy forms."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gen5dask.regions import ks_report, unique_positions
from gen5dask.stages.split import region_bricks


def test_unique_positions_matches_numpy_unique():
    rng = np.random.default_rng(0)
    ra = rng.choice(rng.uniform(0, 360, 50), 400)
    dec = rng.choice([-0.0, 0.0, 1.5, -30.0, 12.25], 400)
    upos, inv = unique_positions(ra, dec)
    want, winv = np.unique(np.stack([ra, dec], 1), axis=0, return_inverse=True)
    np.testing.assert_array_equal(upos, want)
    np.testing.assert_array_equal(inv, winv.ravel())
    assert unique_positions([], [])[0].shape == (0, 2)


def test_region_bricks_matches_groupby():
    rng = np.random.default_rng(1)
    region = rng.integers(0, 9, 500) * 17 + 300
    names = np.array(["0001p000", "0001m002", "3599p300", "0200p010", "0001p000x"])
    brick = names[rng.integers(0, names.size, 500)]
    want = pd.DataFrame({"region": region, "brickname": brick}).groupby("region")[
        "brickname"].agg(lambda s: sorted(set(map(str, s))))
    got = region_bricks(region, brick)
    assert got == {int(k): v for k, v in want.items()}


def test_ks_report_matches_masks():
    rng = np.random.default_rng(2)
    v = rng.normal(size=300)
    v[::7] = np.nan
    s = rng.choice(np.array(["train", "val", "test", ""]), 300)
    got = ks_report(v, s)
    from scipy import stats

    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        xa, xb = v[(s == a) & np.isfinite(v)], v[(s == b) & np.isfinite(v)]
        r = stats.ks_2samp(xa, xb)
        assert got[f"{a}_vs_{b}"] == {"ks_stat": float(r.statistic), "ks_p": float(r.pvalue),
                                      "n_a": xa.size, "n_b": xb.size}
    assert ks_report(v, np.full(300, "train"))["train_vs_val"]["ks_stat"] is None

"""Counter-based RNG: determinism, independence of keys, uniformity."""

import numpy as np
from scipy import stats

from gen5dask.kernels import rng


def test_key_is_deterministic_and_distinct():
    k1 = rng.key(1, "inject", 5)
    assert k1 == rng.key(1, "inject", 5)
    others = {
        rng.key(1, "inject", 6),
        rng.key(2, "inject", 5),
        rng.key(1, "other", 5),
        rng.key(1, "inject", 5, replicate=1),
        rng.key(1, "inject", 5, epoch=1),
    }
    assert k1 not in others and len(others) == 5


def test_stage_id_independent_of_hash_seed():
    # blake2b, not Python's salted hash(): a fixed known value
    assert rng.stage_id("inject") == rng.stage_id("inject")
    assert rng.stage_id("inject") != rng.stage_id("injecT")
    assert 0 <= rng.stage_id("x") < 2**63


def test_uniform_distribution_and_normal_moments():
    k = rng.key(7, "test", 0)
    u = np.array([rng.uniform(k, i) for i in range(20000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = np.array([rng.normal(k, i) for i in range(20000)])
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05


def test_keys_for_matches_scalar_key():
    ids = np.array([3, 10, 99], dtype=np.int64)
    ks = rng.keys_for(1, rng.stage_id("s"), ids, 0, 2)
    assert [int(k) for k in ks] == [rng.key(1, "s", i, 0, 2) for i in ids]


def test_generator_reproducible():
    a = rng.generator(3, "inject", 42, 1).normal(size=5)
    b = rng.generator(3, "inject", 42, 1).normal(size=5)
    c = rng.generator(3, "inject", 43, 1).normal(size=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)

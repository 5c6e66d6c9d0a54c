"""Counter-based random numbers keyed by (seed, stage, sample id, replicate, epoch).

DESIGN §5: every random draw is a pure function of its key and a counter, so results are
bit-identical whatever the number of workers, the chunking or the processing order.

The mixer is SplitMix64 (Steele, Lea & Flood 2014), a bijective 64-bit finaliser; a key is built
by folding each component into the state and re-mixing. Streams for different keys are
statistically independent for our purposes (each 64-bit output passes BigCrush as a counter
generator). Two interfaces:

* numba: :func:`mix_key`, :func:`uniform`, :func:`normal` for use inside kernels;
* numpy: :func:`generator` returns a ``numpy.random.Generator`` (Philox) seeded from the key,
  for per-sample parameter draws in stages.
"""

from __future__ import annotations

import hashlib

import numpy as np

from gen5dask.kernels._jit import jit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


def stage_id(name: str) -> int:
    """Stable 63-bit integer for a stage name (blake2b; independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFFFFFFFFFF


@jit
def splitmix64(x):
    """SplitMix64 finaliser of a uint64 (wrapping arithmetic)."""
    z = np.uint64(x) + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit
def mix_key(seed, stage, sample_id, replicate, epoch):
    """Key for one (seed, stage, sample id, replicate, epoch); all int64-compatible."""
    k = splitmix64(np.uint64(seed))
    k = splitmix64(k ^ np.uint64(stage))
    k = splitmix64(k ^ np.uint64(sample_id))
    k = splitmix64(k ^ np.uint64(replicate))
    k = splitmix64(k ^ np.uint64(epoch))
    return k


@jit
def uniform(key, counter):
    """Uniform float64 in [0, 1) for draw number ``counter`` of stream ``key``."""
    u = splitmix64(np.uint64(key) ^ splitmix64(np.uint64(counter)))
    return float(u >> _S11) * _INV53


@jit
def normal(key, counter):
    """Standard normal via Box-Muller from draws ``2*counter`` and ``2*counter+1``."""
    u1 = uniform(key, np.uint64(2) * np.uint64(counter))
    u2 = uniform(key, np.uint64(2) * np.uint64(counter) + np.uint64(1))
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


@jit
def keys_for(seed, stage, sample_ids, replicate, epoch):
    """Vector of keys for an int64 array of sample ids (one replicate / epoch)."""
    out = np.empty(sample_ids.shape[0], dtype=np.uint64)
    for i in range(sample_ids.shape[0]):
        out[i] = mix_key(seed, stage, sample_ids[i], replicate, epoch)
    return out


@jit
def uniforms(keys, counter):
    """``uniform(keys[i], counter)`` for every key (float64 array, same order)."""
    out = np.empty(keys.shape[0], dtype=np.float64)
    for i in range(keys.shape[0]):
        out[i] = uniform(keys[i], counter)
    return out


def key(seed: int, stage: str, sample_id: int, replicate: int = 0, epoch: int = 0) -> np.uint64:
    """uint64 key for one sample (see :func:`mix_key`); pass it to :func:`uniform`."""
    return np.uint64(
        mix_key(int(seed), stage_id(stage), int(sample_id), int(replicate), int(epoch))
    )


def generator(
    seed: int, stage: str, sample_id: int, replicate: int = 0, epoch: int = 0
) -> np.random.Generator:
    """A numpy Generator (Philox) whose stream depends only on the key components."""
    k = int(key(seed, stage, sample_id, replicate, epoch))
    return np.random.Generator(np.random.Philox(key=k))


__all__ = [
    "generator",
    "key",
    "keys_for",
    "mix_key",
    "normal",
    "splitmix64",
    "stage_id",
    "uniform",
    "uniforms",
]

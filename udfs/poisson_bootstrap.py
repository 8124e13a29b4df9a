"""Poisson(1) bootstrap weights from a hash of (seed, unit key, replicate).

Every unit gets, in every replicate, a weight drawn from Poisson(1): the inverse CDF of a
uniform taken from Spark's `xxhash64` of three longs. The weight depends on nothing but
those three numbers, so replicate sums are the same however the units are partitioned and
however many executors run. `poisson_weight` is the Spark column (built-in functions only:
no Python on executors, runs on Spark Connect); `numpy_weights` computes the very same
weights on one machine, for reference computations and tests.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyspark.sql import Column
from pyspark.sql import functions as F

_MANTISSA_BITS = 53
_MASK = (1 << _MANTISSA_BITS) - 1
_SCALE = 1.0 / float(1 << _MANTISSA_BITS)
#: Spark's `xxhash64` seed (XxHash64's default) and the XXH64 primes it uses.
_SPARK_SEED = 42
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
_U64 = np.uint64


def _poisson1_cdf(tail: float = 1e-15) -> tuple[float, ...]:
    """P(K <= k) for K ~ Poisson(1), for k = 0, 1, ... until the tail is below `tail`."""
    term = cdf = math.exp(-1.0)
    out = [cdf]
    k = 0
    while 1.0 - cdf >= tail:
        k += 1
        term /= k
        cdf += term
        out.append(cdf)
    return tuple(out)


#: The thresholds both implementations compare the same uniform against.
POISSON1_CDF = _poisson1_cdf()


def uniform_column(seed: int, unit_key: Column, replicate: Column) -> Column:
    """A double in [0, 1) from xxhash64(seed, unit key, replicate), all three as BIGINT."""
    hashed = F.xxhash64(
        F.lit(int(seed)).cast("bigint"), unit_key.cast("bigint"), replicate.cast("bigint")
    )
    return hashed.bitwiseAND(F.lit(_MASK)) * F.lit(_SCALE)


def poisson_weight(seed: int, unit_key: Column, replicate: Column) -> Column:
    """The unit's Poisson(1) weight in a replicate (INT): the smallest k with u < P(K <= k)."""
    u = uniform_column(seed, unit_key, replicate)
    weight: Column | None = None
    for k, threshold in enumerate(POISSON1_CDF):
        condition = u < F.lit(threshold)
        weight = F.when(condition, k) if weight is None else weight.when(condition, k)
    assert weight is not None
    return weight.otherwise(len(POISSON1_CDF)).cast("int")


def _rotl(x: NDArray[np.uint64], r: int) -> NDArray[np.uint64]:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _hash_long(value: NDArray[np.uint64], seed: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Spark's XxHash64Function.hashLong, vectorised over unsigned 64-bit arithmetic."""
    with np.errstate(over="ignore"):
        h = seed + _U64(_P5) + _U64(8)
        h ^= _rotl(value * _U64(_P2), 31) * _U64(_P1)
        h = _rotl(h, 27) * _U64(_P1) + _U64(_P4)
        h ^= h >> _U64(33)
        h *= _U64(_P2)
        h ^= h >> _U64(29)
        h *= _U64(_P3)
        h ^= h >> _U64(32)
    return h


def _as_u64(values: ArrayLike) -> NDArray[np.uint64]:
    return np.asarray(values, dtype=np.int64).astype(np.uint64)


def numpy_xxhash64(*columns: ArrayLike) -> NDArray[np.int64]:
    """Spark's `xxhash64` of BIGINT columns (no nulls), as signed 64-bit integers."""
    arrays = np.broadcast_arrays(*[_as_u64(c) for c in columns])
    h = np.full(arrays[0].shape, _SPARK_SEED, dtype=np.uint64)
    for column in arrays:
        h = _hash_long(column, h)
    return h.astype(np.int64)


def numpy_weights(seed: int, unit_keys: ArrayLike, replicates: int) -> NDArray[np.int64]:
    """Weights of units (rows) in replicates 0 .. replicates-1 (columns), as Spark draws them."""
    keys = np.asarray(unit_keys, dtype=np.int64)[:, None]
    b = np.arange(replicates, dtype=np.int64)[None, :]
    hashed = numpy_xxhash64(np.int64(seed), keys, b)
    u = (hashed & np.int64(_MASK)).astype(np.float64) * _SCALE
    return np.searchsorted(np.asarray(POISSON1_CDF), u, side="right").astype(np.int64)

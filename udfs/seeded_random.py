"""Seeded random numbers as Spark column expressions, independent of partitioning.

`rand()` and `sample()` draw from per-partition generators, so the same job run with another
partition count produces different data. Here every draw is a hash of (seed, salt, keys): a
row gets the same number wherever, whenever and however often it is computed, and distinct
salts give independent streams. Only built-in SQL functions are used, so the expressions
need no Python on executors and also run on Spark Connect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

from pyspark.sql import Column
from pyspark.sql import functions as F

ColumnOrName = Column | str
Number = float | Column
K = TypeVar("K")

_MANTISSA_BITS = 53
_MASK = (1 << _MANTISSA_BITS) - 1
_SCALE = float(1 << _MANTISSA_BITS)


def _num(value: Number) -> Column:
    return value if isinstance(value, Column) else F.lit(float(value))


# Plain Python numbers are used as operands wherever a Column accepts them: in classic
# PySpark every `F.lit` is a round trip to the JVM, and these expressions are large.


def hash64(seed: int, salt: str, *keys: ColumnOrName) -> Column:
    """The raw 64-bit hash behind every draw; the seed is always hashed as a BIGINT."""
    if not keys:
        raise ValueError("hash64 needs at least one key column, or every row draws the same")
    return F.xxhash64(F.expr(f"CAST({int(seed)} AS BIGINT)"), F.lit(salt), *keys)


def uniform(seed: int, salt: str, *keys: ColumnOrName) -> Column:
    """A double in [0, 1): the hash's low 53 bits, so every value is exactly representable."""
    return hash64(seed, salt, *keys).bitwiseAND(_MASK) * (1.0 / _SCALE)


def uniform_int(seed: int, salt: str, *keys: ColumnOrName, n: Number) -> Column:
    """An integer in [0, n), as BIGINT."""
    return F.floor(uniform(seed, salt, *keys) * n).cast("bigint")


def bernoulli(seed: int, salt: str, *keys: ColumnOrName, p: Number) -> Column:
    """True with probability `p` (a number or a per-row column)."""
    return uniform(seed, salt, *keys) < p


def normal(
    seed: int, salt: str, *keys: ColumnOrName, mean: Number = 0.0, sd: Number = 1.0
) -> Column:
    """Box-Muller from two independent uniforms; `1 - u` keeps the logarithm finite."""
    u1 = uniform(seed, f"{salt}#bm1", *keys)
    u2 = uniform(seed, f"{salt}#bm2", *keys)
    z = F.sqrt(F.log(1.0 - u1) * -2.0) * F.cos(u2 * (2.0 * math.pi))
    scaled = z * sd
    return scaled if isinstance(mean, float | int) and mean == 0 else scaled + mean


def lognormal(seed: int, salt: str, *keys: ColumnOrName, median: Number, sigma: Number) -> Column:
    """Parameterised by its median, the natural scale for durations and counts."""
    return F.exp(normal(seed, salt, *keys, sd=sigma)) * median


def exponential(seed: int, salt: str, *keys: ColumnOrName, mean: Number) -> Column:
    """Inverse CDF: waiting times between independent events."""
    return F.log(1.0 - uniform(seed, salt, *keys)) * (-mean)


def pareto(seed: int, salt: str, *keys: ColumnOrName, minimum: Number, alpha: Number) -> Column:
    """Inverse CDF of a Pareto(minimum, alpha): the heavy tail of audiences and activity."""
    survival = 1.0 - uniform(seed, salt, *keys)
    return F.pow(survival, -1.0 / alpha) * minimum


def poisson(
    seed: int, salt: str, *keys: ColumnOrName, lam: Number, exact_below: float = 2.0
) -> Column:
    """A Poisson-distributed count (BIGINT), for rates given per row.

    Below `exact_below` it is the exact inverse CDF, unrolled to a cut-off whose tail mass
    at `exact_below` is under 1e-8; terms are in closed form, so the expression grows with
    the square of the cut-off: keep `exact_below` near the largest rate you expect. At and
    above it, Anscombe's square-root normal approximation `round((sqrt(lam) + z/2)**2 - 1/4)`
    keeps the mean, variance and right skew. Pass an already-computed column as `lam`: it
    appears in every unrolled term.
    """
    if not 0 < exact_below <= 20:
        raise ValueError(f"exact_below must be in (0, 20], got {exact_below}")
    rate = _num(lam)
    top = _poisson_cutoff(exact_below)
    u = uniform(seed, salt, *keys)
    log_rate = F.log(rate)
    cdf: Column | None = None
    exact: Column | None = None
    for k in range(top):
        term = F.exp(log_rate * float(k) - rate - math.lgamma(k + 1.0)) if k else F.exp(-rate)
        cdf = term if cdf is None else cdf + term
        exact = F.when(u < cdf, k) if exact is None else exact.when(u < cdf, k)
    assert exact is not None
    z = normal(seed, f"{salt}#approx", *keys)
    root = F.greatest(F.lit(0.0), F.sqrt(rate) + z * 0.5)
    approx = F.greatest(F.lit(0.0), F.round(root * root - 0.25))
    return (
        F.when(rate <= 0.0, 0)
        .when(rate < exact_below, exact.otherwise(top))
        .otherwise(approx)
        .cast("bigint")
    )


def _poisson_cutoff(lam: float, tail: float = 1e-8) -> int:
    """Smallest k with P(X > k) < tail for X ~ Poisson(lam): where the exact branch stops."""
    term = math.exp(-lam)
    cdf, k = term, 0
    while 1.0 - cdf >= tail:
        k += 1
        term *= lam / k
        cdf += term
    return k


def sql_literal(value: object) -> str:
    """A Spark SQL literal for a str, bool, int or float (floats as DOUBLE, not DECIMAL)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L" if not -(2**31) <= value < 2**31 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no SQL literal for {value}")
        return f"{value!r}D"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")


def literal_array(values: Sequence[object]) -> Column:
    """An array literal as one expression (one JVM call, where `F.array` of lits is many)."""
    if not values:
        raise ValueError("literal_array needs at least one value")
    return F.expr(f"array({', '.join(sql_literal(v) for v in values)})")


def literal_map(mapping: Mapping[str, object]) -> Column:
    """A map literal as one expression."""
    if not mapping:
        raise ValueError("literal_map needs at least one entry")
    pairs = ", ".join(f"{sql_literal(k)}, {sql_literal(v)}" for k, v in mapping.items())
    return F.expr(f"map({pairs})")


def _alias_tables(weights: Sequence[float]) -> tuple[list[float], list[int]]:
    """Vose's alias tables: column i keeps i with probability prob[i], else takes alias[i]."""
    n = len(weights)
    total = sum(weights)
    scaled = [w * n / total for w in weights]
    prob, alias = [1.0] * n, list(range(n))
    small = [i for i, p in enumerate(scaled) if p < 1.0]
    large = [i for i, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


def categorical(u: Column, weights: Mapping[K, float]) -> Column:
    """Map a uniform to a category with exact probabilities (weights need not sum to one).

    Walker's alias method: the integer part of `u * n` picks a column of the alias table and
    the fractional part decides between the column and its alias, so a row costs two array
    lookups however many categories there are, and the expression stays small.
    """
    items = [(value, float(weight)) for value, weight in weights.items()]
    if not items:
        raise ValueError("categorical needs at least one category")
    if any(weight < 0 or not math.isfinite(weight) for _, weight in items):
        raise ValueError(f"categorical weights must be finite and non-negative: {dict(weights)}")
    if sum(weight for _, weight in items) <= 0:
        raise ValueError("categorical weights must not all be zero")
    n = len(items)
    if n == 1:
        return F.lit(items[0][0])
    prob, alias = _alias_tables([weight for _, weight in items])
    scaled = u * float(n)
    column = F.least(F.floor(scaled).cast("int"), F.lit(n - 1))
    keep = (scaled - column) < F.element_at(literal_array(prob), column + 1)
    index = F.when(keep, column).otherwise(F.element_at(literal_array(alias), column + 1))
    return F.element_at(literal_array([value for value, _ in items]), index + 1)

"""Experiment aggregates in Spark, from a unit-level frame to per-arm sufficient statistics.

The unit-level frame has one row per (metric, variant, unit) with the unit's metric
numerator `y` and denominator `x` (1 for a mean or proportion), its pre-period covariate
`cy`, `cx` (0 without one) and `unit_key`, a 64-bit hash of the unit id. Two aggregations
run over it, both as plain grouped sums:

- `moment_frame`: per (metric, variant) the unit count and the sums and cross products of
  (y, x, cy, cx): everything the delta method and CUPED need (`stats.Moments`);
- `replicate_frame`: per (metric, variant, replicate) the Poisson-bootstrap weighted sums of
  y and x. Each unit row meets the replicate numbers 0..B-1 inside the aggregation's
  pipeline; partial aggregation keeps one row per (metric, variant, replicate) per task, so
  the B copies are never stored or shuffled.

Sums are exact (DECIMAL moments, cross products summed in exact pieces; replicate sums as
longs of fixed-point values, 4x faster than DECIMAL): the results are identical for any
partitioning and any number of executors, not merely close.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from itertools import combinations_with_replacement

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.experiments.stats import Moments
from udfs.exact_moments import centered
from udfs.poisson_bootstrap import POISSON1_CDF, poisson_weight

#: Per-unit values are rounded to 10 decimals and must stay below 1e12 in magnitude.
EXACT = "decimal(22,10)"
#: Replicate sums are longs in units of 10^-digits, digits at most MAX_DIGITS.
MAX_DIGITS = 10
LONG_MAX = float(2**63 - 1)
VECTOR = ("y", "x", "cy", "cx")
ARM = ("metric", "variant")


def exact(column: str) -> Column:
    return F.col(column).cast(EXACT)


#: A cross product is summed in these pieces (see `_split`), each exact in DECIMAL(38,*).
PIECES = ("hh", "hl", "lh", "ll")


def _split(column: str) -> tuple[Column, Column]:
    """A value v (rounded to EXACT) as its whole part h = floor(v), a DECIMAL(13,0), and its
    fraction l = v - h in [0, 1), a DECIMAL(11,10): every product of two pieces then fits
    DECIMAL(38,*) exactly (a product of two DECIMAL(22,10) would be rounded by Spark to 13
    decimals), and so do their sums over billions of units."""
    value = exact(column)
    whole_part = F.floor(value)
    return whole_part, (value - whole_part).cast("decimal(11,10)")


def moment_frame(units: DataFrame) -> DataFrame:
    """Per (metric, variant): n, sums `s_<a>` and, per cross product of VECTOR, its pieces
    `c_<a>_<b>_<hh|hl|lh|ll>` (sum of h_a h_b, h_a l_b, l_a h_b, l_a l_b): exact sums whose
    total `collect_moments` puts back together."""
    pieces = {a: _split(a) for a in VECTOR}
    aggs = [F.count(F.lit(1)).alias("n")]
    aggs += [F.sum(exact(a)).alias(f"s_{a}") for a in VECTOR]
    for a, b in combinations_with_replacement(VECTOR, 2):
        (ha, la), (hb, lb) = pieces[a], pieces[b]
        for name, product in zip(PIECES, (ha * hb, ha * lb, la * hb, la * lb), strict=True):
            aggs.append(F.sum(product).alias(f"c_{a}_{b}_{name}"))
    return units.groupBy(*ARM).agg(*aggs)


def _digits_for(n: int, largest: float) -> int:
    """Decimals that keep n values up to `largest`, times Poisson(1) weights, inside a long."""
    if n == 0 or largest == 0.0:
        return MAX_DIGITS
    # The weights' sum is Poisson(n): beyond n + 10 sqrt(n) + 18 with probability < 1e-20,
    # and never above 18 n (the largest weight the inverse CDF gives).
    weights = min(float(len(POISSON1_CDF)) * n, n + 10.0 * np.sqrt(n) + len(POISSON1_CDF))
    digits = int(np.floor(np.log10(LONG_MAX / (weights * largest))))
    if digits < 0:
        raise ValueError(
            f"per-unit values up to {largest:g} over {n:,} units are too large for exact "
            "replicate sums; rescale the metric (e.g. seconds to hours)"
        )
    return min(digits, MAX_DIGITS)


def fixed_point_digits(units: DataFrame) -> dict[str, tuple[int, int]]:
    """Per metric, the decimal digits kept of each unit's y and of its x in the replicate
    sums: as many as fit (at most 10) so that no replicate sum can overflow a long."""
    rows = (
        units.groupBy("metric")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.max(F.abs("y")).alias("my"),
            F.max(F.abs("x")).alias("mx"),
        )
        .collect()
    )
    return {
        str(r["metric"]): (
            _digits_for(int(r["n"]), float(r["my"] or 0.0)),
            _digits_for(int(r["n"]), float(r["mx"] or 0.0)),
        )
        for r in rows
    }


def _fixed(column: str, digits: dict[str, int]) -> tuple[Column, Column]:
    """The unit's value in units of 10^-d (d: its metric's digits), rounded once per unit
    with exact decimal maths; and d itself."""
    value = F.col(column).cast("decimal(38,18)")
    scaled: Column | None = None
    chosen: Column | None = None
    for metric, d in digits.items():
        is_metric = F.col("metric") == F.lit(metric)
        term = F.round(value * F.lit(10**d).cast("decimal(38,0)")).cast("long")
        scaled = F.when(is_metric, term) if scaled is None else scaled.when(is_metric, term)
        chosen = F.when(is_metric, d) if chosen is None else chosen.when(is_metric, d)
    if scaled is None or chosen is None:
        return F.lit(0).cast("long"), F.lit(0)
    return scaled, chosen


def replicate_frame(
    units: DataFrame,
    replicates: int,
    seed: int,
    digits: dict[str, tuple[int, int]] | None = None,
) -> DataFrame:
    """Per (metric, variant, replicate): the Poisson(1)-weighted sums of y and x, as longs
    in units of 10^-digits (`w_y`, `w_x`, with `digits_y`, `digits_x` beside them), and of
    the weights.

    Each unit's values are rounded to its metric's digits once; the sums over units are
    then exact integer sums, hence identical for any partitioning (Spark fails on a long
    overflow, which `fixed_point_digits` rules out)."""
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    digits = fixed_point_digits(units) if digits is None else digits
    fy, dy = _fixed("y", {m: d[0] for m, d in digits.items()})
    fx, dx = _fixed("x", {m: d[1] for m, d in digits.items()})
    numbered = units.select(
        *ARM,
        "unit_key",
        fy.alias("fy"),
        fx.alias("fx"),
        F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("replicate"),
    )
    w = poisson_weight(seed, F.col("unit_key"), F.col("replicate")).cast("long")
    sums = numbered.groupBy(*ARM, "replicate").agg(
        F.sum(w * F.col("fy")).alias("w_y"),
        F.sum(w * F.col("fx")).alias("w_x"),
        F.sum(w).alias("w"),
    )
    return sums.select("*", dy.alias("digits_y"), dx.alias("digits_x"))


def _exact(value: Decimal | float | int | None) -> Fraction:
    return Fraction(0) if value is None else Fraction(value)


def collect_moments(moments: DataFrame) -> dict[tuple[str, str], Moments]:
    """The (small) moment frame as `Moments` per (metric, variant).

    The cross products are exact sums, and the centered ones `c - s s' / n` are computed
    from them in rational arithmetic (`udfs.exact_moments.centered`, as for the catalog's
    intervals), so no variance is lost to cancellation whatever the values' level."""
    out: dict[tuple[str, str], Moments] = {}
    for row in moments.collect():
        n = int(row["n"])
        exact_sums = [_exact(row[f"s_{a}"]) for a in VECTOR]
        sums = np.array([float(s) for s in exact_sums])
        cross, centered_cross = np.zeros((4, 4)), np.zeros((4, 4))
        for (i, a), (j, b) in combinations_with_replacement(enumerate(VECTOR), 2):
            c = sum((_exact(row[f"c_{a}_{b}_{p}"]) for p in PIECES), Fraction(0))
            cross[i, j] = cross[j, i] = float(c)
            if n:
                value = float(centered(exact_sums[i], exact_sums[j], c, n))
                centered_cross[i, j] = centered_cross[j, i] = value
        out[(row["metric"], row["variant"])] = Moments(n, sums, cross, centered_cross)
    return out


def collect_replicates(
    replicate_sums: DataFrame, replicates: int
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per (metric, variant): the weighted sums of y and of x, indexed by replicate."""
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for row in replicate_sums.collect():
        key = (row["metric"], row["variant"])
        if key not in out:
            out[key] = (np.zeros(replicates), np.zeros(replicates))
        y, x = out[key]
        y[row["replicate"]] = int(row["w_y"]) / 10.0 ** int(row["digits_y"])
        x[row["replicate"]] = int(row["w_x"]) / 10.0 ** int(row["digits_x"])
    return out

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

Sums are DECIMAL, hence exact: the results are identical for any partitioning and any
number of executors, not merely close.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import combinations_with_replacement

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.experiments.stats import Moments
from udfs.poisson_bootstrap import poisson_weight

#: Per-unit values are rounded to 10 decimals and must stay below 1e12 in magnitude.
EXACT = "decimal(22,10)"
VECTOR = ("y", "x", "cy", "cx")
ARM = ("metric", "variant")


def exact(column: str) -> Column:
    return F.col(column).cast(EXACT)


def moment_frame(units: DataFrame) -> DataFrame:
    """Per (metric, variant): n, sums `s_<a>` and cross products `c_<a>_<b>` of VECTOR."""
    aggs = [F.count(F.lit(1)).alias("n")]
    aggs += [F.sum(exact(a)).alias(f"s_{a}") for a in VECTOR]
    aggs += [
        F.sum(exact(a) * exact(b)).alias(f"c_{a}_{b}")
        for a, b in combinations_with_replacement(VECTOR, 2)
    ]
    return units.groupBy(*ARM).agg(*aggs)


def replicate_frame(units: DataFrame, replicates: int, seed: int) -> DataFrame:
    """Per (metric, variant, replicate): Poisson(1)-weighted sums of y and x, and weights."""
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    numbered = units.select(
        *ARM,
        "unit_key",
        "y",
        "x",
        F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("replicate"),
    )
    w = poisson_weight(seed, F.col("unit_key"), F.col("replicate"))
    return numbered.groupBy(*ARM, "replicate").agg(
        F.sum(w * exact("y")).alias("w_y"),
        F.sum(w * exact("x")).alias("w_x"),
        F.sum(w).cast("long").alias("w"),
    )


def _number(value: Decimal | float | int | None) -> float:
    return 0.0 if value is None else float(value)


def collect_moments(moments: DataFrame) -> dict[tuple[str, str], Moments]:
    """The (small) moment frame as `Moments` per (metric, variant)."""
    out: dict[tuple[str, str], Moments] = {}
    for row in moments.collect():
        sums = np.array([_number(row[f"s_{a}"]) for a in VECTOR])
        cross = np.zeros((4, 4))
        for (i, a), (j, b) in combinations_with_replacement(enumerate(VECTOR), 2):
            cross[i, j] = cross[j, i] = _number(row[f"c_{a}_{b}"])
        out[(row["metric"], row["variant"])] = Moments(int(row["n"]), sums, cross)
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
        y[row["replicate"]] = _number(row["w_y"])
        x[row["replicate"]] = _number(row["w_x"])
    return out

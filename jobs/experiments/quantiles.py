"""Poisson-bootstrap intervals for event-level quantiles whose events cluster by unit.

Every event carries its unit's Poisson(1) weight in each replicate, so a replicate's
quantile is the weighted quantile of the arm's events: the smallest value v with
(weighted events <= v) >= q * (weighted events). Computing it needs no per-replicate copy
of the events. Each arm gets a grid of G candidate values (approximate percentiles of its
events over q +- 6 standard errors, where the standard error uses the unit count and so
bounds any clustering); each event is binned on that grid, and one Spark aggregation
gives, per (replicate, bin), the weighted count of the events in it: sum over units of
weight x count. The driver accumulates those B x (G + 1) numbers per arm. A replicate's
quantile is then the smallest grid value at or above its exact weighted quantile: the same
answer as a single-machine weighted quantile rounded up to the grid.

The point estimate is Spark's exact `percentile`, as in the metric catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from udfs.poisson_bootstrap import poisson_weight

log = logging.getLogger(__name__)

#: Candidate values per arm, and how many standard errors of q the grid spans either side.
GRID_SIZE = 400
GRID_SPAN_SE = 6.0
ARM = ("metric", "variant")


@dataclass(frozen=True)
class QuantileArm:
    """One arm's quantile estimate and its replicate quantiles."""

    point: float
    replicates: NDArray[np.float64]
    grid: NDArray[np.float64]
    clipped: int  # replicates whose quantile fell outside the grid (clamped to its edge)


def grid_probabilities(q: float, units: int, size: int = GRID_SIZE) -> list[float]:
    """`size` probabilities around q: q +- GRID_SPAN_SE standard errors (unit count as n)."""
    half = GRID_SPAN_SE * float(np.sqrt(q * (1 - q) / max(units, 1)))
    low, high = max(0.0, q - half), min(1.0, q + half)
    return [float(p) for p in np.linspace(low, high, size)]


def replicate_quantile(
    grid: NDArray[np.float64], bin_weights: NDArray[np.float64], q: float
) -> tuple[NDArray[np.float64], int]:
    """Per replicate (rows of `bin_weights`, G + 1 columns: bin k holds the weighted events
    in (grid[k-1], grid[k]], the last bin those above the grid) the smallest grid value
    whose weighted count at or below it reaches q of the total; and how many replicates
    had to be clamped to the grid's edge."""
    cumulative = np.cumsum(bin_weights, axis=1)
    total = cumulative[:, -1:]
    reached = cumulative[:, :-1] >= q * total
    index = np.where(reached.any(axis=1), reached.argmax(axis=1), len(grid) - 1)
    clipped = int(np.sum(~reached.any(axis=1)) + np.sum(reached[:, 0] & (bin_weights[:, 0] > 0)))
    return grid[index], clipped


def quantile_arms(
    events: DataFrame,
    levels: dict[str, float],
    units: dict[tuple[str, str], int],
    replicates: int,
    seed: int,
) -> dict[tuple[str, str], QuantileArm]:
    """Point quantiles and replicate quantiles per (metric, variant) of `events` (columns
    metric, variant, unit_key, value). `levels`: metric -> q; `units`: units per arm."""
    points: dict[tuple[str, str], float] = {}
    grids: dict[tuple[str, str], NDArray[np.float64]] = {}
    for metric, q in levels.items():
        # One grid for all arms of a metric, sized by its smallest arm.
        n = min((count for (m, _), count in units.items() if m == metric), default=1)
        rows = (
            events.where(F.col("metric") == metric)
            .groupBy("variant")
            .agg(
                F.percentile("value", F.lit(q)).alias("point"),
                F.percentile_approx("value", grid_probabilities(q, n), 100_000).alias("grid"),
            )
            .collect()
        )
        for row in rows:
            points[(metric, row["variant"])] = float(row["point"])
            grids[(metric, row["variant"])] = np.unique(np.asarray(row["grid"], dtype=float))
    if not grids:
        return {}
    grid_rows = events.sparkSession.createDataFrame(
        [(m, v, [float(x) for x in g]) for (m, v), g in grids.items()],
        "metric string, variant string, grid array<double>",
    )
    binned = events.join(F.broadcast(grid_rows), on=list(ARM)).select(
        *ARM,
        "unit_key",
        F.size(F.filter(F.col("grid"), lambda t: t < F.col("value"))).alias("bin"),
    )
    per_unit = binned.groupBy(*ARM, "unit_key", "bin").agg(F.count(F.lit(1)).alias("c"))
    numbered = per_unit.select(
        "*", F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("replicate")
    )
    w = poisson_weight(seed, F.col("unit_key"), F.col("replicate"))
    sums = numbered.groupBy(*ARM, "replicate", "bin").agg(F.sum(w * F.col("c")).alias("wc"))
    out: dict[tuple[str, str], QuantileArm] = {}
    tables = {arm: np.zeros((replicates, len(g) + 1)) for arm, g in grids.items()}
    for row in sums.collect():
        tables[(row["metric"], row["variant"])][row["replicate"], row["bin"]] = float(row["wc"])
    for arm, grid in grids.items():
        values, clipped = replicate_quantile(grid, tables[arm], levels[arm[0]])
        if clipped:
            log.warning(
                "%s: %d of %d bootstrap quantiles fell at the grid's edge", arm, clipped, replicates
            )
        out[arm] = QuantileArm(points[arm], values, grid, clipped)
    return out

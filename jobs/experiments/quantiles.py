"""Poisson-bootstrap intervals for event-level quantiles whose events cluster by unit.

Every event carries its unit's Poisson(1) weight in each replicate, so a replicate's
quantile is the weighted quantile of the arm's events: the smallest value v with
(weighted events <= v) >= q * (weighted events). Computing it needs no per-replicate copy
of the events. Each arm gets a grid of G candidate values (exact percentiles of its
events over q +- 6 standard errors, where the standard error uses the unit count and so
bounds most clustering); each event is binned on that grid, and one Spark aggregation
gives, per (replicate, bin), the weighted count of the events in it: sum over units of
weight x count. The driver accumulates those B x (G + 1) numbers per arm. A replicate's
quantile is then the smallest grid value at or above its exact weighted quantile: the same
answer as a single-machine weighted quantile rounded up to the grid.

A replicate whose quantile falls outside its arm's grid (a few units holding most events
can move a quantile far beyond q +- 6 SE) is never clamped: the arm's grid is widened
(4x the span, up to 4x the candidates) and its replicates recomputed, until none falls
outside. A grid spanning probabilities [0, 1] ends at the arm's exact minimum and maximum,
which no weighted quantile can leave, so the widening always ends; `QuantileGridError`
guards the impossible case.

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
#: Each widening multiplies the span by GROWTH and the candidates by 2, up to MAX_GRID_SIZE.
GROWTH = 4.0
MAX_GRID_SIZE = 4 * GRID_SIZE
#: More rounds than a grid needs to reach [0, 1] from 6 SE at any unit count below 1e18.
MAX_ROUNDS = 40
ARM = ("metric", "variant")
Arm = tuple[str, str]


class QuantileGridError(RuntimeError):
    """Bootstrap quantiles fell outside a grid that already spans the arm's whole range."""


@dataclass(frozen=True)
class QuantileArm:
    """One arm's quantile estimate and its replicate quantiles."""

    point: float
    replicates: NDArray[np.float64]
    grid: NDArray[np.float64]
    clipped: int  # replicates outside the final grid: always 0 (kept for readers)
    span_se: float = GRID_SPAN_SE  # the final grid's half-width in standard errors of q


@dataclass(frozen=True)
class _Grid:
    """An arm's candidate values, and whether its ends are the arm's exact extremes."""

    values: NDArray[np.float64]
    starts_at_min: bool
    ends_at_max: bool


def grid_probabilities(
    q: float, units: int, size: int = GRID_SIZE, span_se: float = GRID_SPAN_SE
) -> list[float]:
    """`size` probabilities around q: q +- span_se standard errors (unit count as n)."""
    half = span_se * float(np.sqrt(q * (1 - q) / max(units, 1)))
    low, high = max(0.0, q - half), min(1.0, q + half)
    return [float(p) for p in np.linspace(low, high, size)]


def replicate_quantile(
    grid: NDArray[np.float64],
    bin_weights: NDArray[np.float64],
    q: float,
    starts_at_min: bool = False,
    ends_at_max: bool = False,
) -> tuple[NDArray[np.float64], int]:
    """Per replicate (rows of `bin_weights`, G + 1 columns: bin 0 holds the weighted events
    at or below grid[0], bin k the events in (grid[k-1], grid[k]], the last bin those above
    the grid) the smallest grid value whose weighted count at or below it reaches q of the
    total; and how many replicates fall outside the grid (their exact quantile is below
    grid[0] or above grid[-1], so the grid value would be wrong). A grid that starts at the
    arm's minimum (or ends at its maximum) cannot be left on that side."""
    cumulative = np.cumsum(bin_weights, axis=1)
    total = cumulative[:, -1:]
    reached = cumulative[:, :-1] >= q * total
    index = np.where(reached.any(axis=1), reached.argmax(axis=1), len(grid) - 1)
    above = ~reached.any(axis=1) if not ends_at_max else np.zeros(len(index), dtype=bool)
    below = (
        reached[:, 0] & (bin_weights[:, 0] > 0)
        if not starts_at_min
        else np.zeros(len(index), dtype=bool)
    )
    return grid[index], int(np.sum(above) + np.sum(below))


def _grids(
    events: DataFrame,
    metric: str,
    q: float,
    units: int,
    shapes: dict[str, tuple[float, int]],
    with_points: bool,
) -> tuple[dict[str, _Grid], dict[str, float]]:
    """Per variant of `shapes` (variant -> (span in SE, candidates)): its grid (exact
    percentiles over q +- span SE, ends replaced by the exact extremes where the span
    reaches 0 or 1) and, `with_points`, its exact quantile."""
    distinct = sorted(set(shapes.values()))
    # Every grid and the point from one exact percentile aggregate (one buffer per arm): the
    # same values for any partitioning, unlike percentile_approx's sketch beyond some tens of
    # thousands of events.
    wanted = [q] + [p for span, size in distinct for p in grid_probabilities(q, units, size, span)]
    aggs = [
        F.min("value").alias("low"),
        F.max("value").alias("high"),
        F.percentile("value", F.array(*[F.lit(p) for p in wanted])).alias("exact"),
    ]
    rows = (
        events.where((F.col("metric") == metric) & F.col("variant").isin(list(shapes)))
        .groupBy("variant")
        .agg(*aggs)
        .collect()
    )
    offsets, start = {}, 1
    for span, size in distinct:
        offsets[(span, size)] = start
        start += size
    grids, points = {}, {}
    for row in rows:
        variant = str(row["variant"])
        span, size = shapes[variant]
        probabilities = grid_probabilities(q, units, size, span)
        first = offsets[(span, size)]
        values = np.asarray(row["exact"][first : first + size], dtype=float)
        at_min, at_max = probabilities[0] == 0.0, probabilities[-1] == 1.0
        if at_min:
            values[0] = float(row["low"])
        if at_max:
            values[-1] = float(row["high"])
        grids[variant] = _Grid(np.unique(values), at_min, at_max)
        if with_points:
            points[variant] = float(row["exact"][0])
    return grids, points


def _bin_tables(
    events: DataFrame, grids: dict[Arm, _Grid], replicates: int, seed: int
) -> dict[Arm, NDArray[np.float64]]:
    """Per arm, the (replicates x (G + 1)) weighted event counts per bin of its grid."""
    grid_rows = events.sparkSession.createDataFrame(
        [(m, v, [float(x) for x in g.values]) for (m, v), g in grids.items()],
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
    tables = {arm: np.zeros((replicates, len(g.values) + 1)) for arm, g in grids.items()}
    for row in sums.collect():
        tables[(row["metric"], row["variant"])][row["replicate"], row["bin"]] = float(row["wc"])
    return tables


def quantile_arms(
    events: DataFrame,
    levels: dict[str, float],
    units: dict[tuple[str, str], int],
    replicates: int,
    seed: int,
) -> dict[tuple[str, str], QuantileArm]:
    """Point quantiles and replicate quantiles per (metric, variant) of `events` (columns
    metric, variant, unit_key, value). `levels`: metric -> q; `units`: units per arm."""
    # One span for all arms of a metric at first, sized by its smallest arm.
    smallest = {
        metric: min((count for (m, _), count in units.items() if m == metric), default=1)
        for metric in levels
    }
    variants = sorted({v for _, v in units})
    spans: dict[Arm, float] = {(m, v): GRID_SPAN_SE for m in levels for v in variants}
    sizes: dict[Arm, int] = dict.fromkeys(spans, GRID_SIZE)
    points: dict[Arm, float] = {}
    out: dict[Arm, QuantileArm] = {}
    pending = set(spans)
    for round_number in range(1, MAX_ROUNDS + 1):
        grids: dict[Arm, _Grid] = {}
        for metric, q in levels.items():
            shapes = {v: (spans[(m, v)], sizes[(m, v)]) for m, v in sorted(pending) if m == metric}
            if not shapes:
                continue
            found, found_points = _grids(
                events, metric, q, smallest[metric], shapes, with_points=round_number == 1
            )
            grids.update({(metric, v): g for v, g in found.items()})
            points.update({(metric, v): p for v, p in found_points.items()})
        if not grids:
            return out
        tables = _bin_tables(events, grids, replicates, seed)
        pending = set()
        for arm, grid in grids.items():
            values, outside = replicate_quantile(
                grid.values, tables[arm], levels[arm[0]], grid.starts_at_min, grid.ends_at_max
            )
            if not outside:
                out[arm] = QuantileArm(points[arm], values, grid.values, 0, spans[arm])
                continue
            if grid.starts_at_min and grid.ends_at_max:
                raise QuantileGridError(
                    f"{arm}: {outside} of {replicates} bootstrap quantiles fell outside a grid "
                    "spanning the arm's whole range; please report this as a bug"
                )
            log.info(
                "%s: %d of %d bootstrap quantiles fell outside the grid of +-%g SE; widening "
                "it to +-%g SE (round %d)",
                arm,
                outside,
                replicates,
                spans[arm],
                spans[arm] * GROWTH,
                round_number,
            )
            spans[arm] *= GROWTH
            sizes[arm] = min(2 * sizes[arm], MAX_GRID_SIZE)
            pending.add(arm)
        if not pending:
            return out
    raise QuantileGridError(
        f"bootstrap quantiles of {sorted(pending)} still fell outside their grids after "
        f"{MAX_ROUNDS} widenings"
    )

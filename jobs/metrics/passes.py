"""One pass: a single scan of a source computing every part, slice and window of a plan.

The scanned rows are shuffled once, by unit. Then each row is expanded (Spark's Expand,
written out so it runs on any engine) once per output period its windows reach and once per
grouping set, and three branches aggregate them:
- units: per (period, window, set, dimensions, unit), within the unit's partition, so no
  second shuffle: per-unit sums for clustered variances, and distinct units for suppression
  (and for distinct counts of the unit itself);
- values: per (period, window, set, kind, dimensions, value) for exact distinct counts of
  other columns, and per value with its frequency for exact quantiles;
- sketches: per (period, window, finest cell) a mergeable HyperLogLog sketch for approximate
  distinct counts (one update per row and part), unioned into each slice's cell.
Level 2 aggregates each branch's rows per cell (period, window, set, dimensions) on its own,
so the big unit branch carries no test of which branch a row came from; the small per-cell
results are then combined: one wide row per cell with named statistics per part.
Dimensions travel as 64-bit hashes of their values (fixed-width columns to shuffle and group
by) and are decoded per cell from a small dictionary of the source's values.

This module assembles a pass (`pass_frame`); its pieces: `pass_columns` (statistic names,
presence flags), `pass_periods` (periods, windows, the expansion), `pass_units`,
`pass_values` (the branches) and `pass_dimensions` (hashes, dictionary, roll-ups);
`pass_runs` runs a plan's passes.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import ALL, HLL_LG_K, Part, QuantilePart
from jobs.metrics.pass_columns import (
    ANON,
    CELL,
    flags,
    is_input,
    is_stat_column,
    kinds,
    quantile_stat,
    stat,
    unit_inputs,
)
from jobs.metrics.pass_dimensions import decoded, dimension_dictionary, dimension_hash
from jobs.metrics.pass_periods import output_periods, windows_reading
from jobs.metrics.pass_units import unit_level, unit_level2
from jobs.metrics.pass_values import sketch_level, sketch_level2, value_level, value_level2
from jobs.metrics.planner import PassPlan, slice_set_name
from jobs.metrics.sources import dim_column


def _combine(branches: list[DataFrame], plan: PassPlan) -> DataFrame:
    """One row per cell from the branches' per-cell rows (each statistic comes from exactly
    one branch); a statistic a cell lacks is 0 (quantiles: null)."""
    if len(branches) == 1:
        combined = branches[0]
    else:
        union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), branches)
        keys = [*CELL, *plan.dimensions]
        stats = [c for c in union.columns if c not in keys]
        combined = union.groupBy(*keys).agg(*[F.first(c, ignorenulls=True).alias(c) for c in stats])
    zero_filled = {
        c: F.coalesce(F.col(c), F.lit(0).cast(dtype))
        for c, dtype in combined.dtypes
        if is_stat_column(c) and not dtype.startswith("array")
    }
    return combined.withColumns(zero_filled)


def _with_quantile_levels(df: DataFrame, plan: PassPlan) -> DataFrame:
    levels = dict(plan.quantiles)
    extra = [
        F.col(stat(q.key, "quantiles"))[i].alias(quantile_stat(q.key, level))
        for q in plan.quantile_parts
        for i, level in enumerate(levels[q.key])
    ]
    return df.select("*", *extra).drop(*[stat(q.key, "quantiles") for q in plan.quantile_parts])


def slice_columns(plan: PassPlan) -> list[Column]:
    """Slice set name and canonical slice id for a pass result's grouping set index `s`."""
    names = F.element_at(
        F.array(*[F.lit(slice_set_name(s)) for s in plan.slice_sets]), F.col("s") + 1
    )
    ids = []
    for s_index, slice_set in enumerate(plan.slice_sets):
        if slice_set:
            text = F.concat_ws("|", *[F.concat(F.lit(f"{d}="), F.col(d)) for d in slice_set])
        else:
            text = F.lit(ALL)
        ids.append(F.when(F.col("s") == s_index, text))
    return [names.alias("slice_set"), F.coalesce(*ids).alias("slice_id")]


def shuffled_by_unit(rows: DataFrame, unit: str, partitions: int | None) -> DataFrame:
    """`rows` with `ANON`, shuffled so that each unit's rows share a partition. A row
    without a unit is a cluster of its own, keyed by a hash of its contents: that also
    spreads such rows over the partitions instead of sending them all to one."""
    lone = F.when(F.col(unit).isNull(), F.xxhash64(*[F.col(c) for c in rows.columns]))
    keyed = rows.withColumn(ANON, lone)
    by = [F.col(unit), F.col(ANON)]
    return keyed.repartition(partitions, *by) if partitions else keyed.repartition(*by)


def pass_frame(
    prepared: DataFrame,
    plan: PassPlan,
    time_column: str,
    unit: str,
    start: dt.date,
    end: dt.date,
    unit_partitions: int | None = None,
    hll_lg_k: int = HLL_LG_K,
    hashed: bool = True,
    unit_rows: DataFrame | None = None,
) -> DataFrame:
    """The pass's wide result: one row per (period, window, slice) with every statistic;
    if `hashed`, also `__conflicts` (see `decoded`), which must sum to 0.

    `hashed` carries each dimension as a 64-bit hash of its value until the cells are
    formed, then decodes it: narrow, fixed-width columns to shuffle and group by. A pass
    with unit attributes must be hashed. `unit_partitions` fixes the number of partitions
    of the shuffle by unit (adaptive execution would merge them into fewer, larger ones,
    whose per-unit hash tables spill).

    `unit_rows`: the same rows as `prepared`, for the unit branch: the one branch that reads
    each row exactly once (a source contract counts the rows there, see `contracts`)."""
    assert hashed or not plan.attributes, "unit attributes are grouped by their hashes"
    raw = prepared
    counted = prepared if unit_rows is None else unit_rows
    if hashed:
        dims = {dim_column(d): dimension_hash(F.col(dim_column(d))) for d in plan.dimensions}
        prepared = prepared.withColumns(dims)
        counted = counted.withColumns(dims)
    keys: list[Column | str] = [time_column, F.col(unit), *[dim_column(d) for d in plan.dimensions]]

    def narrow(frame: DataFrame) -> DataFrame:
        return frame.select(*keys, *[c for c in frame.columns if is_input(c)])

    # The one big shuffle: rows by unit, before any expansion, so that the unit branch groups
    # within partitions. The other branches group by other keys: they read the source's
    # columns they need again, which costs less than a shuffle of them by unit.
    shuffled = shuffled_by_unit(narrow(unit_inputs(counted, plan)), unit, unit_partitions)
    by_unit = output_periods(shuffled, plan, time_column, start, end)
    flagged = narrow(flags(prepared, plan))
    kind_of = kinds(plan)

    def periods(parts: tuple[Part | QuantilePart, ...]) -> DataFrame:
        windows = windows_reading(plan, {kind_of[p.key] for p in parts})
        return output_periods(flagged, plan, time_column, start, end, windows or None)

    values = value_level(periods((*plan.value_parts, *plan.quantile_parts)), plan)
    sketches = sketch_level(periods(plan.sketch_parts), plan, hll_lg_k)
    branches = [unit_level2(unit_level(by_unit, plan, unit), plan)]
    if values is not None:
        branches.append(value_level2(values, plan))
    if sketches is not None:
        branches.append(sketch_level2(sketches, plan))
    result = _with_quantile_levels(_combine(branches, plan), plan)
    if hashed:
        result = decoded(result, plan, dimension_dictionary(raw, plan))
    window = F.element_at(F.array(*[F.lit(w) for w in plan.windows]), F.col("__w") + 1)
    named = result.withColumn("__w", window).withColumnsRenamed({"__t": "period", "__w": "window"})
    return named.select("*", *slice_columns(plan))

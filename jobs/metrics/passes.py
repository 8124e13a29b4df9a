"""One pass: a single scan of a source computing every part, slice and window of a plan.

The scanned rows are shuffled once, by unit. Then each row is expanded (Spark's Expand,
written out so it runs on any engine) once per output period its windows reach and once per
grouping set, and three branches aggregate them:
- units: per (period, window, set, dimensions, unit), within the unit's partition, so no
  second shuffle: per-unit sums for clustered variances, and distinct units for suppression
  (and for distinct counts of the unit itself);
- values: per (period, window, set, kind, dimensions, value) for exact distinct counts of
  other columns, and per value with its frequency for exact quantiles;
- sketches: per (period, window, set, dimensions) a HyperLogLog++ sketch for approximate
  distinct counts, combined map-side.
Level 2 aggregates the branches' rows per (period, window, set, dimensions): one wide row
per (period, window, slice) with named statistics per part.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import ALL, Part
from jobs.metrics.planner import PassPlan, slice_set_name, window_days
from jobs.metrics.sources import dim_column

UNIT_KIND = 0
#: Relative standard error of the HyperLogLog++ sketches behind approximate distinct counts.
APPROX_RSD = 0.02
_STAT_COLUMN = re.compile(r"^[pq][0-9a-f]{10}__")


def is_stat_column(name: str) -> bool:
    return bool(_STAT_COLUMN.match(name))


def stat(part_key: str, name: str) -> str:
    """Column name of statistic `name` of a part in a pass result (e.g. p1a2b..__sum)."""
    return f"{part_key}__{name}"


def pair_stat(num_key: str, den_key: str, name: str) -> str:
    return f"{num_key}__{den_key}__{name}"


def quantile_stat(part_key: str, level: float) -> str:
    return f"{part_key}__q{round(level * 10000):05d}"


def kinds(plan: PassPlan) -> dict[str, int]:
    """Kind id of each part with its own expansion (kind 0 is the unit kind): exact distinct
    counts of values other than the unit, approximate distinct counts and quantiles."""
    keyed = [p.key for p in (*plan.value_parts, *plan.sketch_parts)]
    keyed += [q.key for q in plan.quantile_parts]
    return {key: i for i, key in enumerate(keyed, start=1)}


def _flags(df: DataFrame, plan: PassPlan) -> DataFrame:
    """Per part: its filter as a non-null boolean, and its value."""
    cols: list[Column] = []
    for p in plan.parts:
        cols.append(
            F.coalesce(F.expr(p.filter), F.lit(False)).alias(stat(p.key, "f"))
            if p.filter
            else F.lit(True).alias(stat(p.key, "f"))
        )
        if p.agg == "sum":
            cols.append(F.expr(p.value or "0").cast("double").alias(stat(p.key, "v")))
        elif p.agg == "distinct_count":
            cols.append(F.expr(p.value or "null").cast("string").alias(stat(p.key, "v")))
        elif p.agg == "approx_distinct_count":
            # A 64-bit hash: one narrow type for every part's value, and what the sketch
            # hashes is then a long.
            value = F.expr(p.value or "null")
            cols.append(F.when(value.isNotNull(), F.xxhash64(value)).alias(stat(p.key, "v")))
    for q in plan.quantile_parts:
        flag = F.coalesce(F.expr(q.filter), F.lit(False)) if q.filter else F.lit(True)
        cols.append(flag.alias(stat(q.key, "f")))
        cols.append(F.expr(q.value).cast("double").alias(stat(q.key, "v")))
    return df.select("*", *cols)


def _periods(
    df: DataFrame, plan: PassPlan, time_column: str, start: dt.date, end: dt.date
) -> DataFrame:
    """One row per (row, window, output period) the row counts towards; periods are
    timestamps (midnight for daily windows), so both grains share one column.

    A row on day d counts towards the periods d .. d+W-1 of a W-day window, and towards its
    hour for the hourly window: a fixed array of (window, day offset) pairs, exploded and
    then filtered to the output dates (no higher-order functions, which Spark does not
    compile)."""
    time = F.col(time_column)
    day = F.to_date(time)
    first, last = F.lit(start), F.lit(end)
    if plan.windows in (("1d",), ("1h",)):  # one period per row: no explosion
        w = plan.windows[0]
        period = F.date_trunc("hour" if w == "1h" else "day", time)
        return df.where(day.between(first, last)).select(
            "*", F.lit(w).alias("__w"), period.alias("__t")
        )
    reach = F.array(
        *[
            F.struct(F.lit(w).alias("__w"), F.lit(offset).alias("__o"))
            for w in plan.windows
            for offset in range(window_days(w))
        ]
    )
    exploded = df.select("*", F.inline(reach))
    period = F.when(F.col("__w") == "1h", F.date_trunc("hour", time)).otherwise(
        F.date_add(day, F.col("__o")).cast("timestamp")
    )
    return (
        exploded.select("*", period.alias("__t"))
        .drop("__o")
        .where(F.to_date(F.col("__t")).between(first, last))
    )


EntryMaker = Callable[[int, int, list[Column]], Column]


def _expand(df: DataFrame, plan: PassPlan, kind_ids: list[int], entry: EntryMaker) -> DataFrame:
    """One row per (grouping set, kind) among `kind_ids` that the row's window needs, built
    by `entry(set index, kind, dimension columns)`; dimensions outside the set are null."""
    needed = _need_keys(plan)
    per_window = None
    for w in plan.windows:
        chosen = []
        for s_index, slice_set in enumerate(plan.slice_sets):
            dims = [
                (F.col(dim_column(d)) if d in slice_set else F.lit(None).cast("string")).alias(d)
                for d in plan.dimensions
            ]
            chosen += [entry(s_index, k, dims) for k in kind_ids if (w, s_index, k) in needed]
        if chosen:
            # One fixed array per window, picked by the row's window (no per-entry test).
            array = F.array(*chosen)
            per_window = (
                F.when(F.col("__w") == w, array)
                if per_window is None
                else per_window.when(F.col("__w") == w, array)
            )
    assert per_window is not None, "a pass expands into at least one entry"
    return df.select("*", F.explode(per_window).alias("__e"))


def _need_keys(plan: PassPlan) -> set[tuple[str, int, int]]:
    """(window, grouping set index, kind id) for every combination the plan needs."""
    kind_of = {"units": UNIT_KIND, **kinds(plan)}
    index = {s: i for i, s in enumerate(plan.slice_sets)}
    return {(w, index[s], kind_of[k]) for w, s, k in plan.needs}


def _unit_level(periods: DataFrame, plan: PassPlan, unit: str) -> DataFrame:
    """Per (period, window, set, dimensions, unit): rows and each part's per-unit sums.

    Grouped by the unit column itself, so the shuffle by unit already done serves it."""

    def entry(s_index: int, kind: int, dims: list[Column]) -> Column:
        return F.struct(F.lit(s_index).alias("s"), *dims)

    expanded = _expand(periods, plan, [UNIT_KIND], entry)
    flat = expanded.select(
        "__t", "__w", F.col(unit), *[c for c in periods.columns if is_stat_column(c)], "__e.*"
    )
    aggs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for p in plan.parts:
        flag = F.col(stat(p.key, "f"))
        # Rows that carry the part's value: a unit whose values are all null is not one of
        # the cell's units (else one unit's value could pass the minimum cell size).
        present = flag if p.agg == "count" else flag & F.col(stat(p.key, "v")).isNotNull()
        aggs.append(F.count_if(present).alias(stat(p.key, "n")))
        if p.agg == "sum":  # a count's unit total is its `n`
            aggs.append(F.sum(F.when(flag, F.col(stat(p.key, "v")))).alias(stat(p.key, "x")))
    for q in plan.quantile_parts:
        present = F.col(stat(q.key, "f")) & F.col(stat(q.key, "v")).isNotNull()
        aggs.append(F.count_if(present).alias(stat(q.key, "n")))
    grouped = flat.groupBy("__t", "__w", "s", *plan.dimensions, unit).agg(*aggs)
    return grouped.withColumnRenamed(unit, "u").withColumn("k", F.lit(UNIT_KIND))


def _value_level(periods: DataFrame, plan: PassPlan) -> DataFrame | None:
    """Per (period, window, set, kind, dimensions, value): exact distinct values, and
    quantile values with their frequency (`rows`)."""
    kind_of = kinds(plan)
    by_value = {p.key: p for p in plan.value_parts}
    by_quantile = {q.key: q for q in plan.quantile_parts}
    wanted = [kind_of[k] for k in [*by_value, *by_quantile]]
    if not wanted:
        return None
    key_of = {v: k for k, v in kind_of.items()}

    def entry(s_index: int, kind: int, dims: list[Column]) -> Column:
        key = key_of[kind]
        none_key, none_value = F.lit(None).cast("string"), F.lit(None).cast("double")
        picked = F.when(F.col(stat(key, "f")), F.col(stat(key, "v")))
        return F.struct(
            F.lit(s_index).alias("s"),
            F.lit(kind).alias("k"),
            *dims,
            (picked if key in by_value else none_key).alias("dk"),
            (picked if key in by_quantile else none_value).alias("qv"),
        )

    expanded = _expand(periods, plan, wanted, entry).select("__t", "__w", "__e.*")
    keys = ["__t", "__w", "s", "k", *plan.dimensions, "dk", "qv"]
    return expanded.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"))


def _sketch_level(periods: DataFrame, plan: PassPlan, rsd: float) -> DataFrame | None:
    """Per (period, window, set, kind, dimensions): a HyperLogLog++ distinct-count estimate
    for each approximate distinct-count part (fixed-size sketches, combined map-side)."""
    kind_of = kinds(plan)
    key_of = {kind_of[p.key]: p.key for p in plan.sketch_parts}
    if not key_of:
        return None

    def entry(s_index: int, kind: int, dims: list[Column]) -> Column:
        key = key_of[kind]
        value = F.when(F.col(stat(key, "f")), F.col(stat(key, "v")))
        return F.struct(F.lit(s_index).alias("s"), F.lit(kind).alias("k"), *dims, value.alias("h"))

    expanded = _expand(periods, plan, list(key_of), entry)
    flat = expanded.select("__t", "__w", "__e.*")
    estimate = F.approx_count_distinct("h", rsd).cast("double").alias("approx")
    return flat.groupBy("__t", "__w", "s", "k", *plan.dimensions).agg(estimate)


def _unit_total(part: Part) -> Column:
    """A unit's total of an additive part (0 where it has none)."""
    total = F.col(stat(part.key, "n" if part.agg == "count" else "x")).cast("double")
    return F.coalesce(total, F.lit(0.0))


def _level2(df: DataFrame, plan: PassPlan) -> DataFrame:
    parts = {p.key: p for p in plan.parts}
    unit_rows = F.col("k") == UNIT_KIND
    # Rows without a unit still count in totals, but are no unit of their own.
    known_unit = unit_rows & F.col("u").isNotNull()
    kind_of = kinds(plan)
    aggs: list[Column] = []

    def on_units(c: Column) -> Column:
        return F.when(unit_rows, c)

    for p in plan.parts:
        units = F.count_if(known_unit & (F.col(stat(p.key, "n")) > 0))
        if p.key in plan.units_of:
            aggs.append(units.alias(stat(p.key, "units")))
        if p.additive:
            x = _unit_total(p)
            aggs.append(F.coalesce(F.sum(on_units(x)), F.lit(0.0)).alias(stat(p.key, "sum")))
            if p.key in plan.squares_of:
                squares = F.coalesce(F.sum(on_units(x * x)), F.lit(0.0))
                aggs.append(squares.alias(stat(p.key, "sumsq")))
        elif p.agg == "approx_distinct_count":
            mine = F.col("k") == kind_of[p.key]
            estimate = F.coalesce(F.max(F.when(mine, F.col("approx"))), F.lit(0.0))
            aggs.append(estimate.alias(stat(p.key, "sum")))
        elif plan.counts_units(p):
            aggs.append(units.cast("double").alias(stat(p.key, "sum")))
        else:
            mine = (F.col("k") == kind_of[p.key]) & F.col("dk").isNotNull()
            aggs.append(F.count_if(mine).cast("double").alias(stat(p.key, "sum")))
    for num, den in plan.ratio_pairs:
        x_num, x_den = _unit_total(parts[num]), _unit_total(parts[den])
        either = (F.col(stat(num, "n")) > 0) | (F.col(stat(den, "n")) > 0)
        aggs.append(
            F.coalesce(F.sum(on_units(x_num * x_den)), F.lit(0.0)).alias(
                pair_stat(num, den, "cross")
            )
        )
        aggs.append(F.count_if(known_unit & either).alias(pair_stat(num, den, "units")))
    levels = dict(plan.quantiles)
    for q in plan.quantile_parts:
        n = F.col(stat(q.key, "n"))
        aggs.append(F.count_if(known_unit & (n > 0)).alias(stat(q.key, "units")))
        mine = (F.col("k") == kind_of[q.key]) & F.col("qv").isNotNull()
        value = F.when(mine, F.col("qv"))
        weights = F.when(mine, F.col("rows")).otherwise(F.lit(0))
        spread = F.percentile(value, F.array(*[F.lit(x) for x in levels[q.key]]), weights)
        aggs.append(spread.alias(stat(q.key, "quantiles")))
    grouped = df.groupBy("__t", "__w", "s", *plan.dimensions).agg(*aggs)
    extra = [
        F.col(stat(q.key, "quantiles"))[i].alias(quantile_stat(q.key, level))
        for q in plan.quantile_parts
        for i, level in enumerate(levels[q.key])
    ]
    return grouped.select("*", *extra).drop(
        *[stat(q.key, "quantiles") for q in plan.quantile_parts]
    )


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


def pass_frame(
    prepared: DataFrame,
    plan: PassPlan,
    time_column: str,
    unit: str,
    start: dt.date,
    end: dt.date,
    unit_partitions: int | None = None,
    approx_rsd: float = APPROX_RSD,
) -> DataFrame:
    """The pass's wide result: one row per (period, window, slice) with every statistic.

    `unit_partitions` fixes the number of partitions of the shuffle by unit (adaptive
    execution would merge them into fewer, larger ones, whose per-unit hash tables spill)."""
    flagged = _flags(prepared, plan)
    narrow = flagged.select(
        time_column,
        F.col(unit),
        *[dim_column(d) for d in plan.dimensions],
        *[c for c in flagged.columns if is_stat_column(c)],
    )
    # The one big shuffle: rows by unit, before any expansion, so that the unit branch groups
    # within partitions. The other branches group by other keys: they read the source's
    # columns they need again, which costs less than a shuffle of them by unit.
    shuffled = (
        narrow.repartition(unit_partitions, F.col(unit))
        if unit_partitions
        else narrow.repartition(F.col(unit))
    )
    by_unit = _periods(shuffled, plan, time_column, start, end)
    periods = _periods(narrow, plan, time_column, start, end)
    branches = [
        b
        for b in (
            _unit_level(by_unit, plan, unit),
            _value_level(periods, plan),
            _sketch_level(periods, plan, approx_rsd),
        )
        if b is not None
    ]
    level1 = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), branches)
    result = _level2(level1, plan)
    named = result.withColumnsRenamed({"__t": "period", "__w": "window"})
    return named.select("*", *slice_columns(plan))

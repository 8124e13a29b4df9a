"""One pass: a single scan of a source computing every part, slice and window of a plan.

Rows are expanded twice (Spark's Expand, written out so it runs on any engine): once per
output period a row's windows reach, and once per (grouping set, kind). Kind 0 groups rows
by unit, giving per-unit sums for clustered variances and distinct units for suppression;
each distinct-count part has a kind grouping by its value, and each quantile part a kind
grouping by its value with a frequency. Level 1 aggregates per (period, window, set, kind,
dimensions, key); level 2 per (period, window, set, dimensions), picking each kind's rows.
The result is one wide row per (period, window, slice) with named statistics per part.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

from jobs.metrics.definitions import ALL
from jobs.metrics.planner import PassPlan, slice_set_name, window_days
from jobs.metrics.sources import dim_column

UNIT_KIND = 0
DISTINCT_AGGS = ("distinct_count", "approx_distinct_count")
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
    """Kind id of each distinct-count and quantile part (kind 0 is the unit kind)."""
    keyed = [p.key for p in plan.parts if p.agg in DISTINCT_AGGS]
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
            # Distinct 64-bit hashes of the value: a narrow key, and collisions negligible
            # (about n^2 / 2^65). A sketch aggregate here would force Spark's slow
            # object-based aggregation for the whole pass.
            value = F.expr(p.value or "null")
            hashed = F.when(value.isNotNull(), F.xxhash64(value).cast("string"))
            cols.append(hashed.alias(stat(p.key, "v")))
    for q in plan.quantile_parts:
        flag = F.coalesce(F.expr(q.filter), F.lit(False)) if q.filter else F.lit(True)
        cols.append(flag.alias(stat(q.key, "f")))
        cols.append(F.expr(q.value).cast("double").alias(stat(q.key, "v")))
    return df.select("*", *cols)


def _reach_of(window: str, day: Column) -> Callable[[Column], Column]:
    """offset -> (window, output day) for a row on `day` (a named function: F.transform
    passes an index to any second parameter)."""

    def reach(offset: Column) -> Column:
        return F.struct(F.lit(window).alias("w"), F.date_add(day, offset).alias("t"))

    return reach


def _periods(
    df: DataFrame, plan: PassPlan, time_column: str, start: dt.date, end: dt.date
) -> DataFrame:
    """One row per (row, window, output period) the row counts towards."""
    if plan.grain == "hour":
        return df.select(
            "*", F.lit("1h").alias("__w"), F.date_trunc("hour", F.col(time_column)).alias("__t")
        )
    day = F.to_date(F.col(time_column))
    per_window = [
        F.transform(F.sequence(F.lit(0), F.lit(window_days(w) - 1)), _reach_of(w, day))
        for w in plan.windows
    ]
    first, last = F.lit(start.isoformat()).cast("date"), F.lit(end.isoformat()).cast("date")
    reach = F.filter(F.concat(*per_window), lambda x: x["t"].between(first, last))
    exploded = df.select("*", F.explode(reach).alias("__p"))
    return exploded.select("*", F.col("__p.w").alias("__w"), F.col("__p.t").alias("__t")).drop(
        "__p"
    )


def _expand(df: DataFrame, plan: PassPlan, unit: str, unit_type: DataType) -> DataFrame:
    """One row per (grouping set, kind): dimension columns outside the set are null."""
    kind_of = kinds(plan)
    no_unit = F.lit(None).cast(unit_type)
    no_key = F.lit(None).cast("string")
    no_value = F.lit(None).cast("double")
    entries: list[tuple[int, int, Column]] = []
    for s_index, slice_set in enumerate(plan.slice_sets):
        dims = [
            (F.col(dim_column(d)) if d in slice_set else F.lit(None).cast("string")).alias(d)
            for d in plan.dimensions
        ]

        def entry(kind: int, unit_value: Column, key: Column, value: Column) -> Column:
            return F.struct(
                F.lit(s_index).alias("s"),  # noqa: B023 - used at once, inside the loop
                F.lit(kind).alias("k"),
                *dims,  # noqa: B023
                unit_value.alias("u"),
                key.alias("dk"),
                value.alias("qv"),
            )

        entries.append((s_index, UNIT_KIND, entry(UNIT_KIND, F.col(unit), no_key, no_value)))
        for p in plan.parts:
            if p.agg in DISTINCT_AGGS:
                key = F.when(F.col(stat(p.key, "f")), F.col(stat(p.key, "v")))
                kind = kind_of[p.key]
                entries.append((s_index, kind, entry(kind, no_unit, key, no_value)))
        for q in plan.quantile_parts:
            value = F.when(F.col(stat(q.key, "f")), F.col(stat(q.key, "v")))
            kind = kind_of[q.key]
            entries.append((s_index, kind, entry(kind, no_unit, no_key, value)))
    # Per window, only the (set, kind) entries some metric reads: one fixed array per window,
    # picked by the row's window (no per-entry test on the rows).
    needed = _need_keys(plan)
    per_window = F.when(F.lit(False), F.array(entries[0][2]))
    for w in plan.windows:
        chosen = [e for s_index, kind, e in entries if (w, s_index, kind) in needed]
        if chosen:
            per_window = per_window.when(F.col("__w") == w, F.array(*chosen))
    tagged = per_window
    exploded = df.select("*", F.explode(tagged).alias("__e"))
    keep = ["__t", "__w"] + [c for c in df.columns if is_stat_column(c)]
    return exploded.select(*keep, "__e.*")


def _need_keys(plan: PassPlan) -> set[tuple[str, int, int]]:
    """(window, grouping set index, kind id) for every combination the plan needs."""
    kind_of = {"units": UNIT_KIND, **kinds(plan)}
    index = {s: i for i, s in enumerate(plan.slice_sets)}
    return {(w, index[s], kind_of[k]) for w, s, k in plan.needs}


def _level1(df: DataFrame, plan: PassPlan) -> DataFrame:
    keys = ["__t", "__w", "s", "k", *plan.dimensions, "u", "dk", "qv"]
    aggs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for p in plan.parts:
        flag = F.col(stat(p.key, "f"))
        # Rows that carry the part's value: a unit whose values are all null is not one of
        # the cell's units (else one unit's value could pass the minimum cell size).
        present = flag if p.agg == "count" else flag & F.col(stat(p.key, "v")).isNotNull()
        aggs.append(F.count_if(present).alias(stat(p.key, "n")))
        if p.agg == "count":
            aggs.append(F.count_if(flag).cast("double").alias(stat(p.key, "x")))
        elif p.agg == "sum":
            aggs.append(F.sum(F.when(flag, F.col(stat(p.key, "v")))).alias(stat(p.key, "x")))
    for q in plan.quantile_parts:
        present = F.col(stat(q.key, "f")) & F.col(stat(q.key, "v")).isNotNull()
        aggs.append(F.count_if(present).alias(stat(q.key, "n")))
    return df.groupBy(*keys).agg(*aggs)


def _level2(df: DataFrame, plan: PassPlan) -> DataFrame:
    unit_rows = F.col("k") == UNIT_KIND
    # Rows without a unit still count in totals, but are no unit of their own.
    known_unit = unit_rows & F.col("u").isNotNull()
    kind_of = kinds(plan)
    aggs: list[Column] = [F.count_if(known_unit).alias("__units")]

    def on_units(c: Column) -> Column:
        return F.when(unit_rows, c)

    for p in plan.parts:
        n = F.col(stat(p.key, "n"))
        aggs.append(F.count_if(known_unit & (n > 0)).alias(stat(p.key, "units")))
        aggs.append(F.sum(on_units(n)).alias(stat(p.key, "rows")))
        if p.additive:
            x = F.coalesce(F.col(stat(p.key, "x")), F.lit(0.0))
            aggs.append(F.coalesce(F.sum(on_units(x)), F.lit(0.0)).alias(stat(p.key, "sum")))
            aggs.append(F.coalesce(F.sum(on_units(x * x)), F.lit(0.0)).alias(stat(p.key, "sumsq")))
        else:
            mine = (F.col("k") == kind_of[p.key]) & F.col("dk").isNotNull()
            aggs.append(F.count_if(mine).cast("double").alias(stat(p.key, "sum")))
    for num, den in plan.ratio_pairs:
        x_num = F.coalesce(F.col(stat(num, "x")), F.lit(0.0))
        x_den = F.coalesce(F.col(stat(den, "x")), F.lit(0.0))
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
        aggs.append(F.sum(on_units(n)).alias(stat(q.key, "rows")))
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
) -> DataFrame:
    """The pass's wide result: one row per (period, window, slice) with every statistic."""
    unit_type = prepared.schema[unit].dataType
    flagged = _flags(prepared, plan)
    narrow = flagged.select(
        time_column,
        F.col(unit),
        *[dim_column(d) for d in plan.dimensions],
        *[c for c in flagged.columns if is_stat_column(c)],
    )
    periods = _periods(narrow, plan, time_column, start, end)
    expanded = _expand(periods, plan, unit, unit_type)
    result = _level2(_level1(expanded, plan), plan)
    named = result.withColumnsRenamed({"__t": "period", "__w": "window"})
    return named.select("*", *slice_columns(plan))

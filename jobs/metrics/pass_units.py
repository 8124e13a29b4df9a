"""The unit branch of a pass: per (period, window, set, dimensions, unit) counts and exact
sums within the unit's partition, then per cell the exact sums of unit totals and of
their products (clustered variances) and the distinct units (suppression).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.conditions import EVERY_ROW, Presence, presence
from jobs.metrics.definitions import Part, QuantilePart
from jobs.metrics.exact_sums import (
    combined,
    limbs,
    overflowed,
    product_sums,
    total_sums,
)
from jobs.metrics.pass_columns import (
    ANON,
    CELL,
    UNIT_KIND,
    is_input,
    is_stat_column,
    pair_stat,
    presence_bits,
    presence_count,
    stat,
)
from jobs.metrics.pass_dimensions import finest_hashes, hash_name, high_name, low_name, rolled_up
from jobs.metrics.pass_periods import dimension, expand, is_window, need_keys
from jobs.metrics.planner import PassPlan
from jobs.metrics.sources import dim_column


def _count_name(key: Presence, bits: dict[Presence, int]) -> str:
    return "rows" if key == EVERY_ROW else f"__n{bits[key]}"


def unit_level(periods: DataFrame, plan: PassPlan, unit: str) -> DataFrame:
    """Per (period, window, set, dimensions, unit): each counted part's rows (`n`) and each
    sum part's total (`x`); parts of equal presence share one count.

    Grouped by the unit column itself, so the shuffle by unit already done serves it. With
    unit attributes, the sets are the unit sets (`_attribute_entries`) and each unit row
    carries the least and greatest hash of each attribute, equal where it is constant."""

    def entry(s_index: int, kind: int, dims: list[Column]) -> Column:
        return F.struct(F.lit(s_index).alias("s"), *dims)

    attributes = plan.attributes
    if attributes:
        expanded = periods.select("*", F.explode(_attribute_entries(plan)).alias("__e"))
    else:
        expanded = expand(periods, plan, [UNIT_KIND], entry)
    inputs = [c for c in periods.columns if is_input(c)]
    hashes = [F.col(dim_column(a)).alias(hash_name(a)) for a in attributes]
    flat = expanded.select("__t", "__w", F.col(unit), ANON, *inputs, *hashes, "__e.*")
    bits = presence_bits(plan)
    aggs = [presence_count(bits, k).alias(_count_name(k, bits)) for k in plan.presences]
    for p in plan.parts:
        if p.agg == "sum":
            aggs.append(F.try_sum(stat(p.key, "x")).alias(stat(p.key, "x")))
            aggs.append(F.count_if(stat(p.key, "xo")).alias(stat(p.key, "xo")))
    for a in attributes:
        aggs += [F.min(hash_name(a)).alias(low_name(a)), F.max(hash_name(a)).alias(high_name(a))]
    dims = [d for d in plan.dimensions if d not in attributes]
    grouped = flat.groupBy("__t", "__w", "s", *dims, unit, ANON).agg(*aggs)
    # Each counted part reads its presence's shared count as its `n`.
    counted: list[Part | QuantilePart] = [*plan.counted_parts, *plan.quantile_parts]
    shared = {stat(p.key, "n"): F.col(_count_name(presence(p), bits)) for p in counted}
    return grouped.withColumnRenamed(unit, "u").withColumns(shared)


def _attribute_entries(plan: PassPlan) -> Column:
    """The unit level's entries of a row where the plan has unit attributes: one per unit
    set its window needs (index `s`), attributes left out. (A row without a unit is a unit
    of its own, `ANON`, so its attributes are constant too.)"""
    needed = need_keys(plan)
    unit_index = {s: i for i, s in enumerate(plan.unit_sets)}
    dims = [d for d in plan.dimensions if d not in plan.attributes]
    chosen = None
    for w in plan.windows:
        wanted = [s for i, s in enumerate(plan.slice_sets) if (w, i, UNIT_KIND) in needed]
        if not wanted:
            continue
        unit_sets = dict.fromkeys(plan.unit_set(s) for s in wanted)
        entries = F.array(
            *[
                F.struct(F.lit(unit_index[u]).alias("s"), *[dimension(d, u) for d in dims])
                for u in unit_sets
            ]
        )
        here = is_window(plan, w)
        chosen = F.when(here, entries) if chosen is None else chosen.when(here, entries)
    assert chosen is not None, "a pass expands into at least one entry"
    return chosen


def _unit_total(part: Part) -> Column:
    """A unit's total of an additive part, 0 where it has none, as a long: its rows for a
    count, for a sum its values in units of 10^-decimals (see `exact_sums`)."""
    name = stat(part.key, "n" if part.agg == "count" else "x")
    return F.coalesce(F.col(name), F.lit(0).cast("long"))


def _limbs_of(part: Part) -> list[Column]:
    return limbs(_unit_total(part), count=part.agg == "count")


def _product_sums(a: Part, b: Part, name: str) -> tuple[list[Column], bool]:
    """Aggregates: the exact sum over units of the product of two parts' per-unit totals
    (the same part: its squares), and whether it is split into limbs (`exact_sums`): one
    long sum for two counts, limb sums where a sum part is involved."""
    if a.agg == "count" and b.agg == "count":
        return [F.try_sum(_unit_total(a) * _unit_total(b)).alias(name)], False
    other = None if a.key == b.key else _limbs_of(b)
    return product_sums(_limbs_of(a), other, name), True


def _unit_overflow(part: Part) -> Column:
    """Units whose total of a sum part does not fit a long, or that hold a value whose
    scaled value does not: their sums are not exact."""
    lost = (F.col(stat(part.key, "n")) > 0) & F.col(stat(part.key, "x")).isNull()
    return F.count_if(lost | (F.col(stat(part.key, "xo")) > 0))


def unit_level2(units: DataFrame, plan: PassPlan) -> DataFrame:
    """Per cell, from the unit level: totals, units, sums of squares and cross products.

    With unit attributes, level 2 groups the unit sets' finest cells and rolls them up into
    the slice sets' cells."""
    parts = {p.key: p for p in plan.parts}
    # Rows without a unit still count in totals (each its own cluster, `ANON`), but they
    # are no unit of a cell's units.
    known_unit = F.col("u").isNotNull()
    aggs: list[Column] = []
    totals: dict[str, str] = {}  # name -> its part
    products: dict[str, list[str]] = {}  # name -> the parts whose exactness it needs
    split: list[str] = []

    def product(a: Part, b: Part, name: str) -> None:
        columns, limbed = _product_sums(a, b, name)
        aggs.extend(columns)
        products[name] = [a.key, b.key]
        if limbed:
            split.append(name)

    for p in plan.parts:
        has_part = F.col(stat(p.key, "n")) > 0
        units_of_part = F.count_if(known_unit & has_part)
        if p.key in plan.units_of:
            aggs.append(units_of_part.alias(stat(p.key, "units")))
            # The clusters of the variances: its units and its rows without a unit.
            aggs.append(F.count_if(has_part).alias(stat(p.key, "clusters")))
        if p.additive:
            if p.agg == "sum":
                aggs += total_sums(_unit_total(p), stat(p.key, "sum"))
                totals[stat(p.key, "sum")] = p.key
                aggs.append(_unit_overflow(p).alias(stat(p.key, "overflow")))
            else:
                aggs.append(F.sum(_unit_total(p)).alias(stat(p.key, "sum")))
            if p.key in plan.squares_of:
                product(p, p, stat(p.key, "sumsq"))
        elif plan.counts_units(p):
            aggs.append(units_of_part.cast("double").alias(stat(p.key, "sum")))
    loose = set(plan.pairs_needing_units)
    for num, den in plan.ratio_pairs:
        product(parts[num], parts[den], pair_stat(num, den, "cross"))
        if (num, den) in loose:
            either = (F.col(stat(num, "n")) > 0) | (F.col(stat(den, "n")) > 0)
            aggs.append(F.count_if(known_unit & either).alias(pair_stat(num, den, "units")))
            aggs.append(F.count_if(either).alias(pair_stat(num, den, "clusters")))
    for q in plan.quantile_parts:
        n = F.col(stat(q.key, "n"))
        aggs.append(F.count_if(known_unit & (n > 0)).alias(stat(q.key, "units")))
    if plan.attributes:
        units = units.withColumns(finest_hashes(plan))
    dims = [d for d in plan.dimensions if d not in plan.attributes]
    hashes = [hash_name(a) for a in plan.attributes]
    grouped = _exact(units.groupBy(*CELL, *dims, *hashes).agg(*aggs), totals, products, split)
    if plan.attributes:
        grouped = rolled_up(grouped, plan, [c for c in grouped.columns if is_stat_column(c)])
        grouped = grouped.withColumnsRenamed({hash_name(a): a for a in plan.attributes})
    # Where the numerator's rows are among the denominator's, units with either part are
    # the denominator's units.
    within = {
        pair_stat(num, den, what): F.col(stat(den, what))
        for num, den in plan.ratio_pairs
        if (num, den) not in loose
        for what in ("units", "clusters")
    }
    return grouped.withColumns(within)


def _exact(
    cells: DataFrame, totals: dict[str, str], products: dict[str, list[str]], split: list[str]
) -> DataFrame:
    """Level 2's cells with their limb sums put together (`exact_sums.combined`), and each
    part's `overflow` statistic (a sum part's units with inexact totals, plus 1 for a cell
    where a sum the part takes part in overflowed)."""
    lost: dict[str, list[str]] = {}
    for name, keys in products.items():
        for key in keys:
            lost.setdefault(key, []).append(name)
    for name, key in totals.items():
        lost.setdefault(key, []).append(name)
    flags = {}
    for key, names in lost.items():
        column = stat(key, "overflow")
        base = F.col(column) if column in cells.columns else F.lit(0).cast("long")
        flags[column] = base + overflowed(cells, names)
    return combined(cells.withColumns(flags), list(totals), split)

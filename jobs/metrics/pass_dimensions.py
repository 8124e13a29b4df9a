"""Dimensions inside a pass: 64-bit hashes of their values (fixed-width columns to shuffle and
group by), the dictionary that decodes them per cell, and coarser slice sets rolled up
from finer cells where units' attributes allow it.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.pass_columns import CELL, UNIT_KIND
from jobs.metrics.pass_periods import is_window, need_keys
from jobs.metrics.planner import PassPlan
from jobs.metrics.sources import dim_column


def hash_name(attribute: str) -> str:
    return f"__h_{attribute}"


def low_name(attribute: str) -> str:
    return f"__lo_{attribute}"


def high_name(attribute: str) -> str:
    return f"__hi_{attribute}"


def finest_hashes(plan: PassPlan) -> dict[str, Column]:
    """Per unit-level row, the hash of each unit attribute that some slice set it serves
    has: null where the set has none, or where the unit's rows disagree (a conflict, which
    `decoded` reports). Level 2 groups by these: the finest cells of each unit set."""
    out = {}
    for a in plan.attributes:
        with_a = [u for u, unit_set in enumerate(plan.unit_sets) if _serves(plan, unit_set, a)]
        agreed = F.col(low_name(a)) == F.col(high_name(a))
        out[hash_name(a)] = F.when(F.col("s").isin(with_a) & agreed, F.col(low_name(a)))
    return out


def _serves(plan: PassPlan, unit_set: tuple[str, ...], attribute: str) -> bool:
    """Whether a unit set serves a slice set with `attribute`."""
    return any(attribute in s and plan.unit_set(s) == unit_set for s in plan.slice_sets)


def rolled_up(cells: DataFrame, plan: PassPlan, stats: list[str]) -> DataFrame:
    """The slice sets' cells from the unit sets' finest cells: each slice set's cell sums
    the finest cells of its unit set that agree on its attributes. Exact, because an
    attribute constant per unit splits the units of a cell into disjoint groups, and every
    statistic here is a sum over units."""
    needed = need_keys(plan)
    hashes = [hash_name(a) for a in plan.attributes]
    no_hash = F.lit(None).cast("long")
    chosen: Column | None = None

    def member(s_index: int, slice_set: tuple[str, ...]) -> Column:
        kept = [
            (F.col(hash_name(a)) if a in slice_set else no_hash).alias(hash_name(a))
            for a in plan.attributes
        ]
        return F.struct(F.lit(s_index).alias("__s"), *kept)

    for w in plan.windows:
        for u_index, unit_set in enumerate(plan.unit_sets):
            members = [
                member(s_index, s)
                for s_index, s in enumerate(plan.slice_sets)
                if plan.unit_set(s) == unit_set and (w, s_index, UNIT_KIND) in needed
            ]
            if members:
                here = is_window(plan, w) & (F.col("s") == u_index)
                array = F.array(*members)
                chosen = F.when(here, array) if chosen is None else chosen.when(here, array)
    assert chosen is not None, "unit attributes serve some slice set"
    kept = [c for c in cells.columns if c not in ("s", *hashes)]
    expanded = cells.select(*kept, F.explode(chosen).alias("__e"))
    flat = expanded.select(*kept, "__e.*").withColumnRenamed("__s", "s")
    dims = [d for d in plan.dimensions if d not in plan.attributes]
    return flat.groupBy(*CELL, *dims, *hashes).agg(*[F.sum(c).alias(c) for c in stats])


def dimension_hash(value: Column) -> Column:
    """The 64-bit hash that stands for a dimension's value inside a pass."""
    return F.xxhash64(value)


def dimension_dictionary(prepared: DataFrame, plan: PassPlan) -> DataFrame:
    """Per slice set (`s`) and hashes of its dimensions (`__k_<name>`, null outside the set),
    their values (`__v_<name>`): from one aggregation over the source's rows (the distinct
    combinations of the dimensions), expanded into the slice sets. The values are null where
    two combinations share the hashes (never seen with 64 bits; the pass then reports a
    conflict and runs again on the values)."""
    dims = plan.dimensions
    combinations = prepared.select(*[F.col(dim_column(d)).alias(d) for d in dims]).distinct()

    def projected(s_index: int, slice_set: tuple[str, ...]) -> Column:
        fields = [F.lit(s_index).alias("s")]
        for d in dims:
            inside = d in slice_set
            fields.append(
                (dimension_hash(F.col(d)) if inside else F.lit(None).cast("long")).alias(
                    _key_name(d)
                )
            )
            fields.append(
                (F.col(d) if inside else F.lit(None).cast("string")).alias(_value_name(d))
            )
        return F.struct(*fields)

    every_set = F.array(*[projected(i, s) for i, s in enumerate(plan.slice_sets)])
    entries = combinations.select(F.explode(every_set).alias("e")).select("e.*").distinct()
    keys = ["s", *[_key_name(d) for d in dims]]
    one = F.count(F.lit(1)) == 1
    values = [F.when(one, F.min(_value_name(d))).alias(_value_name(d)) for d in dims]
    return entries.groupBy(*keys).agg(*values) if dims else entries  # unread without dims


def _key_name(dimension: str) -> str:
    return f"__k_{dimension}"


def _value_name(dimension: str) -> str:
    return f"__v_{dimension}"


def decoded(cells: DataFrame, plan: PassPlan, dictionary: DataFrame) -> DataFrame:
    """The cells with each dimension's hash replaced by its value (one join with the
    dictionary), and `__conflicts`: 1 where a set's dimension has no value (a unit whose rows
    disagree on a unit attribute, or hashes that two combinations share), else 0."""
    dims = plan.dimensions
    conflict = F.lit(False)
    if dims:
        on = [cells["s"] == dictionary["s"]]
        on += [cells[d].eqNullSafe(dictionary[_key_name(d)]) for d in dims]
        joined = cells.join(dictionary, reduce(lambda a, b: a & b, on), how="left")
        kept = [cells[c] for c in cells.columns if c not in dims]
        cells = joined.select(*kept, *[F.col(_value_name(d)).alias(d) for d in dims])
    for d in dims:
        with_d = [j for j, s in enumerate(plan.slice_sets) if d in s]
        conflict = conflict | (F.col("s").isin(with_d) & F.col(d).isNull())
    return cells.withColumn("__conflicts", conflict.cast("long"))

"""Names of a pass's statistics and the row-level columns every branch shares: the
parts' presence flags and bits, and which columns are inputs.
"""

from __future__ import annotations

import re
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.conditions import EVERY_ROW, Presence
from jobs.metrics.exact_sums import (
    scaled_value,
)
from jobs.metrics.planner import PassPlan

UNIT_KIND = 0

#: Per row without a unit, a hash of its contents: such a row is a cluster of its own.
ANON = "__anon"

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


def flags(df: DataFrame, plan: PassPlan) -> DataFrame:
    """For the value and sketch branches, per part with its own kind: its filter as a
    non-null boolean (`f`), and its value (`v`)."""
    cols: list[Column] = []
    for p in (*plan.value_parts, *plan.sketch_parts):
        cols.append(_filter(p.filter).alias(stat(p.key, "f")))
        value = F.expr(p.value or "null")
        if p.agg == "distinct_count":
            cols.append(value.cast("string").alias(stat(p.key, "v")))
        else:
            # A 64-bit hash: one narrow type for every part's value, and what the sketch
            # hashes is then a long.
            cols.append(F.when(value.isNotNull(), F.xxhash64(value)).alias(stat(p.key, "v")))
    for q in plan.quantile_parts:
        cols.append(_filter(q.filter).alias(stat(q.key, "f")))
        cols.append(F.expr(q.value).cast("double").alias(stat(q.key, "v")))
    return df.select("*", *cols)


def _filter(condition: str | None) -> Column:
    return F.coalesce(F.expr(condition), F.lit(False)) if condition else F.lit(True)


def _present(condition: str | None, value: str | None) -> Column:
    flag = _filter(condition)
    return flag & F.expr(value).isNotNull() if value is not None else flag


def presence_bits(plan: PassPlan) -> dict[Presence, int]:
    """Bit of each presence (see `planner.presence`) the unit level counts; every row needs
    none (its per-unit count is the row count)."""
    return {k: i for i, k in enumerate(k for k in plan.presences if k != EVERY_ROW)}


def is_input(column: str) -> bool:
    """A per-row input of the pass's aggregations: presence words and part columns."""
    return column.startswith("__m") or is_stat_column(column)


def _mask_name(word: int) -> str:
    return f"__m{word}"


def unit_inputs(df: DataFrame, plan: PassPlan) -> DataFrame:
    """What the unit branch needs per row, as narrow as possible since it is shuffled:
    one bit per distinct presence, packed into 63-bit words, and the filtered value of
    each sum part (`x`)."""
    bits = presence_bits(plan)
    words: dict[int, list[Column]] = {}
    for (condition, value), bit in bits.items():
        flag = F.when(_present(condition or None, value), _bit(bit))
        words.setdefault(bit // 63, []).append(flag.otherwise(F.lit(0).cast("long")))
    cols = [
        reduce(lambda a, b: a.bitwiseOR(b), terms).alias(_mask_name(w))
        for w, terms in words.items()
    ]
    for p in plan.parts:
        if p.agg == "sum":
            amount = F.expr(p.value or "0")
            kind = df.select(amount).schema.fields[0].dataType
            scaled = F.when(_filter(p.filter), scaled_value(amount, p.scale, kind))
            cols.append(scaled.alias(stat(p.key, "x")))
            # A value whose scaled value does not fit a long (`exact_totals` stops the run).
            lost = _present(p.filter, p.value) & scaled.isNull()
            cols.append(lost.alias(stat(p.key, "xo")))
    return df.select("*", *cols)


def presence_count(bits: dict[Presence, int], key: Presence) -> Column:
    """Per-unit count of rows with presence `key` (the unit level's aggregate)."""
    if key == EVERY_ROW:
        return F.count(F.lit(1))
    bit = bits[key]
    word = F.col(_mask_name(bit // 63))
    return F.count_if(word.bitwiseAND(_bit(bit)) != 0)


def _bit(bit: int) -> Column:
    """The bit's value within its 63-bit word, as a long."""
    return F.lit(1 << (bit % 63)).cast("long")


CELL = ["__t", "__w", "s"]

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
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import ALL, HLL_LG_K, Part, QuantilePart
from jobs.metrics.exact_sums import (
    combined,
    limbs,
    overflowed,
    product_sums,
    scaled_value,
    total_sums,
)
from jobs.metrics.planner import (
    EVERY_ROW,
    PassPlan,
    Presence,
    presence,
    slice_set_name,
    window_days,
)
from jobs.metrics.sources import dim_column

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


def _flags(df: DataFrame, plan: PassPlan) -> DataFrame:
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


def _is_input(column: str) -> bool:
    """A per-row input of the pass's aggregations: presence words and part columns."""
    return column.startswith("__m") or is_stat_column(column)


def _mask_name(word: int) -> str:
    return f"__m{word}"


def _unit_inputs(df: DataFrame, plan: PassPlan) -> DataFrame:
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


def _counted(bits: dict[Presence, int], key: Presence) -> Column:
    """Per-unit count of rows with presence `key` (the unit level's aggregate)."""
    if key == EVERY_ROW:
        return F.count(F.lit(1))
    bit = bits[key]
    word = F.col(_mask_name(bit // 63))
    return F.count_if(word.bitwiseAND(_bit(bit)) != 0)


def _bit(bit: int) -> Column:
    """The bit's value within its 63-bit word, as a long."""
    return F.lit(1 << (bit % 63)).cast("long")


def _periods(
    df: DataFrame,
    plan: PassPlan,
    time_column: str,
    start: dt.date,
    end: dt.date,
    windows: tuple[str, ...] | None = None,
) -> DataFrame:
    """One row per (row, window, output period) the row counts towards, for the plan's
    `windows` (default: all); periods are timestamps (midnight for daily windows), so both
    grains share one column.

    A row on day d counts towards the periods d .. d+W-1 of a W-day window, and towards its
    hour for the hourly window: a fixed array of (window, day offset) pairs, exploded and
    then filtered to the output dates (no higher-order functions, which Spark does not
    compile)."""
    windows = plan.windows if windows is None else windows
    time = F.col(time_column)
    day = F.to_date(time)
    first, last = F.lit(start), F.lit(end)
    if windows in (("1d",), ("1h",)):  # one period per row: no explosion
        w = windows[0]
        period = F.date_trunc("hour" if w == "1h" else "day", time)
        return df.where(day.between(first, last)).select(
            "*", _window_id(plan, w).alias("__w"), period.alias("__t")
        )
    reach = F.array(
        *[
            F.struct(_window_id(plan, w).alias("__w"), F.lit(offset).alias("__o"))
            for w in windows
            for offset in range(window_days(w))
        ]
    )
    exploded = df.select("*", F.inline(reach))
    hourly = _is_window(plan, "1h") if "1h" in windows else F.lit(False)
    period = F.when(hourly, F.date_trunc("hour", time)).otherwise(
        F.date_add(day, F.col("__o")).cast("timestamp")
    )
    # The period's date is the row's day plus its offset (0 for the hourly window): a test
    # on dates, so that the period itself is computed once, for the rows kept.
    kept = exploded.where(F.date_add(day, F.col("__o")).between(first, last))
    return kept.select("*", period.alias("__t")).drop("__o")


def _windows_reading(plan: PassPlan, kind_ids: set[int]) -> tuple[str, ...]:
    """The plan's windows in which some grouping set reads one of `kind_ids`: a branch
    that reads a kind in fewer windows than the pass has expands its rows into just those."""
    needed = _need_keys(plan)
    return tuple(w for w in plan.windows if any(n[0] == w and n[2] in kind_ids for n in needed))


def _window_id(plan: PassPlan, window: str) -> Column:
    """A window inside a pass (`__w`): its index in the plan's windows, a narrow key."""
    return F.lit(plan.windows.index(window))


def _is_window(plan: PassPlan, window: str) -> Column:
    return F.col("__w") == _window_id(plan, window)


EntryMaker = Callable[[int, int, list[Column]], Column]


def _expand(df: DataFrame, plan: PassPlan, kind_ids: list[int], entry: EntryMaker) -> DataFrame:
    """One row per (grouping set, kind) among `kind_ids` that the row's window needs, built
    by `entry(set index, kind, dimension columns)`; dimensions outside the set are null."""
    needed = _need_keys(plan)
    per_window = None
    for w in plan.windows:
        chosen = []
        for s_index, slice_set in enumerate(plan.slice_sets):
            dims = [_dimension(d, slice_set) for d in plan.dimensions]
            chosen += [entry(s_index, k, dims) for k in kind_ids if (w, s_index, k) in needed]
        if chosen:
            # One fixed array per window, picked by the row's window (no per-entry test).
            array = F.array(*chosen)
            per_window = (
                F.when(_is_window(plan, w), array)
                if per_window is None
                else per_window.when(_is_window(plan, w), array)
            )
    assert per_window is not None, "a pass expands into at least one entry"
    return df.select("*", F.explode(per_window).alias("__e"))


def _dimension(name: str, slice_set: tuple[str, ...]) -> Column:
    """Dimension `name` of an expanded row of `slice_set`: null where the set lacks it."""
    column = F.col(dim_column(name))
    return (column if name in slice_set else _none(column)).alias(name)


def _none(column: Column) -> Column:
    """A null of the column's type (dimensions are hashes, or text in a pass run again)."""
    return F.when(F.lit(False), column)


def _need_keys(plan: PassPlan) -> set[tuple[str, int, int]]:
    """(window, grouping set index, kind id) for every combination the plan needs."""
    kind_of = {"units": UNIT_KIND, **kinds(plan)}
    index = {s: i for i, s in enumerate(plan.slice_sets)}
    return {(w, index[s], kind_of[k]) for w, s, k in plan.needs}


def _count_name(key: Presence, bits: dict[Presence, int]) -> str:
    return "rows" if key == EVERY_ROW else f"__n{bits[key]}"


def _unit_level(periods: DataFrame, plan: PassPlan, unit: str) -> DataFrame:
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
        expanded = _expand(periods, plan, [UNIT_KIND], entry)
    inputs = [c for c in periods.columns if _is_input(c)]
    hashes = [F.col(dim_column(a)).alias(_hash_name(a)) for a in attributes]
    flat = expanded.select("__t", "__w", F.col(unit), ANON, *inputs, *hashes, "__e.*")
    bits = presence_bits(plan)
    aggs = [_counted(bits, k).alias(_count_name(k, bits)) for k in plan.presences]
    for p in plan.parts:
        if p.agg == "sum":
            aggs.append(F.try_sum(stat(p.key, "x")).alias(stat(p.key, "x")))
            aggs.append(F.count_if(stat(p.key, "xo")).alias(stat(p.key, "xo")))
    for a in attributes:
        aggs += [F.min(_hash_name(a)).alias(_low(a)), F.max(_hash_name(a)).alias(_high(a))]
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
    needed = _need_keys(plan)
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
                F.struct(F.lit(unit_index[u]).alias("s"), *[_dimension(d, u) for d in dims])
                for u in unit_sets
            ]
        )
        here = _is_window(plan, w)
        chosen = F.when(here, entries) if chosen is None else chosen.when(here, entries)
    assert chosen is not None, "a pass expands into at least one entry"
    return chosen


def _hash_name(attribute: str) -> str:
    return f"__h_{attribute}"


def _low(attribute: str) -> str:
    return f"__lo_{attribute}"


def _high(attribute: str) -> str:
    return f"__hi_{attribute}"


def _finest_hashes(plan: PassPlan) -> dict[str, Column]:
    """Per unit-level row, the hash of each unit attribute that some slice set it serves
    has: null where the set has none, or where the unit's rows disagree (a conflict, which
    `_decoded` reports). Level 2 groups by these: the finest cells of each unit set."""
    out = {}
    for a in plan.attributes:
        with_a = [u for u, unit_set in enumerate(plan.unit_sets) if _serves(plan, unit_set, a)]
        agreed = F.col(_low(a)) == F.col(_high(a))
        out[_hash_name(a)] = F.when(F.col("s").isin(with_a) & agreed, F.col(_low(a)))
    return out


def _serves(plan: PassPlan, unit_set: tuple[str, ...], attribute: str) -> bool:
    """Whether a unit set serves a slice set with `attribute`."""
    return any(attribute in s and plan.unit_set(s) == unit_set for s in plan.slice_sets)


def _rolled_up(cells: DataFrame, plan: PassPlan, stats: list[str]) -> DataFrame:
    """The slice sets' cells from the unit sets' finest cells: each slice set's cell sums
    the finest cells of its unit set that agree on its attributes. Exact, because an
    attribute constant per unit splits the units of a cell into disjoint groups, and every
    statistic here is a sum over units."""
    needed = _need_keys(plan)
    hashes = [_hash_name(a) for a in plan.attributes]
    no_hash = F.lit(None).cast("long")
    chosen: Column | None = None

    def member(s_index: int, slice_set: tuple[str, ...]) -> Column:
        kept = [
            (F.col(_hash_name(a)) if a in slice_set else no_hash).alias(_hash_name(a))
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
                here = _is_window(plan, w) & (F.col("s") == u_index)
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


def _decoded(cells: DataFrame, plan: PassPlan, dictionary: DataFrame) -> DataFrame:
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


def _sketch_level(periods: DataFrame, plan: PassPlan, lg_k: int) -> DataFrame | None:
    """Per (period, window, finest cell): a mergeable HyperLogLog sketch of each approximate
    distinct-count part (`__sk<kind>`), where a window's finest cell has every dimension of
    the slice sets that read a sketch in it. Each row falls in one cell and updates each
    part's sketch there: no expansion, one hash lookup per row."""
    kind_of = kinds(plan)
    key_of = {kind_of[p.key]: p.key for p in plan.sketch_parts}
    if not key_of:
        return None
    cell = None
    for w in plan.windows:
        finest = _finest_sketch_dims(plan, w, set(key_of))
        if finest is not None:
            dims = F.struct(*[_dimension(d, finest) for d in plan.dimensions])
            here = _is_window(plan, w)
            cell = F.when(here, dims) if cell is None else cell.when(here, dims)
    assert cell is not None, "a sketch part is read by some window"
    values = []
    for kind, key in key_of.items():
        read = _reading_windows(plan, kind)
        values.append(F.when(F.col(stat(key, "f")) & read, F.col(stat(key, "v"))).alias(_sk(kind)))
    flat = periods.select("__t", "__w", cell.alias("__c"), *values)
    flat = flat.select("__t", "__w", "__c.*", *[_sk(k) for k in key_of])
    sketches = [F.hll_sketch_agg(_sk(k), lg_k).alias(_sk(k)) for k in key_of]
    return flat.groupBy("__t", "__w", *plan.dimensions).agg(*sketches)


def _sk(kind: int) -> str:
    return f"__sk{kind}"


def _reading_windows(plan: PassPlan, kind: int) -> Column:
    """True on rows of a window in which some slice set reads `kind`."""
    needed = _need_keys(plan)
    windows = [w for w in plan.windows if any(n[0] == w and n[2] == kind for n in needed)]
    return reduce(lambda a, b: a | b, [_is_window(plan, w) for w in windows])


def _finest_sketch_dims(plan: PassPlan, window: str, kind_ids: set[int]) -> tuple[str, ...] | None:
    """Every dimension of the slice sets that read a sketch among `kind_ids` in `window`
    (None: none does)."""
    needed = _need_keys(plan)
    sets = [
        s
        for i, s in enumerate(plan.slice_sets)
        if any((window, i, kind) in needed for kind in kind_ids)
    ]
    return tuple(sorted({d for s in sets for d in s})) if sets else None


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


CELL = ["__t", "__w", "s"]


def _unit_level2(units: DataFrame, plan: PassPlan) -> DataFrame:
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
        units = units.withColumns(_finest_hashes(plan))
    dims = [d for d in plan.dimensions if d not in plan.attributes]
    hashes = [_hash_name(a) for a in plan.attributes]
    grouped = _exact(units.groupBy(*CELL, *dims, *hashes).agg(*aggs), totals, products, split)
    if plan.attributes:
        grouped = _rolled_up(grouped, plan, [c for c in grouped.columns if is_stat_column(c)])
        grouped = grouped.withColumnsRenamed({_hash_name(a): a for a in plan.attributes})
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


def _value_level2(values: DataFrame, plan: PassPlan) -> DataFrame:
    """Per cell, from the value level: exact distinct counts and quantiles."""
    kind_of = kinds(plan)
    aggs: list[Column] = []
    for p in plan.value_parts:
        mine = (F.col("k") == kind_of[p.key]) & F.col("dk").isNotNull()
        aggs.append(F.count_if(mine).cast("double").alias(stat(p.key, "sum")))
    levels = dict(plan.quantiles)
    for q in plan.quantile_parts:
        mine = (F.col("k") == kind_of[q.key]) & F.col("qv").isNotNull()
        value = F.when(mine, F.col("qv"))
        weights = F.when(mine, F.col("rows")).otherwise(F.lit(0))
        spread = F.percentile(value, F.array(*[F.lit(x) for x in levels[q.key]]), weights)
        aggs.append(spread.alias(stat(q.key, "quantiles")))
    return values.groupBy(*CELL, *plan.dimensions).agg(*aggs)


def _sketch_level2(sketches: DataFrame, plan: PassPlan) -> DataFrame:
    """Per cell, from the sketch level: one approximate distinct count per part, the
    estimate of the union of the finest cells' sketches within the cell (for the cells of
    the slice sets that read the part)."""
    needed = _need_keys(plan)
    kind_of = kinds(plan)
    sketch_kinds = {kind_of[p.key] for p in plan.sketch_parts}
    chosen = None
    for w in plan.windows:
        members = [
            F.struct(
                F.lit(i).alias("s"),
                *[(F.col(d) if d in s else _none(F.col(d))).alias(d) for d in plan.dimensions],
            )
            for i, s in enumerate(plan.slice_sets)
            if any((w, i, kind) in needed for kind in sketch_kinds)
        ]
        if members:
            here = _is_window(plan, w)
            array = F.array(*members)
            chosen = F.when(here, array) if chosen is None else chosen.when(here, array)
    assert chosen is not None, "a sketch part is read by some window"
    columns = [_sk(kind) for kind in sketch_kinds]
    expanded = sketches.select("__t", "__w", *columns, F.explode(chosen).alias("__e"))
    flat = expanded.select("__t", "__w", *columns, "__e.*")
    aggs = []
    for p in plan.sketch_parts:
        kind = kind_of[p.key]
        reads = [
            _is_window(plan, w)
            & F.col("s").isin([i for i in range(len(plan.slice_sets)) if (w, i, kind) in needed])
            for w in plan.windows
            if any((w, i, kind) in needed for i in range(len(plan.slice_sets)))
        ]
        mine = F.when(reduce(lambda a, b: a | b, reads), F.col(_sk(kind)))
        union = F.hll_union_agg(mine)
        # A sketch built from one stream keeps an order-dependent (HIP) estimate, one merged
        # from several the composite estimate of its registers: a union with itself makes
        # every cell's estimate a function of its registers alone, whatever the file layout.
        estimate = F.hll_sketch_estimate(F.hll_union(union, union))
        aggs.append(estimate.cast("double").alias(stat(p.key, "sum")))
    return flat.groupBy(*CELL, *plan.dimensions).agg(*aggs)


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
    if `hashed`, also `__conflicts` (see `_decoded`), which must sum to 0.

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
        return frame.select(*keys, *[c for c in frame.columns if _is_input(c)])

    # The one big shuffle: rows by unit, before any expansion, so that the unit branch groups
    # within partitions. The other branches group by other keys: they read the source's
    # columns they need again, which costs less than a shuffle of them by unit.
    shuffled = shuffled_by_unit(narrow(_unit_inputs(counted, plan)), unit, unit_partitions)
    by_unit = _periods(shuffled, plan, time_column, start, end)
    flagged = narrow(_flags(prepared, plan))
    kind_of = kinds(plan)

    def periods(parts: tuple[Part | QuantilePart, ...]) -> DataFrame:
        windows = _windows_reading(plan, {kind_of[p.key] for p in parts})
        return _periods(flagged, plan, time_column, start, end, windows or None)

    values = _value_level(periods((*plan.value_parts, *plan.quantile_parts)), plan)
    sketches = _sketch_level(periods(plan.sketch_parts), plan, hll_lg_k)
    branches = [_unit_level2(_unit_level(by_unit, plan, unit), plan)]
    if values is not None:
        branches.append(_value_level2(values, plan))
    if sketches is not None:
        branches.append(_sketch_level2(sketches, plan))
    result = _with_quantile_levels(_combine(branches, plan), plan)
    if hashed:
        result = _decoded(result, plan, dimension_dictionary(raw, plan))
    window = F.element_at(F.array(*[F.lit(w) for w in plan.windows]), F.col("__w") + 1)
    named = result.withColumn("__w", window).withColumnsRenamed({"__t": "period", "__w": "window"})
    return named.select("*", *slice_columns(plan))

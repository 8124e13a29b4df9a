"""The value and sketch branches of a pass: exact distinct values and value frequencies
(quantiles) per cell, and HyperLogLog sketches per finest cell unioned into each slice.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.pass_columns import CELL, kinds, stat
from jobs.metrics.pass_periods import dimension, expand, is_window, need_keys, typed_null
from jobs.metrics.planner import PassPlan


def value_level(periods: DataFrame, plan: PassPlan) -> DataFrame | None:
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

    expanded = expand(periods, plan, wanted, entry).select("__t", "__w", "__e.*")
    keys = ["__t", "__w", "s", "k", *plan.dimensions, "dk", "qv"]
    return expanded.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"))


def sketch_level(periods: DataFrame, plan: PassPlan, lg_k: int) -> DataFrame | None:
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
            dims = F.struct(*[dimension(d, finest) for d in plan.dimensions])
            here = is_window(plan, w)
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
    needed = need_keys(plan)
    windows = [w for w in plan.windows if any(n[0] == w and n[2] == kind for n in needed)]
    return reduce(lambda a, b: a | b, [is_window(plan, w) for w in windows])


def _finest_sketch_dims(plan: PassPlan, window: str, kind_ids: set[int]) -> tuple[str, ...] | None:
    """Every dimension of the slice sets that read a sketch among `kind_ids` in `window`
    (None: none does)."""
    needed = need_keys(plan)
    sets = [
        s
        for i, s in enumerate(plan.slice_sets)
        if any((window, i, kind) in needed for kind in kind_ids)
    ]
    return tuple(sorted({d for s in sets for d in s})) if sets else None


def value_level2(values: DataFrame, plan: PassPlan) -> DataFrame:
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


def sketch_level2(sketches: DataFrame, plan: PassPlan) -> DataFrame:
    """Per cell, from the sketch level: one approximate distinct count per part, the
    estimate of the union of the finest cells' sketches within the cell (for the cells of
    the slice sets that read the part)."""
    needed = need_keys(plan)
    kind_of = kinds(plan)
    sketch_kinds = {kind_of[p.key] for p in plan.sketch_parts}
    chosen = None
    for w in plan.windows:
        members = [
            F.struct(
                F.lit(i).alias("s"),
                *[(F.col(d) if d in s else typed_null(F.col(d))).alias(d) for d in plan.dimensions],
            )
            for i, s in enumerate(plan.slice_sets)
            if any((w, i, kind) in needed for kind in sketch_kinds)
        ]
        if members:
            here = is_window(plan, w)
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
            is_window(plan, w)
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

"""Turn pass results into one long frame of metric values with confidence intervals.

Each metric reads its statistics from the wide result of its pass; ratios across sources
join two passes on (period, window, slice); derived metrics join their inputs' values.
A pass's sums are exact whole numbers (counts, or values in units of 10^-decimals), so
every number here is the same for any partitioning. Intervals:
- wilson: a proportion of independent events (Wilson score interval);
- delta: a ratio of sums over units (events cluster by unit), linearised:
  Var(R) = n/(n-1) * sum_u (y_u - R x_u)^2 / X^2, from exact per-unit sums, squares and
  products in rational arithmetic (`udfs.exact_moments`), with a t(n - 1) quantile;
- across sources, numerator and denominator are taken as independent totals over the
  same population of units (the larger of the two unit counts; a unit missing from one side
  counts there as zero): Var(R) = R^2 (Var(Y)/Y^2 + Var(X)/X^2), t(n - 1) likewise.
Where no event (or, for a proportion, no non-event) was seen, the units show no spread
and the delta method would give [R, R]. Such a cell says nothing about clustering, so it
gets the interval for independent events: a proportion of 0 or 1 the Wilson interval over
its rows, a count of zero events over a denominator X the exact Poisson [0, -ln(alpha/2) / X].
"""

from __future__ import annotations

import math
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy.stats import norm

from jobs.metrics.definitions import Catalog, MetricDef, Part
from jobs.metrics.exact_sums import WHOLE
from jobs.metrics.pass_columns import pair_stat, quantile_stat, stat
from jobs.metrics.planner import Plan
from jobs.metrics.types import traits
from udfs.interval_udfs import ratio_half_width, totals_half_width

KEYS = ("period", "window", "slice_id")
VALUE_COLUMNS = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper", "ci_method")


def z_value(level: float) -> float:
    return float(norm.ppf(1 - (1 - level) / 2))


def _safe_div(a: Column, b: Column) -> Column:
    return F.when(b != 0, a / b)


def wilson(successes: Column, trials: Column, z: float) -> tuple[Column, Column]:
    p = _safe_div(successes, trials)
    z2 = z * z
    denom = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denom
    half = z / denom * F.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    ok = trials > 0
    # Rounding can put a bound a hair past the estimate (0 of n gives 3e-17): clamp it.
    lower = F.greatest(F.least(center - half, p), F.lit(0.0))
    upper = F.least(F.greatest(center + half, p), F.lit(1.0))
    return F.when(ok, lower), F.when(ok, upper)


def zero_events_upper(level: float) -> float:
    """Exact Poisson upper bound on the expected count when none was seen: -ln(alpha/2)."""
    return -math.log((1 - level) / 2)


def _degenerate_proportion(
    y: Column, x: Column, n: Column, interval: tuple[Column, Column], z: float
) -> tuple[Column, Column]:
    """A clustered proportion of 0 or 1: the Wilson interval over its rows; else `interval`.

    (y and x are sums of counts, so `y == x` compares whole numbers exactly.)"""
    lower, upper = interval
    row_lower, row_upper = wilson(y, x, z)
    flat = (n > 1) & (x > 0) & ((y == 0) | (y == x))
    return F.when(flat, row_lower).otherwise(lower), F.when(flat, row_upper).otherwise(upper)


def _zero_events(
    y: Column, x: Column, n: Column, interval: tuple[Column, Column], level: float
) -> tuple[Column, Column]:
    """A count numerator with no events: the exact Poisson interval; else `interval`."""
    lower, upper = interval
    none_seen = (n > 1) & (x > 0) & (y == 0)
    return (
        F.when(none_seen, F.lit(0.0)).otherwise(lower),
        F.when(none_seen, F.lit(zero_events_upper(level)) / x).otherwise(upper),
    )


def _whole(name: str) -> Column:
    return F.col(name).cast(WHOLE)


def _limb_fields(stat_name: str, split: bool, alias: str) -> list[Column]:
    """A sum of squares or products as (alias_h, alias_l): its two limb sums where the pass
    split it (a sum part was involved), else the high limb 0 and the whole sum."""
    if split:
        high, low = _whole(f"{stat_name}_h"), _whole(f"{stat_name}_l")
        return [high.alias(f"{alias}_h"), low.alias(f"{alias}_l")]
    return [F.lit(0).cast(WHOLE).alias(f"{alias}_h"), _whole(stat_name).alias(f"{alias}_l")]


def _total(part: Part) -> Column:
    """A part's total in a cell as a double (a sum's whole total over 10^decimals)."""
    total = F.col(stat(part.key, "sum")).cast("double")
    return total / 10.0**part.scale if part.scale else total


def _rows(result: DataFrame, metric: MetricDef, dimensions: tuple[str, ...]) -> DataFrame:
    """A pass result restricted to the metric's windows and slice sets, with all dimensions."""
    names = [",".join(s) if s else "overall" for s in metric.slices]
    picked = result.where(
        F.col("window").isin(list(metric.windows)) & F.col("slice_set").isin(names)
    )
    present = set(result.columns)
    dims = [F.col(d) if d in present else F.lit(None).cast("string").alias(d) for d in dimensions]
    return picked.select(
        "period",
        "window",
        "slice_set",
        "slice_id",
        *dims,
        *[c for c in result.columns if "__" in c],
    )


def _without_interval(
    rows: DataFrame, value: Column, numerator: Column, units: Column
) -> DataFrame:
    """A metric with no denominator and no interval (counts, sums, distincts, quantiles)."""
    none = F.lit(None).cast("double")
    return rows.select(
        "*",
        value.alias("value"),
        numerator.alias("numerator"),
        none.alias("denominator"),
        units.alias("units"),
        none.alias("ci_lower"),
        none.alias("ci_upper"),
        F.lit("none").alias("ci_method"),
    )


def _single_pass(catalog: Catalog, metric: MetricDef, rows: DataFrame, z: float) -> DataFrame:
    per = metric.per
    none = F.lit(None).cast("double")
    if traits(metric.type).finish == "quantile":
        q = metric.quantile_part
        assert q is not None and metric.quantile is not None
        value = F.col(quantile_stat(q.key, metric.quantile))
        return _without_interval(rows, value, none, F.col(stat(q.key, "units")))
    num = metric.numerator
    assert num is not None
    y = _total(num)
    den = metric.denominator
    if den is None:
        return _without_interval(rows, y, y, F.col(stat(num.key, "units")))
    x = _total(den)
    lower, upper = none, none
    if metric.ci == "wilson":
        lower, upper = wilson(y, x, z)
    elif metric.ci == "delta":
        # Units and rows without a unit: the clusters of the delta method.
        n = F.col(pair_stat(num.key, den.key, "clusters"))
        level = catalog.settings.confidence_level
        sums = F.struct(
            n.cast("long").alias("n"),
            _whole(stat(num.key, "sum")).alias("y"),
            _whole(stat(den.key, "sum")).alias("x"),
            *_limb_fields(stat(num.key, "sumsq"), num.agg == "sum", "yy"),
            *_limb_fields(stat(den.key, "sumsq"), den.agg == "sum", "xx"),
            *_limb_fields(pair_stat(num.key, den.key, "cross"), "sum" in (num.agg, den.agg), "xy"),
        )
        half = ratio_half_width(level, num.scale, den.scale)(sums)
        r = _safe_div(y, x)
        lower, upper = r - half, r + half
        if metric.proportion:
            lower, upper = _degenerate_proportion(y, x, n, (lower, upper), z)
        elif num.agg == "count":
            lower, upper = _zero_events(y, x, n, (lower, upper), level)
    return rows.select(
        "*",
        (_safe_div(y, x) * per).alias("value"),
        y.alias("numerator"),
        x.alias("denominator"),
        F.col(stat(den.key, "units")).alias("units"),
        (lower * per).alias("ci_lower"),
        (upper * per).alias("ci_upper"),
        F.lit(metric.ci).alias("ci_method"),
    )


def _cross_source(
    metric: MetricDef,
    num_rows: DataFrame,
    den_rows: DataFrame,
    dimensions: tuple[str, ...],
    level: float,
) -> DataFrame:
    num, den = metric.numerator, metric.denominator
    assert num is not None and den is not None

    def squares(part: Part, alias: str) -> list[Column]:
        if part.additive:
            return _limb_fields(stat(part.key, "sumsq"), part.agg == "sum", alias)
        nothing = F.lit(None).cast(WHOLE)
        return [nothing.alias(f"{alias}_h"), nothing.alias(f"{alias}_l")]

    left = num_rows.select(
        *KEYS,
        F.col("slice_set").alias("__set_y"),
        *[F.col(d).alias(f"__y_{d}") for d in dimensions],
        _whole(stat(num.key, "sum")).alias("__y"),
        *squares(num, "__yy"),
        F.col(stat(num.key, "clusters")).alias("__ny"),
    )
    right = den_rows.select(
        *KEYS,
        "slice_set",
        *dimensions,
        _whole(stat(den.key, "sum")).alias("__x"),
        *squares(den, "__xx"),
        F.col(stat(den.key, "units")).alias("__nx"),
        F.col(stat(den.key, "clusters")).alias("__cx"),
    )
    # A cell exists where either side has rows, so children still add up to their parent.
    joined = right.join(left, on=list(KEYS), how="full_outer")
    zero = F.lit(0).cast(WHOLE)
    y_whole, x_whole = F.coalesce(F.col("__y"), zero), F.coalesce(F.col("__x"), zero)
    y = y_whole.cast("double") / 10.0**num.scale
    x = x_whole.cast("double") / 10.0**den.scale
    r = _safe_div(y, x)
    # Both sides' totals vary over the same population of units at risk: units absent from
    # one side (a viewer who filed no report) count there as zeros.
    n = F.greatest(F.coalesce(F.col("__ny"), F.lit(0)), F.coalesce(F.col("__cx"), F.lit(0)))
    sums = F.struct(
        n.cast("long").alias("n"),
        y_whole.alias("y"),
        x_whole.alias("x"),
        F.coalesce(F.col("__yy_h"), zero).alias("yy_h"),
        F.coalesce(F.col("__yy_l"), zero).alias("yy_l"),
        F.col("__xx_h").alias("xx_h"),
        F.col("__xx_l").alias("xx_l"),
    )
    half = totals_half_width(level, num.scale, den.scale)(sums)
    use = metric.ci == "delta"
    lower, upper = r - half, r + half
    if num.agg == "count":
        lower, upper = _zero_events(y, x, n, (lower, upper), level)
    none = F.lit(None).cast("double")
    return joined.select(
        *KEYS,
        F.coalesce("slice_set", "__set_y").alias("slice_set"),
        *[F.coalesce(d, f"__y_{d}").alias(d) for d in dimensions],
        (r * metric.per).alias("value"),
        y.alias("numerator"),
        x.alias("denominator"),
        F.coalesce(F.col("__nx"), F.lit(0)).alias("units"),
        (lower * metric.per if use else none).alias("ci_lower"),
        (upper * metric.per if use else none).alias("ci_upper"),
        F.lit(metric.ci if use else "none").alias("ci_method"),
    )


def metric_frames(
    catalog: Catalog, plan: Plan, results: dict[str, DataFrame]
) -> dict[str, DataFrame]:
    """Metric name -> its rows (before suppression), for every non-derived metric of the plan."""
    z = z_value(catalog.settings.confidence_level)
    dims = catalog.dimensions
    columns = [*KEYS, "slice_set", *dims, *VALUE_COLUMNS]
    frames: dict[str, DataFrame] = {}
    for name in plan.metrics:
        metric = catalog.metrics[name]
        if traits(metric.type).finish == "derived":
            continue
        if name in plan.cross_source:
            assert metric.numerator is not None and metric.denominator is not None
            num_rows = _rows(results[metric.numerator.source], metric, dims)
            den_rows = _rows(results[metric.denominator.source], metric, dims)
            frame = _cross_source(
                metric, num_rows, den_rows, dims, catalog.settings.confidence_level
            )
        else:
            source = metric.sources()[0]
            frame = _single_pass(catalog, metric, _rows(results[source], metric, dims), z)
        # Daily periods are dates, hourly ones timestamps: one type for every metric.
        frames[name] = frame.withColumn("period", F.col("period").cast("timestamp")).select(
            *columns
        )
    return frames


def derived_frames(
    catalog: Catalog, plan: Plan, frames: dict[str, DataFrame]
) -> dict[str, DataFrame]:
    """Add each derived metric (in dependency order), joining its inputs on the keys."""
    dims = catalog.dimensions
    out = dict(frames)
    none = F.lit(None).cast("double")
    for name in plan.derived:
        metric = catalog.metrics[name]
        names = [",".join(s) if s else "overall" for s in metric.slices]
        inputs = []
        for i, dep in enumerate(metric.depends_on):
            picked = out[dep].where(
                F.col("window").isin(list(metric.windows)) & F.col("slice_set").isin(names)
            )
            carried = ["slice_set", *dims] if i == 0 else []
            inputs.append(
                picked.select(
                    *KEYS, *carried, F.col("value").alias(dep), F.col("units").alias(f"__units{i}")
                )
            )
        joined = reduce(lambda a, b: a.join(b, on=list(KEYS), how="inner"), inputs)
        units = (
            F.least(*[F.col(f"__units{i}") for i in range(len(inputs))])
            if len(inputs) > 1
            else F.col("__units0")
        )
        out[name] = joined.select(
            *KEYS,
            "slice_set",
            *dims,
            F.expr(metric.expression or "null").cast("double").alias("value"),
            none.alias("numerator"),
            none.alias("denominator"),
            units.alias("units"),
            none.alias("ci_lower"),
            none.alias("ci_upper"),
            F.lit("none").alias("ci_method"),
        )
    return out


def long_frame(catalog: Catalog, frames: dict[str, DataFrame]) -> DataFrame:
    """All metrics' rows in one frame with a metric name column."""
    parts = [f.select(F.lit(name).alias("metric"), "*") for name, f in frames.items()]
    return reduce(DataFrame.unionByName, parts)

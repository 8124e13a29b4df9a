"""Publish gates: checks a run's numbers must pass before they are written.

Each gate is a small Spark query over the computed (pre-suppression) metric rows or over a
source's daily row counts, returning a `GateResult` with a few example offenders. A failing
gate stops the write (or only warns, per `settings.gates.on_failure`).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.gate_result import GateResult
from jobs.metrics.pass_columns import stat
from jobs.metrics.planner import Plan
from jobs.metrics.suppression import sibling_links
from jobs.metrics.types import traits

EXAMPLES = 5
#: Below this median daily row count a source's volume is too noisy to judge.
MIN_VOLUME_FOR_CHECK = 500
MIN_HISTORY_DAYS = 7


def _examples(df: DataFrame, columns: list[str]) -> tuple[str, ...]:
    rows = df.select(*columns).limit(EXAMPLES).collect()
    return tuple(", ".join(f"{c}={row[c]}" for c in columns) for row in rows)


def unique_keys(metrics: DataFrame) -> GateResult:
    keys = ["metric", "period", "window", "slice_id"]
    dupes = metrics.groupBy(*keys).count().where("count > 1")
    n = dupes.count()
    return GateResult(
        "unique keys",
        n == 0,
        f"{n} duplicated (metric, period, window, slice) keys",
        _examples(dupes, [*keys, "count"]) if n else (),
    )


def no_null_keys(metrics: DataFrame) -> GateResult:
    keys = ["metric", "period", "window", "slice_set", "slice_id"]
    bad = metrics.where(" OR ".join(f"{k} IS NULL" for k in keys))
    n = bad.count()
    return GateResult(
        "no null keys", n == 0, f"{n} rows with a null key", _examples(bad, keys) if n else ()
    )


def proportion_bounds(catalog: Catalog, plan: Plan, metrics: DataFrame) -> GateResult:
    names = [n for n in plan.metrics if catalog.metrics[n].proportion]
    counts = [n for n in plan.metrics if traits(catalog.metrics[n].type).counts]
    out_of_bounds = (
        F.col("metric").isin(names)
        & ((F.col("numerator") < 0) | (F.col("numerator") > F.col("denominator")))
    ) | (F.col("metric").isin(counts) & (F.col("value") < 0))
    bad = metrics.where(out_of_bounds)
    n = bad.count()
    return GateResult(
        "0 <= numerator <= denominator",
        n == 0,
        f"{n} rows out of bounds ({len(names)} proportion and {len(counts)} count metrics checked)",
        _examples(bad, ["metric", "period", "slice_id", "numerator", "denominator"]) if n else (),
    )


def _parent_id(dims: Sequence[str], dropped: str) -> Column:
    parts = [
        F.when(F.col(d).isNotNull(), F.concat(F.lit(f"{d}="), F.col(d)))
        for d in sorted(dims)
        if d != dropped
    ]
    joined = F.concat_ws("|", *parts)
    return F.when(joined == "", F.lit("all")).otherwise(joined)


def parent_consistency(catalog: Catalog, plan: Plan, metrics: DataFrame) -> GateResult:
    """Children of a published parent add up to it (sums), or never exceed it (distinct)."""
    names = [n for n in plan.metrics if catalog.metrics[n].parts()]
    links = sibling_links(catalog, names)
    if not links:
        return GateResult(
            "slices consistent with parent totals", True, "no parent/child slice pairs"
        )
    additive = [n for n in names if all(p.additive for p in catalog.metrics[n].parts())]
    dims = catalog.dimensions
    link_array = F.array(*[F.lit(x) for x in links])
    per_dim = []
    for dim in dims:
        linked = (
            F.array_contains(link_array, F.concat_ws("|", "metric", "slice_set", F.lit(dim)))
            & F.col(dim).isNotNull()
        )
        parent_set = F.concat_ws(
            ",", *[F.when(F.col(d).isNotNull() & F.lit(d != dim), F.lit(d)) for d in sorted(dims)]
        )
        per_dim.append(
            metrics.where(linked).select(
                "metric",
                "period",
                "window",
                F.when(parent_set == "", F.lit("overall"))
                .otherwise(parent_set)
                .alias("parent_set"),
                _parent_id(dims, dim).alias("parent_id"),
                F.lit(dim).alias("dim"),
                "numerator",
                "denominator",
                "units",
            )
        )
    children = per_dim[0]
    for more in per_dim[1:]:
        children = children.unionByName(more)
    sums = children.groupBy("metric", "period", "window", "parent_set", "parent_id", "dim").agg(
        F.sum("numerator").alias("child_num"),
        F.sum("denominator").alias("child_den"),
        F.max("numerator").alias("max_num"),
        F.max("units").alias("max_units"),
    )
    parents = metrics.select(
        "metric",
        "period",
        "window",
        F.col("slice_set").alias("parent_set"),
        F.col("slice_id").alias("parent_id"),
        "numerator",
        "denominator",
        "units",
    )
    joined = sums.join(
        parents, on=["metric", "period", "window", "parent_set", "parent_id"], how="left"
    )

    def differs(a: str, b: str) -> Column:
        return F.abs(
            F.coalesce(F.col(a), F.lit(0.0)) - F.coalesce(F.col(b), F.lit(0.0))
        ) > 1e-6 * F.greatest(F.lit(1.0), F.abs(F.coalesce(F.col(b), F.lit(0.0))))

    is_additive = F.col("metric").isin(additive)
    bad = joined.where(
        F.col("numerator").isNull()
        | (is_additive & (differs("child_num", "numerator") | differs("child_den", "denominator")))
        | (~is_additive & (F.col("max_num") > F.col("numerator") + 1e-9))
        | (F.col("max_units") > F.col("units"))
    )
    n = bad.count()
    return GateResult(
        "slices consistent with parent totals",
        n == 0,
        f"{n} parent cells disagree with their children ({len(links)} parent/child pairs)",
        _examples(bad, ["metric", "period", "parent_id", "dim", "child_num", "numerator"])
        if n
        else (),
    )


def source_volume(
    source: SourceDef,
    raw: DataFrame,
    dates: list[dt.date],
    history_days: int,
    min_ratio: float,
    max_ratio: float,
) -> list[GateResult]:
    """Freshness (data through the last run date) and each date's volume against the
    trailing median of the days before it; neither for a source that `may_be_empty`."""
    if source.may_be_empty:
        unchecked = "not checked (the source may_be_empty)"
        return [
            GateResult(f"source fresh: {source.name}", True, unchecked),
            GateResult(f"source volume: {source.name}", True, unchecked),
        ]
    first = min(dates) - dt.timedelta(days=history_days)
    day = F.to_date(F.col(source.time_column))
    scoped = raw
    if source.date_column:
        scoped = scoped.where(F.col(source.date_column).between(F.lit(first), F.lit(max(dates))))
    counts = {
        row["d"]: int(row["n"])
        for row in scoped.where(day.between(F.lit(first), F.lit(max(dates))))
        .groupBy(day.alias("d"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    # Fresh: the source has data through the last run date. (A day without rows inside the
    # range is caught by the volume check where volume is large enough to judge.)
    latest = max(counts) if counts else None
    fresh = GateResult(
        f"source fresh: {source.name}",
        latest is not None and latest >= max(dates),
        f"latest data on {latest}" if latest else f"no rows since {first}",
    )
    problems, skipped = [], []
    for d in dates:
        history = [counts.get(d - dt.timedelta(days=k), 0) for k in range(1, history_days + 1)]
        history = [h for h in history if h > 0]
        if len(history) < MIN_HISTORY_DAYS or statistics.median(history) < MIN_VOLUME_FOR_CHECK:
            skipped.append(d)
            continue
        ratio = counts.get(d, 0) / statistics.median(history)
        if not min_ratio <= ratio <= max_ratio:
            problems.append(f"{d}: {counts.get(d, 0)} rows = {ratio:.2f} x the trailing median")
    checked = len(dates) - len(skipped)
    note = f"{checked} date(s) within [{min_ratio}, {max_ratio}] x trailing median"
    if skipped:
        note += (
            f"; {len(skipped)} skipped (under {MIN_HISTORY_DAYS} days of history "
            f"or median under {MIN_VOLUME_FOR_CHECK} rows)"
        )
    volume = GateResult(
        f"source volume: {source.name}",
        not problems,
        f"{len(problems)} date(s) out of range" if problems else note,
        tuple(problems[:EXAMPLES]),
    )
    return [fresh, volume]


def exact_totals(catalog: Catalog, plan: Plan, results: dict[str, DataFrame]) -> list[GateResult]:
    """Parts whose sums are not exact: per-unit totals that do not fit a long (values times
    10^decimals beyond +-9.2e18), or a cell's sums of them or of their products beyond
    what 64-bit limb sums hold (`jobs.metrics.exact_sums`). Their intervals would be
    wrong, so the run must stop. One small aggregation per pass result."""
    out = []
    for p in plan.passes:
        overflow = {
            part: stat(part.key, "overflow")
            for part in p.parts
            if stat(part.key, "overflow") in results[p.name].columns
        }
        if not overflow:
            continue
        totals = results[p.name].agg(*[F.sum(c).alias(c) for c in overflow.values()]).first()
        for part, column in overflow.items():
            units = int((totals[column] if totals is not None else 0) or 0)
            metrics = [m for m in p.metrics if part in catalog.metrics[m].parts()]
            advice = (
                f"per-unit totals (or values) times 10^{part.scale} exceed 64 bits or are not "
                f"finite; lower `decimals` of {', '.join(metrics)} (now {part.scale})"
                if part.agg == "sum"
                else "counts of rows too large to sum exactly; please report it"
            )
            out.append(
                GateResult(
                    f"exact sums of {part.describe()} ({p.source})", units == 0, f"{units} {advice}"
                )
            )
    return out

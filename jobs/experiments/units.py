"""The unit-level table of an experiment, computed in Spark from events and assignments.

One row per (metric, unit): the unit's variant, its metric numerator `y` and denominator
`x` over its exposure window (events at or after its first assignment, within the
analysis window), and the same over the `covariate_days` before its assignment (`cy`,
`cx`, the CUPED covariate). Every assigned unit has a row, with zeros where it had no
events. `unit_key` is xxhash64 of the unit id as text: the bootstrap weights' key.

Per catalog metric type: count and sum give y = the unit's count or sum and x = 1 (a mean
per unit); mean, ratio and rate give the parts' per-unit sums (events cluster by unit);
quantile gives the sum and count of its values, and its events go to `quantile_events`.

Each source is read once per experiment: its rows are joined to the assignments and every
part over it is a conditional sum in one aggregation by unit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.experiments.definitions import ExperimentDef
from jobs.metrics.definitions import Catalog, MetricDef, Part
from jobs.metrics.exact_sums import WHOLE, scaled_value
from jobs.metrics.sources import TableReader, prepare
from jobs.metrics.types import traits

log = logging.getLogger(__name__)

UNIT_COLUMNS = ("experiment_id", "metric", "variant", "unit_id", "unit_key", "y", "x", "cy", "cx")


@dataclass(frozen=True)
class MetricParts:
    """A metric's per-unit numerator and denominator parts (None: 1 per unit)."""

    metric: str
    numerator: Part
    denominator: Part | None

    def parts(self) -> tuple[Part, ...]:
        return tuple(p for p in (self.numerator, self.denominator) if p is not None)


def metric_parts(metric: MetricDef) -> MetricParts:
    """The parts whose per-unit sums are y and x for a catalog metric."""
    if traits(metric.type).finish == "quantile":
        q = metric.quantile_part
        assert q is not None
        present = f"({q.value}) IS NOT NULL"
        both = f"({q.filter}) AND {present}" if q.filter else present
        return MetricParts(
            metric.name,
            Part(q.source, "sum", q.value, q.filter),
            Part(q.source, "count", None, both),
        )
    assert metric.numerator is not None, f"{metric.name} has no numerator"
    return MetricParts(metric.name, metric.numerator, metric.denominator)


def assignment_frame(assignments: DataFrame, exp: ExperimentDef, end: dt.date) -> DataFrame:
    """One row per unit assigned by `end`: unit_id (text), variant, assigned_at (its first
    exposure). Units logged in more than one variant are dropped (see `conflicting_units`)."""
    src = exp.assignments
    needed = (src.experiment_column, src.unit_column, src.variant_column, src.time_column)
    missing = [c for c in needed if c not in assignments.columns]
    if missing:
        from jobs.core.located_yaml import did_you_mean

        hint = did_you_mean(missing[0], assignments.columns)
        raise AssignmentError(
            f"assignment source '{src.name}' ({src.location}): column '{missing[0]}' is missing "
            f"(columns: {', '.join(assignments.columns)})" + (f"; {hint}" if hint else "")
        )
    rows = assignments.where(F.col(src.experiment_column) == F.lit(exp.id)).where(
        F.to_date(F.col(src.time_column)) <= F.lit(end)
    )
    per_unit = rows.groupBy(F.col(src.unit_column).cast("string").alias("unit_id")).agg(
        F.min(F.col(src.time_column)).alias("assigned_at"),
        F.min_by(F.col(src.variant_column).cast("string"), F.col(src.time_column)).alias("variant"),
        F.count_distinct(F.col(src.variant_column)).alias("variants_seen"),
    )
    # A unit exposed before the analysis window has no clean pre-period or exposure window.
    return per_unit.where(F.col("assigned_at") >= F.lit(exp.start).cast("timestamp"))


class AssignmentError(RuntimeError):
    """The assignment log lacks a column the experiment's definition names."""


def conflicting_units(per_unit: DataFrame) -> int:
    """Units logged in more than one variant (excluded from the analysis)."""
    return int(per_unit.where(F.col("variants_seen") > 1).count())


def _window(exp: ExperimentDef, end: dt.date) -> tuple[Column, Column]:
    """(post, pre) conditions on a joined event row: its time against the unit's exposure."""
    # `event_time` and `assigned_at` are columns of the joined rows.
    t, at = F.col("__event_time"), F.col("__assigned_at")
    day = F.to_date(t)
    post = (t >= at) & (day >= F.lit(exp.start)) & (day <= F.lit(end))
    pre = (t < at) & (t >= at - F.expr(f"INTERVAL {exp.covariate_days} DAYS"))
    return post, pre


def _part_sum(part: Part, when: Column, rows: DataFrame) -> Column:
    """A unit's total of a part over the rows where `when` holds: an exact sum (rows, or
    values rounded once per row to the part's decimals, as in the catalog), then a double."""
    condition = when & F.expr(part.filter) if part.filter else when
    if part.agg == "count":
        return F.coalesce(F.count_if(condition), F.lit(0)).cast("double")
    decimals = part.scale
    value = F.expr(str(part.value))
    scaled = scaled_value(value, decimals, rows.select(value).schema.fields[0].dataType)
    # A value whose scaled value does not fit a long stops the job (it is never dropped).
    lost = F.count_if(condition & value.isNotNull() & scaled.isNull()) > 0
    beyond = (
        f"{part.describe()}: a value times 10^{decimals} does not fit in 64 bits; "
        "lower the metric's `decimals`"
    )
    total = F.when(lost, F.raise_error(F.lit(beyond))).otherwise(
        F.sum(F.when(condition, scaled).cast(WHOLE))
    )
    return F.coalesce(total, F.lit(0)).cast("double") / 10.0**decimals


def joined_events(
    catalog: Catalog,
    source_name: str,
    read: TableReader,
    exp: ExperimentDef,
    assigned: DataFrame,
    end: dt.date,
) -> DataFrame:
    """The source's rows in [start - covariate days, end] joined to their unit's assignment."""
    source = catalog.sources[source_name]
    first = exp.start - dt.timedelta(days=exp.covariate_days)
    rows = prepare(source, catalog.sources, read, (first.isoformat(), end.isoformat()))
    unit = exp.unit_column(source_name, source.unit)
    keyed = rows.select(
        "*",
        F.col(unit).cast("string").alias("__unit_id"),
        F.col(source.time_column).alias("__event_time"),
    )
    return keyed.join(
        assigned.select(
            F.col("unit_id").alias("__unit_id"), F.col("assigned_at").alias("__assigned_at")
        ),
        on="__unit_id",
    )


def unit_frame(
    catalog: Catalog, exp: ExperimentDef, read: TableReader, assignments: DataFrame, end: dt.date
) -> DataFrame:
    """The experiment's unit table (columns `UNIT_COLUMNS`), one row per (metric, unit)."""
    assigned = assignment_frame(assignments, exp, end).where(F.col("variants_seen") == 1)
    parts = [metric_parts(catalog.metrics[m]) for m in exp.metrics]
    by_source: dict[str, list[Part]] = {}
    for mp in parts:
        for part in (mp.numerator, mp.denominator):
            if part is not None and part not in by_source.setdefault(part.source, []):
                by_source[part.source].append(part)
    wide = assigned.select("unit_id", "variant")
    for source_name, source_parts in by_source.items():
        events = joined_events(catalog, source_name, read, exp, assigned, end)
        post, pre = _window(exp, end)
        aggs = [_part_sum(p, post, events).alias(f"post_{p.key}") for p in source_parts]
        if exp.covariate_days:
            aggs += [_part_sum(p, pre, events).alias(f"pre_{p.key}") for p in source_parts]
        per_unit = events.groupBy(F.col("__unit_id").alias("unit_id")).agg(*aggs)
        wide = wide.join(per_unit, on="unit_id", how="left")
    return _long(wide, exp, parts)


def _long(wide: DataFrame, exp: ExperimentDef, parts: list[MetricParts]) -> DataFrame:
    """One row per (metric, unit) from the wide per-unit sums (nulls: no events, so 0)."""

    def total(part: Part | None, period: str) -> Column:
        if part is None:
            return F.lit(1.0 if period == "post" or exp.covariate_days else 0.0)
        return F.coalesce(F.col(f"{period}_{part.key}"), F.lit(0.0))

    def covariate(part: Part | None) -> Column:
        return total(part, "pre") if exp.covariate_days else F.lit(0.0)

    entries = [
        F.struct(
            F.lit(mp.metric).alias("metric"),
            total(mp.numerator, "post").alias("y"),
            total(mp.denominator, "post").alias("x"),
            covariate(mp.numerator).alias("cy"),
            covariate(mp.denominator).alias("cx"),
        )
        for mp in parts
    ]
    exploded = wide.select("unit_id", "variant", F.explode(F.array(*entries)).alias("m"))
    return exploded.select(
        F.lit(exp.id).alias("experiment_id"),
        F.col("m.metric").alias("metric"),
        "variant",
        "unit_id",
        F.xxhash64(F.col("unit_id")).alias("unit_key"),
        *[F.col(f"m.{c}").cast("double").alias(c) for c in ("y", "x", "cy", "cx")],
    )


def quantile_events(
    catalog: Catalog, exp: ExperimentDef, read: TableReader, assignments: DataFrame, end: dt.date
) -> DataFrame | None:
    """(metric, variant, unit_key, value) for every exposed event of the quantile metrics."""
    assigned = assignment_frame(assignments, exp, end).where(F.col("variants_seen") == 1)
    frames = []
    for name in exp.metrics:
        metric = catalog.metrics[name]
        if traits(metric.type).finish != "quantile" or metric.quantile_part is None:
            continue
        q = metric.quantile_part
        events = joined_events(catalog, q.source, read, exp, assigned, end).join(
            assigned.select(F.col("unit_id").alias("__unit_id"), "variant"), on="__unit_id"
        )
        post, _ = _window(exp, end)
        condition = post & F.expr(q.filter) if q.filter else post
        frames.append(
            events.where(condition & F.expr(q.value).isNotNull()).select(
                F.lit(name).alias("metric"),
                "variant",
                F.xxhash64(F.col("__unit_id")).alias("unit_key"),
                F.expr(q.value).cast("double").alias("value"),
            )
        )
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out

"""Statistics of the previous day that a pass's rows read (`PreviousDayCap`): for each cap,
the exact percentile of a value per day, joined onto each row as its column by the row's
day minus one. Computed from the source before the pass (one small aggregation per cap over
the days before the pass's), so every row's cap is the same whatever range a run covers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import Catalog, PreviousDayCap
from jobs.metrics.planner import PassPlan
from jobs.metrics.sources import Screen, TableReader, source_rows

_DAY = "__cap_day"


def caps_of(catalog: Catalog, plan: PassPlan) -> list[PreviousDayCap]:
    """The caps the pass's metrics read, each once."""
    found = [cap for name in plan.metrics for cap in catalog.metrics[name].caps]
    return list(dict.fromkeys(found))


def with_caps(
    rows: DataFrame,
    caps: list[PreviousDayCap],
    catalog: Catalog,
    read: TableReader,
    dates: tuple[str, str],
    screen_for: Callable[[tuple[str, str]], Screen] | None = None,
) -> DataFrame:
    """`rows` (of the dates [first, last]) with one column per cap: its value on the day
    before each row's day (null where that day has no values). `screen_for(dates)`: the
    source contract's screen of the rows of those dates, so that a cap is taken over the
    rows the metric counts (no quarantined row, one row per unique key)."""
    if not caps:
        return rows
    first, last = (dt.date.fromisoformat(d) for d in dates)
    before = ((first - dt.timedelta(days=1)).isoformat(), (last - dt.timedelta(days=1)).isoformat())
    time_column = catalog.sources[caps[0].source].time_column
    out = rows.withColumn(_DAY, F.to_date(F.col(time_column)))
    for cap in caps:
        screen = screen_for(before) if screen_for else None
        out = out.join(F.broadcast(_daily(cap, catalog, read, before, screen)), _DAY, "left")
    return out.drop(_DAY)


def _daily(
    cap: PreviousDayCap,
    catalog: Catalog,
    read: TableReader,
    dates: tuple[str, str],
    screen: Screen | None,
) -> DataFrame:
    """(the day after, the cap): the exact `cap.quantile` of the day's values."""
    source = catalog.sources[cap.source]
    rows = source_rows(source, catalog.sources, read, dates, checked=screen is not None)
    if screen is not None:
        rows = screen(rows)
    if source.filter:
        rows = rows.where(F.expr(source.filter))
    if cap.filter:
        rows = rows.where(F.expr(cap.filter))
    value = F.expr(cap.value).cast("double")
    return (
        rows.where(value.isNotNull())
        .groupBy(F.date_add(F.to_date(F.col(source.time_column)), 1).alias(_DAY))
        .agg(F.percentile(value, F.lit(cap.quantile)).alias(cap.column))
    )

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


def cap_tables(
    caps: list[PreviousDayCap],
    catalog: Catalog,
    read: TableReader,
    dates: tuple[str, str],
    screen_for: Callable[[tuple[str, str]], Screen] | None = None,
) -> list[DataFrame]:
    """Per cap, (day, cap) for the rows of the dates [first, last]: its value on the day
    before (each computed once, joined by `with_caps` onto every frame of the pass).
    `screen_for(dates)`: the source contract's screen of the rows of those dates, so that a
    cap is taken over the rows the metric counts (no quarantined row, one per unique key)."""
    first, last = (dt.date.fromisoformat(d) for d in dates)
    before = ((first - dt.timedelta(days=1)).isoformat(), (last - dt.timedelta(days=1)).isoformat())
    screen = screen_for(before) if screen_for else None
    return [_daily(cap, catalog, read, before, screen) for cap in caps]


def with_caps(rows: DataFrame, tables: list[DataFrame], time_column: str) -> DataFrame:
    """`rows` with one column per cap table: the cap of each row's day (null where the day
    before had no values)."""
    if not tables:
        return rows
    out = rows.withColumn(_DAY, F.to_date(F.col(time_column)))
    for table in tables:
        out = out.join(F.broadcast(table), _DAY, "left")
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

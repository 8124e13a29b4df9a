"""Driving a metrics run with Spark: the checked catalog, the date to compute, chunks.

`jobs.metrics.cli` parses and prints; this module starts the session, resolves the dates
from the sources' data and publishes chunk by chunk (`MetricsJob`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from jobs.core.config import AppConfig
from jobs.core.delta import DeltaSink
from jobs.core.failures import UsageError
from jobs.core.logs import stage
from jobs.core.run_dates import DateSpec, check_landed, today_utc, yesterday_utc
from jobs.core.run_log import note
from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.loader import default_defs_dir, load_catalog
from jobs.metrics.planner import Plan
from jobs.metrics.sources import TableReader, source_dates, table_reader

if TYPE_CHECKING:
    from jobs.metrics.job import RunSummary

log = logging.getLogger("safety-metrics")


def load_checked_catalog(
    spark: SparkSession,
    sink: DeltaSink,
    config: AppConfig,
    defs: Path | None,
    unread: list[str] | None = None,
) -> Catalog:
    """Load the catalog and check its SQL against the sources' declared (else real)
    columns, and the declarations against the real tables that exist. `unread`, when
    given, receives the sources checked against their declaration alone (no table)."""
    from jobs.metrics.sql_check import SparkExpressionChecker

    read = table_reader(spark, sink, config.warehouse)
    checkers: list[SparkExpressionChecker] = []

    def checker(sources: dict[str, SourceDef]) -> SparkExpressionChecker:
        checkers.append(SparkExpressionChecker(spark, read, sources))
        return checkers[-1]

    catalog = load_catalog(defs or default_defs_dir(), checker)
    if unread is not None:
        unread.extend(name for c in checkers for name in c.unread)
    return catalog


def latest_dates(
    read: TableReader,
    sources: Iterable[SourceDef],
    warehouse: str,
    today: dt.date | None = None,
) -> dict[str, dt.date | None]:
    """Each source's last date with data up to `today` (default: today in UTC; None: no
    rows), for the sources whose data marks a day as landed (not those that `may_be_empty`,
    unless all of them may). Rows dated after today are a contract violation (future_time):
    they never make a date look landed, and each such source is named in a warning."""
    day = today or today_utc()
    found = {s.name: source_dates(s, read, warehouse, day) for s in marking_landed(sources)}
    for name, dates in sorted(found.items()):
        if dates.future is not None:
            log.warning(
                "%s has rows dated up to %s, after today (%s, UTC): rows in the future break "
                "its contract (future_time); dates after today are never chosen, and a run "
                "over them stops",
                name,
                dates.future,
                day,
            )
    return {name: dates.latest for name, dates in found.items()}


def marking_landed(sources: Iterable[SourceDef]) -> list[SourceDef]:
    """The sources whose data shows that a day has landed: those that are never empty on a
    normal day (all of them, if every one `may_be_empty`)."""
    chosen = list(sources)
    return [s for s in chosen if not s.may_be_empty] or chosen


def latest_date_of(
    read: TableReader,
    sources: Iterable[SourceDef],
    warehouse: str,
    today: dt.date | None = None,
) -> dt.date:
    """The last date up to today that every one of `sources` that has data has data for."""
    ends = [d for d in latest_dates(read, sources, warehouse, today).values() if d is not None]
    if not ends:
        raise RuntimeError("no source has any data; run `safety-metrics generate` first")
    return min(ends)


def day_to_compute(
    spec: DateSpec | None,
    config: AppConfig,
    read: TableReader,
    sources: Iterable[SourceDef],
    today: dt.date | None = None,
) -> dt.date:
    """The date a job computes: `--date`, else the configuration's `default_date`
    (`yesterday` in UTC, or `latest`: the last date up to today (UTC) that every source has).
    A date past some source's data raises `DataNotReadyError` (exit status 75: retry
    later)."""
    chosen = list(sources)
    wanted = spec or config.default_date
    if wanted == "latest":
        day = latest_date_of(read, chosen, config.warehouse, today)
        log.info(
            "date: %s, the latest date up to today (%s, UTC) every source has data for",
            day,
            today or today_utc(),
        )
        return day
    day = yesterday_utc() if wanted == "yesterday" else wanted
    assert isinstance(day, dt.date)
    if spec is None:
        log.info("no --date given: computing %s (default_date: %s, UTC)", day, wanted)
    check_landed(day, latest_dates(read, chosen, config.warehouse, today))
    return day


def date_chunks(start: dt.date, end: dt.date, days: int | None) -> list[tuple[dt.date, dt.date]]:
    """[start, end] cut into consecutive ranges of at most `days` days (None: one range)."""
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    if days is None:
        return [(start, end)]
    chunks = []
    first = start
    while first <= end:
        last = min(end, first + dt.timedelta(days=days - 1))
        chunks.append((first, last))
        first = last + dt.timedelta(days=1)
    return chunks


@dataclass(frozen=True)
class MetricsJob:
    """What every metrics command needs: the checked catalog, the plan and the session."""

    spark: SparkSession
    sink: DeltaSink
    catalog: Catalog
    plan: Plan
    config: AppConfig

    @classmethod
    def start(cls, config: AppConfig, defs: Path | None, plan: Plan) -> MetricsJob:
        """Start the session and check the catalog's SQL against the sources' columns
        (`plan` was compiled from its structure, without Spark)."""
        from jobs.core.session import build_session

        spark = build_session(config)
        sink = DeltaSink.for_session(spark, config.delta_backend)
        catalog = load_checked_catalog(spark, sink, config, defs)
        return cls(spark, sink, catalog, plan, config)

    def read(self) -> TableReader:
        return table_reader(self.spark, self.sink, self.config.warehouse)

    def publish(
        self, start: dt.date, end: dt.date, run_id: str | None, plan: Plan | None = None
    ) -> RunSummary:
        """Compute `plan` (default: the selection's) over [start, end] and replace it."""
        from jobs.metrics.job import date_range, run_metrics

        plan = plan or self.plan
        note(
            dates=date_range(start, end),
            definitions_version=self.catalog.definitions_version(plan.metrics),
        )
        return run_metrics(
            self.spark,
            self.sink,
            self.catalog,
            plan,
            self.config.warehouse,
            start,
            end,
            run_id=run_id,
        )

    def publish_chunks(
        self,
        start: dt.date,
        end: dt.date,
        chunk_days: int | None,
        run_id: str | None,
        plan: Plan | None = None,
    ) -> list[RunSummary]:
        """`publish` one chunk of days at a time (each its own atomic commit), with progress
        and an estimate of the time left."""
        chunks = date_chunks(start, end, chunk_days)
        summaries: list[RunSummary] = []
        began = time.perf_counter()
        for i, (first, last) in enumerate(chunks, start=1):
            with stage(log, f"[chunk {i}/{len(chunks)}] {first}..{last}"):
                summary = self.publish(first, last, run_id, plan)
            summaries.append(summary)
            if len(chunks) > 1:
                left = (time.perf_counter() - began) / i * (len(chunks) - i)
                print(
                    f"chunk {i}/{len(chunks)} {first}..{last}: {summary.rows:,} rows, "
                    f"table version {summary.version}, {summary.seconds:.0f} s"
                    + (f"; about {left:.0f} s left" if i < len(chunks) else ""),
                    flush=True,
                )
        return summaries

"""Sub-commands over the metric catalog: validate, plan, run, and the daily main job."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from jobs.arguments import iso_date, positive_int
from jobs.config import AppConfig, data_dir
from jobs.delta import DeltaSink
from jobs.failures import UsageError
from jobs.logs import stage
from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.loader import load_catalog
from jobs.metrics.planner import Plan, compile_plan, render_plan
from jobs.metrics.sources import TableReader, source_dates, table_reader
from jobs.run_dates import DateSpec, check_landed, run_date, today_utc, yesterday_utc
from jobs.run_log import note

if TYPE_CHECKING:
    from jobs.metrics.restatement import Restatement, StaleCell
    from jobs.metrics_job import RunSummary

log = logging.getLogger("safety-metrics")


def default_defs_dir() -> Path:
    """`$SAFETY_METRICS_DEFS_DIR`, else `./metric_defs`, else the one beside the source tree."""
    return data_dir("SAFETY_METRICS_DEFS_DIR", "metric_defs")


def add_defs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--defs",
        type=Path,
        default=None,
        help="folder of metric definition YAML files (default: ./metric_defs)",
    )


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric names (default: the whole catalog; "
        "derived metrics bring their inputs)",
    )


def selection(args: argparse.Namespace) -> list[str] | None:
    if not args.metrics:
        return None
    return [m.strip() for m in args.metrics.split(",") if m.strip()]


def load_checked_catalog(
    spark: SparkSession, sink: DeltaSink, config: AppConfig, defs: Path | None
) -> Catalog:
    """Load the catalog and check its SQL against the sources' real columns."""
    from jobs.metrics.sql_check import SparkExpressionChecker

    read = table_reader(spark, sink, config.warehouse)
    return load_catalog(
        defs or default_defs_dir(), lambda sources: SparkExpressionChecker(spark, read, sources)
    )


def run_validate(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.session import build_session

    defs = args.defs or default_defs_dir()
    catalog = load_catalog(defs)  # structure first: no Spark needed to report these
    spark = build_session(config)
    catalog = load_checked_catalog(
        spark, DeltaSink.for_session(spark, config.delta_backend), config, defs
    )
    print(f"{defs}: {len(catalog.metrics)} metrics over {len(catalog.sources)} sources are valid.")
    return 0


def run_plan(args: argparse.Namespace, config: AppConfig) -> int:
    catalog = load_catalog(args.defs or default_defs_dir())
    plan = selected_plan(catalog, selection(args))
    print(render_plan(catalog, plan), end="")
    return 0


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


def add_run_arguments(cmd: argparse.ArgumentParser, command: str) -> None:
    """The date options of `run` (a date, a range or a restatement), `backfill` (a range)
    and `daily` (a date or a range)."""
    backfill = command == "backfill"
    if not backfill:
        cmd.add_argument(
            "--date",
            type=run_date,
            default=None,
            help="the date to compute: YYYY-MM-DD, 'yesterday' (UTC) or 'latest' (the "
            "latest date every source has data for); default: the configuration's "
            "default_date (yesterday in conf/cluster.yaml, latest in conf/local.yaml)",
        )
    cmd.add_argument(
        "--start", type=iso_date, required=backfill, default=None, help="first date of a range"
    )
    cmd.add_argument(
        "--end", type=iso_date, required=backfill, default=None, help="last date of a range"
    )
    cmd.add_argument(
        "--chunk-days",
        type=positive_int,
        default=7 if backfill else None,
        help="compute and commit a range this many days at a time, with progress "
        + ("(default: 7)" if backfill else "(default: the whole range in one commit)"),
    )
    cmd.add_argument("--run-id", default=None, help="run id to record (default: time + random)")
    if command == "run":
        cmd.add_argument(
            "--restate",
            action="store_true",
            help="recompute exactly the stored dates whose definition version differs from "
            "the current definitions (within --start/--end when given), and log each in "
            "runs/restatements",
        )
        cmd.add_argument(
            "--dry-run",
            action="store_true",
            help="with --restate: list what would be recomputed, compute nothing",
        )


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
    def start(cls, args: argparse.Namespace, config: AppConfig) -> MetricsJob:
        from jobs.session import build_session

        catalog = load_catalog(args.defs or default_defs_dir())  # structure first, no Spark
        plan = selected_plan(catalog, selection(args))
        spark = build_session(config)
        sink = DeltaSink.for_session(spark, config.delta_backend)
        catalog = load_checked_catalog(spark, sink, config, args.defs)
        return cls(spark, sink, catalog, plan, config)

    def read(self) -> TableReader:
        return table_reader(self.spark, self.sink, self.config.warehouse)

    def publish(
        self, start: dt.date, end: dt.date, run_id: str | None, plan: Plan | None = None
    ) -> RunSummary:
        """Compute `plan` (default: the selection's) over [start, end] and replace it."""
        from jobs.metrics_job import date_range, run_metrics

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


def selected_plan(catalog: Catalog, names: list[str] | None) -> Plan:
    try:
        return compile_plan(catalog, names)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def run_metrics_command(args: argparse.Namespace, config: AppConfig) -> int:
    """`run`: a date (default: the configuration's default_date), a range, or `--restate`."""
    if args.restate:
        return run_restate(args, config)
    if args.dry_run:
        raise UsageError("--dry-run only goes with --restate")
    if args.date and (args.start or args.end):
        raise UsageError("give --date, or --start and --end, not both")
    metrics_run(args, config)
    return 0


def metrics_run(args: argparse.Namespace, config: AppConfig) -> RunSummary:
    """Compute and publish the dates `args` name; return the last chunk's summary."""
    job = MetricsJob.start(args, config)
    sources = [job.catalog.sources[p.source] for p in job.plan.passes]
    if args.start or args.end:
        start, end = args.start or args.end, args.end or args.start
        check_landed(end, latest_dates(job.read(), sources, config.warehouse))
    else:
        start = end = day_to_compute(args.date, config, job.read(), sources)
    print(render_plan(job.catalog, job.plan), end="")
    summaries = job.publish_chunks(start, end, args.chunk_days, args.run_id)
    print()
    print(summaries[-1].render() if len(summaries) == 1 else _totals(summaries))
    return summaries[-1]


def run_backfill_command(args: argparse.Namespace, config: AppConfig) -> int:
    """`backfill --start --end`: the range chunk by chunk, each chunk one atomic commit."""
    metrics_run(args, config)
    return 0


def _totals(summaries: list[RunSummary]) -> str:
    rows = sum(s.rows for s in summaries)
    seconds = sum(s.seconds for s in summaries)
    first, last = summaries[0].dates[0], summaries[-1].dates[-1]
    from jobs.metrics.source_checks import chunk_lines

    return "\n".join(
        [
            f"metric_values: {rows:,} rows for {len(summaries[0].metrics)} metrics on "
            f"{first}..{last} in {len(summaries)} commits, table version "
            f"{summaries[-1].version}, run {summaries[-1].run_id}, {seconds:.1f} s",
            f"  table: {summaries[-1].table}",
            *chunk_lines([c for s in summaries for c in s.checks]),
        ]
    )


def run_restate(args: argparse.Namespace, config: AppConfig) -> int:
    """`run --restate`: recompute exactly the stale (date, metric) cells, log each."""
    from jobs.metrics.restatement import (
        restatements,
        stale_cells,
        stored_versions,
        undefined_metrics,
    )
    from jobs.metrics_job import METRIC_VALUES
    from jobs.run_log import record_restatements

    if args.date:
        raise UsageError("--restate looks for stale dates itself; bound it with --start/--end")
    job = MetricsJob.start(args, config)
    table = os.path.join(config.warehouse, METRIC_VALUES)
    if not os.path.isdir(os.path.join(table, "_delta_log")) and "://" not in table:
        print(f"{table}: no table yet, nothing to restate")
        return 0
    stored = stored_versions(job.sink.read(table), args.start, args.end)
    for gone in undefined_metrics(stored, job.catalog):
        log.warning("%s is stored but no longer defined: its rows are left as they are", gone)
    cells = stale_cells(stored, job.catalog, job.plan.metrics)
    runs = restatements(cells)
    print(render_restatements(cells, runs))
    if args.dry_run or not runs:
        return 0
    for i, todo in enumerate(runs, start=1):
        log.info("restatement %d/%d: %s", i, len(runs), todo)
        plan = selected_plan(job.catalog, list(todo.metrics))
        for summary in job.publish_chunks(todo.start, todo.end, args.chunk_days, args.run_id, plan):
            done = set(summary.dates)
            restated = [c for c in cells if c.date in done and c.metric in todo.metrics]
            record_restatements(config.warehouse, summary.run_id, restated)
            print(f"restated {len(restated)} cells: {summary.render().splitlines()[0]}")
    return 0


def render_restatements(cells: list[StaleCell], runs: list[Restatement]) -> str:
    """What `--restate` found: per run, the metrics and how their versions changed."""
    if not cells:
        return "every stored date is at the current definitions: nothing to restate"
    lines = [
        f"{len(cells)} stale (date, metric) cells on {len({c.date for c in cells})} dates, "
        f"in {len(runs)} recomputation(s):"
    ]
    for todo in runs:
        span = str(todo.start) if todo.start == todo.end else f"{todo.start}..{todo.end}"
        lines.append(f"  {span}:")
        for metric in todo.metrics:
            stored = sorted(
                {
                    c.stored or "missing"
                    for c in cells
                    if c.metric == metric and c.date in todo.dates()
                }
            )
            current = next(c.current for c in cells if c.metric == metric)
            lines.append(f"    {metric}: {', '.join(stored)} -> {current}")
    return "\n".join(lines)

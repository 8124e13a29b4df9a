"""`validate`, `plan`, `run`, `backfill` and `run --restate`: their arguments and what they print
(the Spark side: `jobs.metrics.runner` drives a run, `jobs.metrics.job` computes and writes)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.core.arguments import iso_date, positive_int
from jobs.core.config import AppConfig
from jobs.core.failures import UsageError
from jobs.core.run_dates import check_landed, run_date
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import default_defs_dir, load_catalog
from jobs.metrics.planner import Plan, compile_plan, render_plan

if TYPE_CHECKING:
    from jobs.metrics.job import RunSummary
    from jobs.metrics.restatement import Restatement, StaleCell
    from jobs.metrics.runner import MetricsJob

log = logging.getLogger("safety-metrics")


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


def run_validate(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.metrics.runner import load_checked_catalog

    defs = args.defs or default_defs_dir()
    catalog = load_catalog(defs)  # structure first: no Spark needed to report these
    spark = build_session(config)
    unread: list[str] = []
    catalog = load_checked_catalog(
        spark, DeltaSink.for_session(spark, config.delta_backend), config, defs, unread
    )
    print(f"{defs}: {len(catalog.metrics)} metrics over {len(catalog.sources)} sources are valid.")
    if unread:
        print(
            f"  checked against their declared schemas alone (no table under "
            f"{config.warehouse}): {', '.join(sorted(unread))}"
        )
    return 0


def selected_plan(catalog: Catalog, names: list[str] | None) -> Plan:
    try:
        return compile_plan(catalog, names)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def run_plan(args: argparse.Namespace, config: AppConfig) -> int:
    catalog = load_catalog(args.defs or default_defs_dir())
    plan = selected_plan(catalog, selection(args))
    print(render_plan(catalog, plan), end="")
    return 0


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


def start_job(args: argparse.Namespace, config: AppConfig) -> MetricsJob:
    """The catalog's structure and the plan first (no Spark), then the session."""
    from jobs.metrics.runner import MetricsJob

    catalog = load_catalog(args.defs or default_defs_dir())
    return MetricsJob.start(config, args.defs, selected_plan(catalog, selection(args)))


def metrics_run(args: argparse.Namespace, config: AppConfig) -> RunSummary:
    """Compute and publish the dates `args` name; return the last chunk's summary."""
    from jobs.metrics.runner import day_to_compute, latest_dates

    job = start_job(args, config)
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
    from jobs.metrics.job import METRIC_VALUES
    from jobs.metrics.restatement import (
        record_restatements,
        restatements,
        stale_cells,
        stored_versions,
        undefined_metrics,
    )

    if args.date:
        raise UsageError("--restate looks for stale dates itself; bound it with --start/--end")
    job = start_job(args, config)
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

"""Sub-commands over the metric catalog: validate, plan, run, and the daily main job."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.config import AppConfig, data_dir
from jobs.delta import DeltaSink
from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.loader import load_catalog
from jobs.metrics.planner import compile_plan, render_plan
from jobs.metrics.sources import TableReader, table_reader

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
    try:
        plan = compile_plan(catalog, selection(args))
    except KeyError as exc:
        raise SystemExit(f"safety-metrics: {exc.args[0]}") from None
    print(render_plan(catalog, plan), end="")
    return 0


def latest_date(read: TableReader, catalog: Catalog) -> dt.date:
    """The last date that every source of the catalog has data for."""
    return latest_date_of(read, catalog.sources.values())


def latest_date_of(read: TableReader, sources: Iterable[SourceDef]) -> dt.date:
    """The last date that every one of `sources` has data for."""
    ends: list[dt.date] = []
    for source in sources:
        column = source.date_column or source.time_column
        value = read(source).agg(F.max(F.to_date(F.col(column)))).collect()[0][0]
        if value is not None:
            ends.append(value)
    if not ends:
        raise RuntimeError("no source has any data; run `safety-metrics generate` first")
    return min(ends)


def run_metrics_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.metrics_job import run_metrics
    from jobs.session import build_session

    if args.date and (args.start or args.end):
        raise SystemExit("safety-metrics: give --date, or --start and --end, not both")
    catalog = load_catalog(args.defs or default_defs_dir())
    try:
        plan = compile_plan(catalog, selection(args))
    except KeyError as exc:
        raise SystemExit(f"safety-metrics: {exc.args[0]}") from None
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    catalog = load_checked_catalog(spark, sink, config, args.defs)
    if args.date:
        start = end = args.date
    elif args.start or args.end:
        start, end = args.start or args.end, args.end or args.start
    else:
        start = end = latest_date(table_reader(spark, sink, config.warehouse), catalog)
        log.info("no --date given: using %s, the latest date every source has data for", start)
    print(render_plan(catalog, plan), end="")
    summary = run_metrics(
        spark, sink, catalog, plan, config.warehouse, start, end, run_id=args.run_id
    )
    print()
    print(summary.render())
    return 0

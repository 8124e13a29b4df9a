"""`safety-metrics monitor`, `detect` and `alerts`: their arguments and what they print (the
Spark side: `job.py` scores and reads the tables, `detect_command.py` scores a user's file)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from typing import TYPE_CHECKING

from jobs.core.arguments import iso_date
from jobs.core.config import AppConfig
from jobs.core.failures import UsageError
from jobs.core.run_dates import DataNotReadyError, resolve_date, run_date
from jobs.metrics.definitions import Catalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.core.delta import DeltaSink

log = logging.getLogger("safety-metrics")


def add_monitor_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--date",
        default=None,
        type=run_date,
        metavar="DATE",
        help="date to score: YYYY-MM-DD, 'yesterday' (UTC) or 'latest' (the latest date in "
        "metric_values); default: the configuration's default_date",
    )
    cmd.add_argument(
        "--start", default=None, type=iso_date, metavar="YYYY-MM-DD", help="first date of a range"
    )
    cmd.add_argument(
        "--end", default=None, type=iso_date, metavar="YYYY-MM-DD", help="last date of a range"
    )
    cmd.add_argument("--run-id", default=None, help="run id to record (default: time + random)")


def add_detect_arguments(cmd: argparse.ArgumentParser) -> None:
    from jobs.monitoring.detect_settings import DETECT_CONTRACT, LOCAL_SERIES_LIMIT
    from jobs.monitoring.grains import GRAIN_NAMES, parse_grain
    from udfs.detector_settings import DIRECTIONS, KINDS

    cmd.formatter_class = argparse.RawDescriptionHelpFormatter
    cmd.epilog = DETECT_CONTRACT
    cmd.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="Delta folder, Parquet file or folder, or CSV file (see the columns below)",
    )
    cmd.add_argument(
        "--output",
        required=True,
        metavar="PATH",
        help="a .csv file, or a Delta table folder (any other name)",
    )
    cmd.add_argument(
        "--grain",
        type=parse_grain,
        default=None,
        metavar="GRAIN",
        help=f"auto (default: per series, from its spacing) or one of {', '.join(GRAIN_NAMES)}",
    )
    cmd.add_argument(
        "--kind", choices=KINDS, default=None, help="kind of series without a kind column"
    )
    cmd.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default=None,
        help="changes to alert for series without a direction column (default: both)",
    )
    cmd.add_argument(
        "--min-volume",
        type=float,
        default=0.0,
        metavar="X",
        help="points whose volume is under X are never alerted (default: 0)",
    )
    cmd.add_argument(
        "--max-local-series",
        type=int,
        default=LOCAL_SERIES_LIMIT,
        metavar="N",
        help=f"score up to N series in this process without Spark, more with Spark "
        f"(default: {LOCAL_SERIES_LIMIT:,}; 0: always Spark)",
    )


def add_alerts_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--date",
        default=None,
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="date to report (default: the latest scored date)",
    )
    cmd.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write the alerts as JSON lines (for a pager or chat integration)",
    )


def run_monitor_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.metrics.job import METRIC_VALUES
    from jobs.metrics.loader import default_defs_dir, load_catalog
    from jobs.monitoring.job import latest_metric_date

    catalog = load_catalog(args.defs or default_defs_dir())
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    if args.date and (args.start or args.end):
        raise UsageError("give --date, or --start and --end, not both")
    if args.start or args.end:
        start, end = args.start or args.end, args.end or args.start
    else:
        latest = latest_metric_date(sink, config.warehouse, METRIC_VALUES)
        start = end = resolve_date(args.date or config.default_date, lambda: latest)
        if start > latest:
            raise DataNotReadyError(
                f"metric_values has no rows for {start} yet (latest {latest}); run the "
                "metrics job for it first"
            )
        log.info("scoring %s (latest date in metric_values: %s)", start, latest)
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    return monitor(spark, sink, config, catalog, start, end, args.run_id)


def monitor(
    spark: SparkSession,
    sink: DeltaSink,
    config: AppConfig,
    catalog: Catalog,
    start: dt.date,
    end: dt.date,
    run_id: str | None,
) -> int:
    """Score [start, end], write both tables, print the alerts of `end`."""
    from jobs.core.run_log import new_run_id, note
    from jobs.monitoring.job import alerts, render_alerts, run_monitoring

    run_id = run_id or new_run_id()
    note(dates=[start + dt.timedelta(days=i) for i in range((end - start).days + 1)])
    summary = run_monitoring(spark, sink, catalog, config.warehouse, start, end, run_id)
    print(summary.render())
    print(render_alerts(alerts(sink, config.warehouse, end), end))
    return 0


def run_alerts_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.monitoring.job import (
        METRIC_ANOMALIES,
        alerts,
        latest_metric_date,
        render_alerts,
        write_json_lines,
    )

    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    day = args.date or latest_metric_date(sink, config.warehouse, METRIC_ANOMALIES)
    found = alerts(sink, config.warehouse, day)
    print(render_alerts(found, day))
    if args.json:
        write_json_lines(found, args.json)
        print(f"wrote {len(found)} alerts as JSON lines to {args.json}")
    return 0


def run_detect_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.monitoring.detect_command import run_detect

    return run_detect(args, config)

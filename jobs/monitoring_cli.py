"""`safety-metrics monitor`, `detect` and `alerts`: anomaly detection and its summaries."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import tempfile

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.arguments import iso_date
from jobs.config import AppConfig
from jobs.delta import DeltaSink
from jobs.failures import UsageError
from jobs.metrics.definitions import Catalog
from jobs.run_dates import DataNotReadyError, resolve_date, run_date
from jobs.run_log import new_run_id, note
from udfs.anomaly_detectors import Grain

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
    cmd.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="Delta folder, Parquet or CSV with series_id, ts, value and optionally volume",
    )
    cmd.add_argument(
        "--output",
        required=True,
        metavar="PATH",
        help="a .csv file, or a Delta table folder (any other name)",
    )
    cmd.add_argument(
        "--grain",
        choices=("auto", "day", "hour"),
        default="auto",
        help="the series' grain (default: hour if timestamps are under a day apart)",
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


def latest_metric_date(sink: DeltaSink, warehouse: str, table: str) -> dt.date:
    path = os.path.join(warehouse, table)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        raise FileNotFoundError(f"{path}: no such Delta table; run `safety-metrics run` first")
    value = sink.read(path).agg(F.max("date")).collect()[0][0]
    if value is None:
        raise RuntimeError(f"{path} is empty")
    return value  # type: ignore[no-any-return]


def run_monitor_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.metrics.loader import load_catalog
    from jobs.metrics_cli import default_defs_dir
    from jobs.metrics_job import METRIC_VALUES
    from jobs.session import build_session

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
    from jobs.monitoring_job import alerts, render_alerts, run_monitoring

    run_id = run_id or new_run_id()
    note(dates=[start + dt.timedelta(days=i) for i in range((end - start).days + 1)])
    summary = run_monitoring(spark, sink, catalog, config.warehouse, start, end, run_id)
    print(summary.render())
    print(render_alerts(alerts(sink, config.warehouse, end), end))
    return 0


def run_alerts_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.monitoring_job import METRIC_ANOMALIES, alerts, render_alerts, write_json_lines
    from jobs.session import build_session

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
    from jobs.experiments_job import read_table
    from jobs.monitoring.series import score_series, user_series
    from jobs.session import build_session

    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    series = user_series(read_table(spark, sink, args.input), args.input)
    grain: Grain = args.grain if args.grain != "auto" else guess_grain(series)
    log.info("scoring the series of %s at %s grain", args.input, grain)
    scored = score_series(series, grain)
    write_output(sink, scored, args.output)
    flagged = sink.read(args.output) if not args.output.endswith(".csv") else None
    print(f"wrote scored points to {args.output}")
    if flagged is not None:
        print(f"  {flagged.where('is_anomaly').count():,} anomalies")
    return 0


def guess_grain(series: DataFrame) -> Grain:
    """hour if any two timestamps of a series are less than a day apart, else day."""
    gap = (
        series.select("series_id", F.unix_timestamp("ts").alias("t"))
        .groupBy("series_id")
        .agg((F.max("t") - F.min("t")).alias("span"), F.count_distinct("t").alias("n"))
        .where("n > 1")
        .agg(F.min(F.col("span") / (F.col("n") - 1)))
        .collect()[0][0]
    )
    return "hour" if gap is not None and gap < 86_400 else "day"


def write_output(sink: DeltaSink, scored: DataFrame, path: str) -> None:
    """A single CSV file (written by one task, moved into place) or a Delta table."""
    if not path.endswith(".csv"):
        sink.write(scored, path, mode="overwrite")
        return
    folder = tempfile.mkdtemp(prefix="detect-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        scored.coalesce(1).write.mode("overwrite").option("header", True).csv(folder + "/out")
        part = next(f for f in os.listdir(folder + "/out") if f.startswith("part-"))
        os.replace(os.path.join(folder, "out", part), path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

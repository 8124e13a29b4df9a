"""`safety-metrics audit-privacy`: which suppressed cells of `metric_values` its published
rows give away, by which route (see docs/privacy.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time

from jobs.core.arguments import iso_date, positive_int
from jobs.core.config import AppConfig
from jobs.core.failures import EXIT_GATE, UsageError

log = logging.getLogger("safety-metrics")


def add_audit_privacy_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--table",
        default=None,
        help="the metric_values table to audit (default: WAREHOUSE/metrics/metric_values)",
    )
    cmd.add_argument("--start", type=iso_date, default=None, help="first date to judge")
    cmd.add_argument("--end", type=iso_date, default=None, help="last date to judge")
    cmd.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metrics whose suppressed cells to judge (default: all); every "
        "metric's rows are still read, since they are what an attacker combines",
    )
    cmd.add_argument(
        "--no-history",
        action="store_true",
        help="leave out the rows that only older versions of the table hold",
    )
    cmd.add_argument(
        "--examples", type=positive_int, default=3, help="examples per route (default: 3)"
    )
    cmd.add_argument(
        "--json", default=None, help="also write every recoverable cell as JSON lines here"
    )


def run_audit_privacy_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.metrics.job import METRIC_VALUES
    from jobs.metrics.loader import default_defs_dir, load_catalog
    from jobs.privacy.audit import audit
    from jobs.privacy.gate import published_rows

    catalog = load_catalog(args.defs or default_defs_dir())
    judged_metrics = None
    if args.metrics:
        judged_metrics = {m.strip() for m in args.metrics.split(",") if m.strip()}
        unknown = sorted(judged_metrics - set(catalog.metrics))
        if unknown:
            raise UsageError(f"unknown metric(s): {', '.join(unknown)}")
    if args.start and args.end and args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    table = args.table or os.path.join(config.warehouse, METRIC_VALUES)
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    began = time.perf_counter()
    rows = published_rows(
        spark,
        sink,
        catalog,
        table,
        args.start,
        args.end,
        history=not args.no_history,
    )
    read = time.perf_counter() - began
    first = None if args.start is None else (args.start - dt.date(1970, 1, 1)).days
    last = None if args.end is None else (args.end - dt.date(1970, 1, 1)).days
    judged = {
        r.key
        for r in rows
        if not r.history
        and (first is None or r.date >= first)
        and (last is None or r.date <= last)
        and (judged_metrics is None or r.metric in judged_metrics)
    }
    report = audit(rows, catalog, judged=judged)
    print(f"{table}: read {len(rows):,} rows' keys and flags in {read:.1f} s")
    print(report.render(args.examples))
    if args.json:
        with open(args.json, "w") as out:
            for f in report.findings:
                out.write(json.dumps({"cell": f.describe(), "route": f.route}) + "\n")
    if report.findings:
        print(
            f"safety-metrics: {len(report.findings):,} suppressed cells are recoverable",
            file=sys.stderr,
        )
        return EXIT_GATE
    return 0

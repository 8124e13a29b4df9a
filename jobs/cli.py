"""The `safety-metrics` command: one entry point with a sub-command per job."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence

from jobs.arguments import iso_date, positive_float, positive_int, whole
from jobs.config import AppConfig, load_config
from jobs.located_yaml import InputError
from jobs.logs import configure_logging

log = logging.getLogger("safety-metrics")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default=None,
        help="environment: a name under conf/ (default: local, or $SAFETY_METRICS_ENV) "
        "or a path to a YAML file",
    )
    parser.add_argument(
        "--warehouse", default=None, help="root folder of all tables (overrides the conf file)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safety-metrics",
        description="Trust & Safety metrics: YAML definitions compiled into PySpark jobs "
        "that write Delta tables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="generate the synthetic Trust & Safety dataset as Delta tables",
        description="Generate a realistic synthetic Trust & Safety dataset with Spark and write "
        "it as Delta tables under WAREHOUSE/raw/ (or --output), with the planted ground truth "
        "(experiments with known effects, incidents at known dates) in _ground_truth.json. "
        "Deterministic: the same seed gives identical tables on any cluster.",
    )
    _add_common(gen)
    gen.add_argument(
        "--scale",
        type=positive_float,
        default=1.0,
        help="data size: about 1,000,000 view events and 20,000 accounts per unit "
        "(default: 1.0; e.g. 50 for ~50M views)",
    )
    gen.add_argument("--seed", type=whole, default=42, help="random seed (default: 42)")
    gen.add_argument(
        "--start-date",
        type=iso_date,
        default=dt.date(2026, 9, 1),
        help="first day of data, YYYY-MM-DD (default: 2026-09-01)",
    )
    gen.add_argument(
        "--days", type=positive_int, default=56, help="number of days, at least 28 (default: 56)"
    )
    gen.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        help="Spark partitions of the generating range (default: Spark's choice); the data "
        "is identical for any value",
    )
    gen.add_argument(
        "--output", default=None, help="folder for the raw tables (default: WAREHOUSE/raw)"
    )
    gen.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when a complete dataset with the same parameters is already there",
    )
    gen.set_defaults(handler=run_generate)
    _add_metric_commands(sub)
    _add_experiment_command(sub)
    _add_monitoring_commands(sub)
    return parser


def _add_monitoring_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics_cli import add_defs_argument
    from jobs.monitoring_cli import (
        add_alerts_arguments,
        add_detect_arguments,
        add_monitor_arguments,
    )

    commands = (
        (
            "monitor",
            "score every metric series of metric_values for anomalies, with root-cause "
            "slices, and write metric_anomalies and anomaly_root_causes",
            add_monitor_arguments,
            "run_monitor_command",
        ),
        (
            "detect",
            "score a table of your own series (series_id, ts, value, volume) and write "
            "one row per point (CSV or Delta by the output's extension)",
            add_detect_arguments,
            "run_detect_command",
        ),
        (
            "alerts",
            "print a ranked summary of a date's anomalies (and write them as JSON lines)",
            add_alerts_arguments,
            "run_alerts_command",
        ),
    )
    for name, text, add, handler in commands:
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _add_common(cmd)
        if name == "monitor":
            add_defs_argument(cmd)
        add(cmd)
        cmd.set_defaults(handler=_handler("jobs.monitoring_cli", handler))


def _add_experiment_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.experiments_cli import add_experiment_arguments
    from jobs.metrics_cli import add_defs_argument

    text = (
        "analyse A/B experiments (delta method, CUPED, distributed Poisson bootstrap, SRM) "
        "and write experiment_units, experiment_results and experiment_replicates"
    )
    cmd = sub.add_parser("experiment", help=text, description=text[0].upper() + text[1:] + ".")
    _add_common(cmd)
    add_defs_argument(cmd)
    add_experiment_arguments(cmd)
    cmd.set_defaults(handler=_handler("jobs.experiments_cli", "run_experiment_command"))


def _add_metric_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics_cli import add_defs_argument, add_selection_arguments

    val = sub.add_parser(
        "validate",
        help="check every metric definition (all problems at once, each with file and line)",
        description="Check the metric catalog: keys, types, references, cycles among derived "
        "metrics, and every SQL expression against the sources' real columns.",
    )
    _add_common(val)
    add_defs_argument(val)
    val.set_defaults(handler=_metrics_handler("run_validate"))

    plan = sub.add_parser(
        "plan",
        help="print the execution plan (passes, grouping sets, joins) without running Spark",
    )
    _add_common(plan)
    add_defs_argument(plan)
    add_selection_arguments(plan)
    plan.set_defaults(handler=_metrics_handler("run_plan"))

    for name, text in (
        ("run", "compute metrics for a date or a date range and write metric_values"),
        (
            "daily",
            "the main job: generate the default data if absent, then compute every "
            "metric for the latest complete date",
        ),
    ):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _add_common(cmd)
        add_defs_argument(cmd)
        add_selection_arguments(cmd)
        cmd.add_argument(
            "--date",
            type=iso_date,
            default=None,
            help="the date to compute, YYYY-MM-DD (default: the latest date every "
            "source has data for)",
        )
        cmd.add_argument("--start", type=iso_date, default=None, help="first date of a backfill")
        cmd.add_argument("--end", type=iso_date, default=None, help="last date of a backfill")
        cmd.add_argument("--run-id", default=None, help="run id to record (default: time + random)")
        if name == "daily":
            cmd.add_argument(
                "--with-experiments",
                action="store_true",
                help="then analyse every active experiment (see `safety-metrics experiment`)",
            )
        cmd.set_defaults(
            handler=run_daily if name == "daily" else _metrics_handler("run_metrics_command")
        )


def _handler(module: str, name: str):  # type: ignore[no-untyped-def]
    """A sub-command handler that configures logging and calls `module.name(args, config)`
    (the module is imported only when the command runs: `--help` stays fast)."""

    def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        import importlib

        config = _config(args)
        configure_logging(config.log_level)
        log.info("configuration: %s", config.describe())
        code: int = getattr(importlib.import_module(module), name)(args, config)
        return code

    return handler


def _metrics_handler(name: str):  # type: ignore[no-untyped-def]
    return _handler("jobs.metrics_cli", name)


def run_daily(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Generate the default dataset when it is absent, then run the metrics job."""
    from jobs.delta import DeltaSink
    from jobs.generate import GeneratorParams
    from jobs.generate_job import generate, raw_dir
    from jobs.metrics_cli import run_metrics_command
    from jobs.session import build_session

    config = _config(args)
    configure_logging(config.log_level)
    log.info("configuration: %s", config.describe())
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    summary = generate(
        spark, sink, GeneratorParams(), raw_dir(config.warehouse), only_if_missing=True
    )
    if not summary.skipped:
        print(
            f"Generated the default dataset in {summary.seconds:.1f}s "
            f"under {raw_dir(config.warehouse)}"
        )
    code = run_metrics_command(args, config)
    if code == 0:
        from jobs.metrics.loader import load_catalog
        from jobs.metrics_cli import default_defs_dir
        from jobs.metrics_job import METRIC_VALUES
        from jobs.monitoring_cli import latest_metric_date, monitor

        day = args.date or latest_metric_date(sink, config.warehouse, METRIC_VALUES)
        print()
        catalog = load_catalog(args.defs or default_defs_dir())
        code = monitor(spark, sink, config, catalog, day, day, args.run_id)
    if code == 0 and args.with_experiments:
        from jobs.experiments_cli import run_defined_experiments

        print()
        code = run_defined_experiments(spark, sink, config, args.defs, None, args.date, args.run_id)
    return code


def _config(args: argparse.Namespace) -> AppConfig:
    from dataclasses import replace

    config = load_config(args.env)
    if args.warehouse:
        config = replace(config, warehouse=args.warehouse)
    return config


def run_generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from jobs.generate import GeneratorParams

    try:
        params = GeneratorParams(
            seed=args.seed,
            scale=args.scale,
            start_date=args.start_date,
            days=args.days,
            partitions=args.partitions,
        )
    except ValueError as exc:
        parser.error(str(exc))
    config = _config(args)
    configure_logging(config.log_level)
    log.info("configuration: %s", config.describe())

    from jobs.delta import DeltaSink
    from jobs.generate_job import generate, raw_dir
    from jobs.session import build_session

    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    output = args.output or raw_dir(config.warehouse)
    summary = generate(spark, sink, params, output, only_if_missing=args.if_missing)
    if summary.skipped:
        print(f"Dataset already present at {output} (same parameters); nothing written.")
        return 0
    print(f"\nWrote {len(summary.rows)} Delta tables to {output} in {summary.seconds:.1f}s:")
    for name, rows in summary.rows.items():
        print(f"  raw.{name:<24} {rows:>14,} rows" if rows >= 0 else f"  raw.{name}")
    print(f"  ground truth: {output}/_ground_truth.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        code: int = args.handler(args, parser)
    except InputError as exc:
        print(f"safety-metrics: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"safety-metrics: error: {exc}", file=sys.stderr)
        return 1
    log.info("%s finished in %.1fs", args.command, time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())

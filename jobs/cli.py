"""The `safety-metrics` command: one entry point with a sub-command per job."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence

from jobs.core.arguments import iso_date, positive_float, positive_int, whole
from jobs.core.config import AppConfig, load_config
from jobs.core.failures import JobInterrupted, outcome_of, raise_on_sigterm
from jobs.core.logs import configure_logging

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
    gen.set_defaults(
        handler=_handler("jobs.generate.cli", "run_generate_command", "generate"),
        validate=_generator_params,
    )
    _add_metric_commands(sub)
    _add_experiment_command(sub)
    _add_monitoring_commands(sub)
    _add_package_command(sub)
    _add_privacy_command(sub)
    return parser


def _add_privacy_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics.cli import add_defs_argument
    from jobs.privacy.cli import add_audit_privacy_arguments

    text = (
        "audit metric_values for suppressed cells that its published rows give away (by "
        "every linear route: slices, metrics, windows, hours, versions); exit status 3 when "
        "any is recoverable"
    )
    cmd = sub.add_parser("audit-privacy", help=text, description=text[0].upper() + text[1:] + ".")
    _add_common(cmd)
    add_defs_argument(cmd)
    add_audit_privacy_arguments(cmd)
    cmd.set_defaults(handler=_handler("jobs.privacy.cli", "run_audit_privacy_command"))


def _add_package_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics.cli import add_defs_argument

    text = (
        "build what spark-submit needs: the code as a zip for --py-files, one entry-point "
        "script per job, the metric definitions and conf/, and the submit lines"
    )
    cmd = sub.add_parser("package", help=text, description=text[0].upper() + text[1:] + ".")
    cmd.add_argument("--output", default="dist", help="folder to write (default: dist)")
    add_defs_argument(cmd)

    def handler(args: argparse.Namespace) -> int:
        from jobs.submit.package import run_package_command

        return run_package_command(args)

    cmd.set_defaults(handler=handler)


def _add_monitoring_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics.cli import add_defs_argument
    from jobs.monitoring.cli import (
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
            "score a table of your own series (series_id, ts, value; see the input "
            "contract below), print a status per series and write one row per point (CSV "
            "or Delta by the output's extension)",
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
        job = "monitoring" if name == "monitor" else None
        cmd.set_defaults(handler=_handler("jobs.monitoring.cli", handler, job))


def _add_experiment_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.experiments.cli import add_experiment_arguments
    from jobs.metrics.cli import add_defs_argument

    text = (
        "analyse A/B experiments (delta method, CUPED, distributed Poisson bootstrap, SRM) "
        "and write experiment_units, experiment_results and experiment_replicates"
    )
    cmd = sub.add_parser("experiment", help=text, description=text[0].upper() + text[1:] + ".")
    _add_common(cmd)
    add_defs_argument(cmd)
    add_experiment_arguments(cmd)
    cmd.set_defaults(
        handler=_handler("jobs.experiments.cli", "run_experiment_command", "experiments")
    )


def _add_metric_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.metrics.cli import add_defs_argument, add_run_arguments, add_selection_arguments

    val = sub.add_parser(
        "validate",
        help="check every metric definition (all problems at once, each with file and line)",
        description="Check the metric catalog without its data: keys, types, references, cycles "
        "among derived metrics, and every SQL expression against the sources' declared "
        "schemas (each checked against its table where the table exists).",
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

    run = sub.add_parser(
        "run",
        help="compute metrics for a date, a date range or the stale dates (--restate) and "
        "write metric_values",
        description="Compute the catalog (or --metrics) for a date (default: the "
        "configuration's default_date), a range, or exactly the stored dates whose "
        "definitions changed (--restate), and replace those dates in metric_values.",
    )
    backfill = sub.add_parser(
        "backfill",
        help="compute metrics over --start..--end, a chunk of days at a time, each chunk "
        "one atomic commit",
        description="Backfill metric_values over a range, --chunk-days at a time (each chunk "
        "is computed and committed on its own, with progress); re-running is safe.",
    )
    daily = sub.add_parser(
        "daily",
        help="the main job: generate the default data if absent, compute every metric for "
        "the default date, then score it for anomalies",
        description="The main job on a laptop: generate the default dataset if absent, "
        "compute every metric for the date (default: the configuration's default_date), "
        "then score that date for anomalies.",
    )
    for cmd, handler, job in (
        (run, "run_metrics_command", "metrics"),
        (backfill, "run_backfill_command", "backfill"),
        (daily, "run_daily_command", "daily"),
    ):
        _add_common(cmd)
        add_defs_argument(cmd)
        add_selection_arguments(cmd)
        add_run_arguments(cmd, cmd.prog.split()[-1])
        module = "jobs.daily" if cmd is daily else "jobs.metrics.cli"
        cmd.set_defaults(handler=_handler(module, handler, job))
    daily.add_argument(
        "--with-experiments",
        action="store_true",
        help="then analyse every active experiment (see `safety-metrics experiment`)",
    )


Handler = Callable[[argparse.Namespace], int]


def _generator_params(args: argparse.Namespace) -> None:
    """Check the generator's flags together (a usage error before any work) as `args.params`."""
    from jobs.generate.params import GeneratorParams

    args.params = GeneratorParams(
        seed=args.seed,
        scale=args.scale,
        start_date=args.start_date,
        days=args.days,
        partitions=args.partitions,
    )


def _handler(module: str, name: str, job: str | None = None) -> Handler:
    """A sub-command handler: resolve the configuration, set up logging, print the
    configuration, then call `module.name(args, config)` (imported only when the command
    runs, so `--help` stays fast), recorded in `runs/job_runs` as `job` when given."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        config = _config(args)
        configure_logging(config.log_level, config.log_format)
        log.info("configuration: %s", json.dumps(config.describe()))
        command = getattr(importlib.import_module(module), name)
        if job is None:
            code: int = command(args, config)
            return code
        from jobs.core.run_log import recorded_run

        recorded = "restate" if getattr(args, "restate", False) else job
        with recorded_run(config, recorded, args.argv, getattr(args, "run_id", None)) as run:
            args.run_id = run.run_id
            run.exit_code = command(args, config)
            return run.exit_code

    return handler


def _metrics_handler(name: str) -> Handler:
    return _handler("jobs.metrics.cli", name)


def _config(args: argparse.Namespace) -> AppConfig:
    from dataclasses import replace

    config = load_config(args.env)
    if args.warehouse:
        config = replace(config, warehouse=args.warehouse)
    return config


def main(argv: Sequence[str] | None = None, *, handle_signals: bool | None = None) -> int:
    """Run one sub-command; return its exit status (see `jobs.core.failures`): 0 only when
    every step succeeded. SIGTERM is handled when called as a program (no `argv`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if handle_signals if handle_signals is not None else argv is None:
        raise_on_sigterm()
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        validate = getattr(args, "validate", None)
        if validate is not None:
            try:
                validate(args)
            except ValueError as exc:
                parser.error(f"{args.command}: {exc}")
    except SystemExit as exc:  # usage errors (status 2) and --help (0), already printed
        return int(exc.code or 0)
    args.argv = args_list
    started = time.perf_counter()
    try:
        code: int = args.handler(args)
    except (Exception, KeyboardInterrupt, JobInterrupted) as exc:
        return _failed(args.command, exc)
    log.info(
        "%s finished in %.1fs (exit status %d)", args.command, time.perf_counter() - started, code
    )
    return code


def _failed(command: str, exc: BaseException) -> int:
    outcome = outcome_of(exc)
    if outcome.traceback:
        log.error("%s failed", command, exc_info=exc)
    print(f"safety-metrics: {outcome.message}", file=sys.stderr)
    print(f"safety-metrics: {command} failed (exit status {outcome.exit_code})", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())

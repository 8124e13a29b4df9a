"""Driving experiment analyses with Spark: a user's unit-level table checked and analysed, or
one defined experiment up to its date (never past its end); `jobs.experiments.cli` parses
the arguments and prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.core.config import AppConfig
from jobs.core.run_dates import DateSpec, yesterday_utc
from jobs.experiments.definitions import ExperimentDef
from jobs.metrics.definitions import Catalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.core.delta import DeltaSink
    from jobs.experiments.job import ExperimentSummary

log = logging.getLogger(__name__)


def analyse_units_file(
    spark: SparkSession,
    sink: DeltaSink,
    config: AppConfig,
    catalog: Catalog,
    args: argparse.Namespace,
) -> ExperimentSummary:
    """The statistics on a user's unit-level table; writes the results tables."""
    from jobs.core.logs import stage
    from jobs.core.run_log import new_run_id
    from jobs.experiments.analysis import analyse
    from jobs.experiments.job import ExperimentSummary, file_spec, write_results
    from jobs.experiments.unit_file import checked_units
    from jobs.experiments.unit_file_read import read_located

    started = time.perf_counter()
    exp_id = args.experiment_id or Path(args.units.rstrip("/")).stem
    with stage(log, f"reading and checking {args.units}"):
        table = read_located(spark, sink, args.units)
        units, per_variant = checked_units(table, exp_id, args.control)
    log.info("%s: units per variant: %s", args.units, per_variant)
    spec = file_spec(
        units,
        exp_id,
        args.control,
        catalog,
        args.alpha,
        args.replicates,
        args.seed,
        args.correction,
        args.split,
        args.cuped,
    )
    with stage(log, f"{exp_id}: statistics"):
        analysis = analyse(units, spec)
    settings = {
        "alpha": args.alpha,
        "correction": args.correction,
        "replicates": args.replicates,
        "seed": args.seed,
        "units_excluded": 0,
        "cuped": args.cuped,
    }
    write_results(
        spark, sink, config.warehouse, exp_id, analysis, args.run_id or new_run_id(), settings
    )
    rows = int(units.count())
    return ExperimentSummary(exp_id, analysis, rows, time.perf_counter() - started)


def run_one(
    spark: SparkSession,
    sink: DeltaSink,
    config: AppConfig,
    catalog: Catalog,
    exp: ExperimentDef,
    date: DateSpec | None,
    run_id: str | None,
) -> ExperimentSummary:
    """One defined experiment, up to `date` (default: the configuration's default_date;
    `latest`: the experiment's end, else the latest date its sources have), never past
    the experiment's end."""
    from jobs.core.run_log import note
    from jobs.experiments.job import read_assignments, run_experiment
    from jobs.experiments.units import metric_parts
    from jobs.metrics.runner import day_to_compute
    from jobs.metrics.sources import table_reader

    read = table_reader(spark, sink, config.warehouse)
    names = {p.source for m in exp.metrics for p in metric_parts(catalog.metrics[m]).parts()}
    sources = [catalog.sources[n] for n in sorted(names)]
    wanted = date or config.default_date
    if wanted == "latest" and exp.end:
        end = exp.end
    else:
        day = yesterday_utc() if wanted == "yesterday" else wanted
        if isinstance(day, dt.date) and exp.end and day > exp.end:
            day = exp.end  # never past the experiment's end
        end = day_to_compute(day, config, read, sources)
    log.info("%s: analysing up to %s", exp.id, end)
    note(dates=[end])
    assignments = read_assignments(spark, sink, config.warehouse, exp.assignments)
    return run_experiment(
        spark, sink, catalog, exp, read, assignments, config.warehouse, end, run_id=run_id
    )

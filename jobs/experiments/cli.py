"""`safety-metrics experiment`: analyse defined experiments, or a user's unit-level table."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.core.config import AppConfig
from jobs.core.failures import UsageError
from jobs.core.run_dates import DateSpec, run_date
from jobs.experiments.definitions import ExperimentDef
from jobs.experiments.stats import CUPED_MODES
from jobs.metrics.definitions import Catalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.core.delta import DeltaSink

log = logging.getLogger("safety-metrics")


def add_experiment_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--id",
        action="append",
        default=None,
        metavar="EXPERIMENT",
        help="an experiment id from the definitions (repeatable; default: every active one)",
    )
    cmd.add_argument(
        "--date",
        default=None,
        type=run_date,
        metavar="DATE",
        help="last day of the analysis: YYYY-MM-DD, 'yesterday' (UTC) or 'latest' (default: "
        "the configuration's default_date; never past the experiment's end)",
    )
    cmd.add_argument("--run-id", default=None, help="run id to record (default: time + random)")
    own = cmd.add_argument_group("a unit-level table you already have (instead of the definitions)")
    own.add_argument(
        "--units",
        default=None,
        metavar="PATH",
        help="Delta folder, Parquet or CSV with columns unit, variant, metric, numerator and "
        "optionally denominator, covariate, covariate_denominator; every cell filled in "
        "(an empty cell is an error, not 0), denominators positive",
    )
    own.add_argument("--control", default=None, help="the control variant's name (with --units)")
    own.add_argument("--experiment-id", default=None, help="id to record (default: file name)")
    own.add_argument(
        "--split",
        type=split_shares,
        default=None,
        metavar="V=SHARE,...",
        help="intended split for the sample-ratio test, e.g. control=0.9,treatment=0.1 "
        "(default: even)",
    )
    own.add_argument("--alpha", type=float, default=0.05)
    own.add_argument("--replicates", type=int, default=500)
    own.add_argument("--seed", type=int, default=0)
    own.add_argument("--correction", choices=("bh", "bonferroni", "none"), default="bh")
    own.add_argument(
        "--cuped",
        choices=CUPED_MODES,
        default="per_comparison",
        help="CUPED's slope: estimated on the two arms of each comparison (default, as "
        "gbstats), or pooled over every arm in the file",
    )


def split_shares(text: str) -> dict[str, float]:
    """`control=0.9,treatment=0.1` -> {control: 0.9, treatment: 0.1} (shares sum to 1)."""
    shares: dict[str, float] = {}
    try:
        for item in text.split(","):
            name, share = item.split("=")
            shares[name.strip()] = float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected V=SHARE,..., got {text!r}") from None
    if abs(sum(shares.values()) - 1.0) > 1e-6 or min(shares.values()) <= 0:
        raise argparse.ArgumentTypeError(f"shares must be positive and sum to 1, got {text!r}")
    return shares


def run_experiment_command(args: argparse.Namespace, config: AppConfig) -> int:
    """`experiment --units PATH`, or the defined experiments (`--id`, default all active)."""
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.metrics.loader import default_defs_dir, load_catalog

    if args.units:
        if not args.control:
            raise UsageError("--units needs --control NAME")
        from jobs.experiments.runner import analyse_units_file

        catalog = load_catalog(args.defs or default_defs_dir())
        spark = build_session(config)
        sink = DeltaSink.for_session(spark, config.delta_backend)
        print(analyse_units_file(spark, sink, config, catalog, args).render())
        print(f"results: {os.path.join(config.warehouse, 'experiments/experiment_results')}")
        return 0
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    return run_defined_experiments(spark, sink, config, args.defs, args.id, args.date, args.run_id)


def run_defined_experiments(
    spark: SparkSession,
    sink: DeltaSink,
    config: AppConfig,
    defs: Path | None,
    ids: list[str] | None,
    date: DateSpec | None,
    run_id: str | None,
) -> int:
    """The experiments `ids` (default: every active one) of the definitions in `defs`, each
    analysed up to `date` (default: the configuration's default_date), never past its end."""
    from jobs.core.run_log import note
    from jobs.experiments.job import active_experiments
    from jobs.experiments.loader import load_experiments
    from jobs.experiments.runner import run_one
    from jobs.metrics.loader import default_defs_dir, load_catalog
    from jobs.metrics.runner import load_checked_catalog

    experiments = load_experiments(
        defs or default_defs_dir(), load_catalog(defs or default_defs_dir())
    )
    try:
        chosen = active_experiments(experiments, ids)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    if not chosen:
        print("no active experiments defined")
        return 0
    catalog = load_checked_catalog(spark, sink, config, defs)
    for exp in chosen:
        summary = run_one(spark, sink, config, catalog, exp, date, run_id)
        print(summary.render())
    note(definitions_version=_versions(catalog, chosen))
    return 0


def _versions(catalog: Catalog, chosen: list[ExperimentDef]) -> str:
    """One hash of the analysed experiments' definition versions."""
    import hashlib

    from jobs.experiments.job import definition_version

    text = ",".join(f"{e.id}={definition_version(catalog, e)}" for e in chosen)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

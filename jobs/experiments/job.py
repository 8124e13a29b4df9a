"""The experiment job: unit table -> statistics -> three Delta tables per experiment.

    assignments + catalog metrics -> experiment_units (one row per metric and unit)
    -> moments, bootstrap replicate sums, quantile replicates (Spark, small results)
    -> experiment_results (+ experiment_replicates for audit)

Each table is partitioned by `experiment_id` and each run replaces that experiment's
partition in one atomic commit, so re-running is always safe. The same statistics run on a
unit-level table a user already has (`experiments.unit_file`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.core.logs import stage
from jobs.core.run_log import new_run_id
from jobs.experiments.analysis import Analysis, AnalysisSpec, MetricSpec, analyse
from jobs.experiments.decisions import Correction
from jobs.experiments.definitions import AssignmentSource, ExperimentDef
from jobs.experiments.stats import CupedMode
from jobs.experiments.units import (
    UNIT_COLUMNS,
    assignment_frame,
    conflicting_units,
    quantile_events,
    unit_frame,
)
from jobs.metrics.definitions import Catalog
from jobs.metrics.sources import TableReader
from jobs.metrics.types import traits

log = logging.getLogger(__name__)

EXPERIMENT_UNITS = "experiments/experiment_units"
EXPERIMENT_RESULTS = "experiments/experiment_results"
EXPERIMENT_REPLICATES = "experiments/experiment_replicates"
PARTITION_BY = ("experiment_id",)

RESULT_SCHEMA = (
    "experiment_id string, metric string, control string, treatment string, method string, "
    "primary boolean, units_control long, units_treatment long, control_value double, "
    "treatment_value double, lift double, lift_lower double, lift_upper double, "
    "relative_lift double, relative_lower double, relative_upper double, p_value double, "
    "p_value_adjusted double, significant boolean, verdict string, good_direction string, "
    "alpha double, correction string, replicates int, seed long, srm_p_value double, "
    "srm_mismatch boolean, units_excluded long, window_start date, window_end date, "
    "definition_version string, run_id string, computed_at timestamp, df double, "
    "lift_lower_adjusted double, lift_upper_adjusted double, relative_lower_adjusted double, "
    "relative_upper_adjusted double, adjusted_level double, cuped string"
)
REPLICATE_SCHEMA = (
    "experiment_id string, metric string, variant string, replicate int, value double, "
    "run_id string"
)


@dataclass(frozen=True)
class ExperimentSummary:
    experiment_id: str
    analysis: Analysis
    unit_rows: int
    seconds: float

    def render(self) -> str:
        srm = self.analysis.srm
        units = ", ".join(f"{v}={n:,}" for v, n in sorted(self.analysis.units.items()))
        flag = "  ** SAMPLE RATIO MISMATCH: do not trust these results **" if srm.mismatch else ""
        lines = [
            f"{self.experiment_id}: {units} units; SRM p={srm.p_value:.3g}{flag}",
        ]
        for r in self.analysis.results:
            if not r["primary"]:
                continue
            lines.append(
                f"  {r['metric']:<28} {r['treatment']:<10} {r['method']:<9} "
                f"{_relative(r):<37} p_adj={_p(r['p_value_adjusted'])}  {r['verdict']}"
            )
        lines.append(f"  ({self.unit_rows:,} unit rows, {self.seconds:.1f} s)")
        return "\n".join(lines)


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _relative(r: dict[str, Any]) -> str:
    """The relative lift with its interval at the adjusted level (the level the verdict
    uses, so the interval excludes 0 exactly when the verdict is significant)."""
    rel, level = r["relative_lift"], r["adjusted_level"]
    lo, hi = r["relative_lower_adjusted"], r["relative_upper_adjusted"]
    if rel is None:
        return "n/a"
    interval = "unbounded" if lo is None or hi is None else f"[{lo:+.2%}, {hi:+.2%}]"
    return f"{rel:+.2%} {interval} at {_level(level)}"


def _level(level: float) -> str:
    """0.95 -> '95%', 0.9875 -> '98.75%'."""
    return f"{100 * level:.4g}%"


def spec_for(catalog: Catalog, exp: ExperimentDef) -> AnalysisSpec:
    metrics = []
    for name in exp.metrics:
        m = catalog.metrics[name]
        metrics.append(
            MetricSpec(
                name,
                m.good_direction,
                m.per,
                m.quantile if traits(m.type).finish == "quantile" else None,
            )
        )
    return AnalysisSpec(
        experiment_id=exp.id,
        control=exp.control,
        metrics=tuple(metrics),
        expected_shares=dict(exp.variants),
        alpha=exp.alpha,
        replicates=exp.replicates,
        seed=exp.seed,
        correction=exp.correction,
        srm_threshold=exp.srm_threshold,
        cuped=exp.cuped,
    )


def definition_version(catalog: Catalog, exp: ExperimentDef) -> str:
    """The experiment's version plus its metrics' versions, as one short hash."""
    import hashlib

    text = exp.version() + "".join(catalog.metric_version(m) for m in exp.metrics)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_experiment(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    exp: ExperimentDef,
    read: TableReader,
    assignments: DataFrame,
    warehouse: str,
    end: dt.date,
    *,
    run_id: str | None = None,
) -> ExperimentSummary:
    """Compute one experiment up to `end` and replace its partition of the three tables."""
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    end = min(end, exp.end) if exp.end else end
    log.info(
        "experiment %s: %s..%s, %d metrics, run %s",
        exp.id,
        exp.start,
        end,
        len(exp.metrics),
        run_id,
    )
    with stage(log, f"{exp.id}: checking assignments"):
        excluded = conflicting_units(assignment_frame(assignments, exp, end))
        if excluded:
            log.warning(
                "%s: %d units were logged in more than one variant; excluded", exp.id, excluded
            )
    with stage(log, f"{exp.id}: unit-level aggregates"):
        # Materialised on the executors once; every table is written only after the
        # statistics succeed, so a failure leaves all three at their previous versions.
        units = unit_frame(catalog, exp, read, assignments, end).localCheckpoint()
        unit_rows = int(units.count())
    with stage(log, f"{exp.id}: statistics over {unit_rows:,} unit rows"):
        events = quantile_events(catalog, exp, read, assignments, end)
        analysis = analyse(units, spec_for(catalog, exp), events)
    units_table = os.path.join(warehouse, EXPERIMENT_UNITS)
    with stage(log, f"{exp.id}: writing {unit_rows:,} unit rows to {units_table}"):
        stamped = units.select(*UNIT_COLUMNS, F.lit(run_id).alias("run_id"))
        replace_experiment(sink, stamped, units_table, exp.id)
    extra = {
        "alpha": exp.alpha,
        "correction": exp.correction,
        "replicates": exp.replicates,
        "seed": exp.seed,
        "units_excluded": excluded,
        "window_start": exp.start,
        "window_end": end,
        "definition_version": definition_version(catalog, exp),
        "cuped": exp.cuped,
    }
    write_results(spark, sink, warehouse, exp.id, analysis, run_id, extra)
    return ExperimentSummary(exp.id, analysis, unit_rows, time.perf_counter() - started)


def replace_experiment(sink: DeltaSink, df: DataFrame, table: str, experiment_id: str) -> None:
    """Replace one experiment's partition of `table` with `df`, atomically."""
    sink.write(
        df,
        table,
        mode="replace",
        partition_by=PARTITION_BY,
        replace={"experiment_id": [experiment_id]},
    )


def write_results(
    spark: SparkSession,
    sink: DeltaSink,
    warehouse: str,
    experiment_id: str,
    analysis: Analysis,
    run_id: str,
    extra: dict[str, Any],
) -> None:
    """Replace the experiment's partition of `experiment_results` and `..._replicates`."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    common = {
        "experiment_id": experiment_id,
        "srm_p_value": analysis.srm.p_value,
        "srm_mismatch": analysis.srm.mismatch,
        "run_id": run_id,
        "computed_at": now,
        **extra,
    }
    fields = [f.split()[0] for f in RESULT_SCHEMA.split(", ")]
    rows = [tuple({**common, **r}.get(name) for name in fields) for r in analysis.results]
    results = spark.createDataFrame(rows, RESULT_SCHEMA)
    table = os.path.join(warehouse, EXPERIMENT_RESULTS)
    with stage(log, f"{experiment_id}: writing {len(rows)} result rows to {table}"):
        sink.add_missing_columns(table, results)  # tables written before adjusted intervals
        replace_experiment(sink, results, table, experiment_id)
    reps = spark.createDataFrame(
        [
            (experiment_id, r["metric"], r["variant"], r["replicate"], r["value"], run_id)
            for r in analysis.replicates
        ],
        REPLICATE_SCHEMA,
    )
    table = os.path.join(warehouse, EXPERIMENT_REPLICATES)
    with stage(log, f"{experiment_id}: writing {len(analysis.replicates)} replicate rows"):
        replace_experiment(sink, reps, table, experiment_id)


# --- a user's own table (a unit-level one is read and checked in `experiments.unit_file`) ----


def read_table(spark: SparkSession, sink: DeltaSink, path: str) -> DataFrame:
    """A Delta folder, a Parquet file or folder, or a CSV file (with a header)."""
    if os.path.isdir(os.path.join(path, "_delta_log")):
        return sink.read(path)
    if path.endswith(".csv"):
        return spark.read.option("header", True).option("inferSchema", True).csv(path)
    if path.endswith(".parquet") or os.path.isdir(path):
        return spark.read.parquet(path)
    raise FileNotFoundError(f"{path}: not a Delta table, a .parquet file or folder, or a .csv file")


def file_spec(
    units: DataFrame,
    experiment_id: str,
    control: str,
    catalog: Catalog | None,
    alpha: float,
    replicates: int,
    seed: int,
    correction: Correction,
    shares: dict[str, float] | None = None,
    cuped: CupedMode = "per_comparison",
) -> AnalysisSpec:
    """An analysis spec for a user's table: its metrics, with the catalog's good direction
    where a metric of the same name exists."""
    names = sorted(str(r[0]) for r in units.select("metric").distinct().collect())
    metrics = []
    for name in names:
        m = catalog.metrics.get(name) if catalog else None
        metrics.append(MetricSpec(name, m.good_direction if m else "none"))
    return AnalysisSpec(
        experiment_id,
        control,
        tuple(metrics),
        shares,
        alpha,
        replicates,
        seed,
        correction,
        cuped=cuped,
    )


def read_assignments(
    spark: SparkSession, sink: DeltaSink, warehouse: str, source: AssignmentSource
) -> DataFrame:
    """The assignment log: a catalog table, or a Delta or Parquet path (relative to the
    warehouse unless absolute)."""
    if source.format == "catalog":
        return spark.table(source.location)
    path = (
        source.location
        if os.path.isabs(source.location)
        else os.path.join(warehouse, source.location)
    )
    return spark.read.parquet(path) if source.format == "parquet" else sink.read(path)


def active_experiments(
    experiments: dict[str, ExperimentDef], ids: Sequence[str] | None
) -> list[ExperimentDef]:
    if ids:
        missing = [i for i in ids if i not in experiments]
        if missing:
            from jobs.core.located_yaml import did_you_mean

            hint = did_you_mean(missing[0], experiments)
            raise KeyError(f"unknown experiment '{missing[0]}'" + (f"; {hint}" if hint else ""))
        return [experiments[i] for i in ids]
    return [e for e in experiments.values() if e.active]

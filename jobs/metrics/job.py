"""The metrics job: compute the catalog for a date range and write `metric_values`.

    load + validate -> plan -> one pass per (source, grain) -> metric rows -> gates
    -> suppression -> one atomic replace of the (date, metric) partitions it computed.

Re-running a date replaces exactly what it computed; a backfill over a range is one commit,
so it never double counts. A failing gate (in `fail` mode) stops before anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.core.logs import stage
from jobs.core.run_log import new_run_id
from jobs.metrics.assemble import derived_frames, long_frame, metric_frames
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.gates import (
    exact_totals,
    no_null_keys,
    parent_consistency,
    proportion_bounds,
    source_volume,
    unique_keys,
)
from jobs.metrics.pass_runs import compute_checked_passes
from jobs.metrics.planner import Plan
from jobs.metrics.source_checks import (
    CheckResult,
    ContractError,
    record_checks,
    summary_lines,
)
from jobs.metrics.sources import (
    table_reader,
)
from jobs.metrics.suppression import suppress
from jobs.privacy.gate import privacy_gate, published_rows

log = logging.getLogger(__name__)

METRIC_VALUES = "metrics/metric_values"

PARTITION_BY = ("date", "metric")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    table: str
    dates: tuple[dt.date, ...]
    metrics: tuple[str, ...]
    rows: int
    suppressed: int
    gates: tuple[GateResult, ...]
    seconds: float
    version: int | None
    headline: tuple[tuple[str, str, float | None], ...] = field(default=())
    checks: tuple[CheckResult, ...] = field(default=())

    def render(self) -> str:
        first, last = self.dates[0], self.dates[-1]
        span = str(first) if first == last else f"{first}..{last}"
        lines = [
            f"metric_values: {self.rows:,} rows for {len(self.metrics)} metrics on {span} "
            f"({self.suppressed:,} suppressed cells), table version {self.version}, "
            f"run {self.run_id}, {self.seconds:.1f} s",
            f"  table: {self.table}",
            f"  gates: {sum(g.passed for g in self.gates)}/{len(self.gates)} passed",
            *summary_lines(self.checks),
        ]
        if self.headline:
            lines.append(f"  overall values on {last} (1d):")
            width = max(len(m) for m, _, _ in self.headline)
            for metric, unit, value in self.headline:
                shown = "suppressed" if value is None else f"{value:,.6g}"
                lines.append(
                    f"    {metric:<{width}}  {shown} {unit if value is not None else ''}".rstrip()
                )
        return "\n".join(lines)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def compute_metric_rows(catalog: Catalog, plan: Plan, results: dict[str, DataFrame]) -> DataFrame:
    """Every metric's rows (before suppression), in one frame."""
    frames = derived_frames(catalog, plan, metric_frames(catalog, plan, results))
    return long_frame(catalog, frames)


def run_gates(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    plan: Plan,
    warehouse: str,
    rows: DataFrame,
    dates: list[dt.date],
) -> list[GateResult]:
    results = [
        unique_keys(rows),
        no_null_keys(rows),
        proportion_bounds(catalog, plan, rows),
        parent_consistency(catalog, plan, rows),
    ]
    read = table_reader(spark, sink, warehouse)
    settings = catalog.settings
    for name in sorted({p.source for p in plan.passes}):
        source = catalog.sources[name]
        results.extend(
            source_volume(
                source,
                read(source),
                dates,
                settings.volume_history_days,
                settings.volume_min_ratio,
                settings.volume_max_ratio,
            )
        )
    return results


def publishable(catalog: Catalog, rows: DataFrame, run_id: str) -> DataFrame:
    """The table's columns, in order, with versions, run id and time."""
    versions = F.lit(None).cast("string")
    for name in catalog.metrics:
        versions = F.when(F.col("metric") == name, F.lit(catalog.metric_version(name))).otherwise(
            versions
        )
    grain = F.when(F.col("window") == "1h", F.lit("hour")).otherwise(F.lit("day"))
    return rows.select(
        F.to_date(F.col("period")).alias("date"),
        F.col("period").cast("timestamp").alias("period_start"),
        grain.alias("grain"),
        "window",
        "metric",
        "slice_set",
        "slice_id",
        *[F.col(d).cast("string").alias(d) for d in catalog.dimensions],
        F.col("value").cast("double").alias("value"),
        F.col("numerator").cast("double").alias("numerator"),
        F.col("denominator").cast("double").alias("denominator"),
        F.col("units").cast("long").alias("units"),
        F.col("ci_lower").cast("double").alias("ci_lower"),
        F.col("ci_upper").cast("double").alias("ci_upper"),
        "ci_method",
        "suppressed",
        versions.alias("definition_version"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("computed_at"),
    )


def run_metrics(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    plan: Plan,
    warehouse: str,
    start: dt.date,
    end: dt.date,
    *,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> RunSummary:
    """Compute `plan` for every date in [start, end] and replace those dates' rows.

    The sources' contract checks go to `metrics/source_checks` after the commit, or when a
    contract or a publish gate stops the run (then with `published` false)."""
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    dates = date_range(start, end)
    log.info("run %s: %d metrics, %s..%s", run_id, len(plan.metrics), start, end)
    try:
        results, checks = compute_checked_passes(
            spark, sink, catalog, plan, warehouse, start, end, now=now
        )
    except ContractError as exc:
        _record_stopped(warehouse, exc.checks, run_id, dates)
        raise
    # Not a gate `warn` can override: an interval without all its squares is wrong.
    overflowed = [g for g in exact_totals(catalog, plan, results) if not g.passed]
    if overflowed:
        _record_stopped(warehouse, checks, run_id, dates)
        raise PublishGateError(overflowed)
    with stage(log, "assembling metric rows"):
        rows = compute_metric_rows(catalog, plan, results).localCheckpoint()
        log.info("%d metric rows before suppression", rows.count())
    with stage(log, "publish gates"):
        gates = run_gates(spark, sink, catalog, plan, warehouse, rows, dates)
        for gate in gates:
            (log.info if gate.passed else log.warning)("%s", gate)
    if not all(g.passed for g in gates):
        if catalog.settings.gates_on_failure == "fail":
            _record_stopped(warehouse, checks, run_id, dates)
            raise PublishGateError(gates)
        log.warning("publish gates failed; writing anyway (settings.gates.on_failure: warn)")
    table = os.path.join(warehouse, METRIC_VALUES)
    with stage(log, "suppression"):
        # What the table already shows (around these dates, and in its history): the
        # rows this run replaces stay readable by time travel, so they count as shown.
        published = published_rows(
            spark, sink, catalog, table, start, end, replaced=(dates, plan.metrics)
        )
        hidden = suppress(catalog, plan, rows, results, published)
        final = publishable(catalog, hidden, run_id).localCheckpoint()
        total = final.count()
        suppressed = final.where("suppressed").count()
    with stage(log, "privacy gate"):
        privacy, _ = privacy_gate(catalog, final, published)
        (log.info if privacy.passed else log.warning)("%s", privacy)
    gates = [*gates, privacy]
    if not privacy.passed:
        _record_stopped(warehouse, checks, run_id, dates)
        raise PublishGateError(gates)
    with stage(log, f"writing {total:,} rows to {table}"):
        result = sink.write(
            final,
            table,
            mode="replace",
            partition_by=PARTITION_BY,
            replace={"date": dates, "metric": list(plan.metrics)},
        )
    record_checks(warehouse, checks, run_id, dates, published=True)
    headline = _headline(catalog, final, end)
    return RunSummary(
        run_id,
        table,
        tuple(dates),
        plan.metrics,
        total,
        suppressed,
        tuple(gates),
        time.perf_counter() - started,
        result.version,
        headline,
        tuple(checks),
    )


def _record_stopped(
    warehouse: str, checks: Sequence[CheckResult], run_id: str, dates: list[dt.date]
) -> None:
    """Record the checks of a run that wrote nothing; a failure to record is logged, so
    that the run's own error is what the caller sees."""
    try:
        record_checks(warehouse, checks, run_id, dates, published=False)
    except Exception as exc:  # the run's own error matters more
        log.error("could not record the source checks of run %s: %s", run_id, exc)


def _headline(
    catalog: Catalog, final: DataFrame, day: dt.date
) -> tuple[tuple[str, str, float | None], ...]:
    rows = (
        final.where(
            (F.col("date") == F.lit(day)) & (F.col("slice_id") == "all") & (F.col("window") == "1d")
        )
        .select("metric", "value")
        .collect()
    )
    values = {r["metric"]: r["value"] for r in rows}
    return tuple((m, catalog.metrics[m].unit, values[m]) for m in catalog.metrics if m in values)

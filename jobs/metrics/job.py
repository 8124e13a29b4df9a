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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from jobs.core.delta import DeltaSink
from jobs.core.logs import stage
from jobs.core.run_log import new_run_id
from jobs.metrics.assemble import derived_frames, long_frame, metric_frames
from jobs.metrics.contracts import PassContract
from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.gates import (
    exact_totals,
    no_null_keys,
    parent_consistency,
    proportion_bounds,
    source_volume,
    unique_keys,
)
from jobs.metrics.passes import pass_frame
from jobs.metrics.planner import PassPlan, Plan
from jobs.metrics.source_checks import (
    CheckResult,
    ContractError,
    log_results,
    record_checks,
    summary_lines,
)
from jobs.metrics.sources import (
    estimated_rows,
    lookups_to_narrow,
    prepare,
    source_rows,
    table_reader,
)
from jobs.metrics.suppression import suppress
from jobs.privacy.gate import privacy_gate, published_rows

log = logging.getLogger(__name__)
METRIC_VALUES = "metrics/metric_values"
PARTITION_BY = ("date", "metric")
#: Passes run side by side (each is still one Spark job).
PARALLEL_PASSES = 2


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


def shuffle_partitions(spark: SparkSession) -> int | None:
    """The session's `spark.sql.shuffle.partitions`, or None where the engine has none."""
    try:
        value = spark.conf.get("spark.sql.shuffle.partitions")
    except Exception:  # an engine without the setting: let it choose
        return None
    return int(value) if value and value.isdigit() else None


#: Unit-level rows (source rows times their expansion) per partition of the shuffle by unit:
#: small enough that each partition's per-unit hash table stays in memory.
UNIT_ROWS_PER_PARTITION = 2_000_000


def unit_partitions(rows: int | None, expansion: int, fallback: int | None) -> int | None:
    """Partitions of a pass's shuffle by unit: from the source's row count where known (one
    for a small source, where per-task overhead would dominate), else `fallback`."""
    if rows is None:
        return fallback
    return max(1, -(-rows * expansion // UNIT_ROWS_PER_PARTITION))


#: Unit-level entries (rows times expansion) from which a pass carries its dimensions as
#: hashes: below, the dictionary's extra aggregation costs more than narrower keys save.
HASHED_MIN_ENTRIES = 20_000_000


def hashed_dimensions(p: PassPlan, rows: int | None, expansion: int) -> bool:
    """Whether a pass carries its dimensions as hashes (see `passes.pass_frame`): always
    with unit attributes (grouped by their hashes), else where the pass is large or its
    size unknown."""
    return bool(p.attributes) or rows is None or rows * expansion >= HASHED_MIN_ENTRIES


def largest_first(work: dict[str, int | None]) -> list[str]:
    """Pass names by estimated unit-level rows, largest first (unknown sizes first of all,
    then names for ties): the big pass starts at once and the small ones, mostly driver
    work and few tasks, run beside it instead of delaying it."""
    return sorted(work, key=lambda name: (work[name] is not None, -(work[name] or 0), name))


def compute_passes(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    plan: Plan,
    warehouse: str,
    start: dt.date,
    end: dt.date,
    concurrent: int = PARALLEL_PASSES,
    *,
    now: dt.datetime | None = None,
    contracts: bool = True,
) -> dict[str, DataFrame]:
    """`compute_checked_passes` without the checks' results (which are logged)."""
    results, _ = compute_checked_passes(
        spark, sink, catalog, plan, warehouse, start, end, concurrent, now=now, contracts=contracts
    )
    return results


def compute_checked_passes(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    plan: Plan,
    warehouse: str,
    start: dt.date,
    end: dt.date,
    concurrent: int = PARALLEL_PASSES,
    *,
    now: dt.datetime | None = None,
    contracts: bool = True,
) -> tuple[dict[str, DataFrame], list[CheckResult]]:
    """Run every pass (one Spark action each), `concurrent` at a time, largest first; pass
    name -> its checkpointed wide result, and the results of the sources' contract checks
    (each pass checks its source's rows on the same action; `now`, default the current
    time, is what a time in the future is judged against). Passes are independent: running
    them side by side fills the cores a small pass leaves idle (planning, code generation,
    a few tasks). A check with policy `fail` that finds violations raises `ContractError`
    once every pass has run.

    `contracts=False` skips the checks (the benchmark's baseline): every row is read as
    it is, as before contracts existed."""
    read = table_reader(spark, sink, warehouse)
    moment = now or dt.datetime.now(dt.UTC)
    partitions = shuffle_partitions(spark)
    output_days = (end - start).days + 1

    def window(p: PassPlan) -> tuple[str, str]:
        first = start - dt.timedelta(days=p.lookback_days)
        return first.isoformat(), end.isoformat()

    rows_of = {
        p.name: estimated_rows(catalog.sources[p.source], warehouse, *window(p))
        for p in plan.passes
    }
    work: dict[str, int | None] = {}
    for p in plan.passes:
        rows = rows_of[p.name]
        work[p.name] = None if rows is None else rows * p.unit_expansion(output_days)

    def whole_table_rows(source: SourceDef) -> int | None:
        return estimated_rows(source, warehouse, "0001-01-01", "9999-12-31")

    checks = {
        p.name: PassContract(catalog.sources[p.source], window(p), moment, p.name)
        for p in plan.passes
        if contracts
    }

    def run(i: int, p: PassPlan) -> DataFrame:
        source = catalog.sources[p.source]
        contract = checks.get(p.name)
        with stage(
            log,
            f"[pass {i}/{len(plan.passes)}] {p.name}: {len(p.metrics)} metrics, "
            f"{len(p.slice_sets)} grouping sets, windows {' '.join(p.windows)}",
        ):
            rows = rows_of[p.name]
            narrowed = lookups_to_narrow(source, catalog.sources, rows, whole_table_rows)
            screen = contract.kept if contract else None
            prepared = prepare(source, catalog.sources, read, window(p), narrowed, screen)
            # The unit branch reads each row once: the contract counts the rows there.
            counted = (
                prepare(source, catalog.sources, read, window(p), narrowed, contract.counted)
                if contract
                else None
            )
            n = unit_partitions(rows, p.unit_expansion(output_days), partitions)
            known = "unknown" if rows is None else f"{rows:,}"
            log.info("%s: %s source rows, %s partitions by unit", p.name, known, n)
            if narrowed:
                log.info(
                    "%s: lookups %s cut to the source's keys", p.name, ", ".join(sorted(narrowed))
                )
            # One Spark action per pass; the checkpoint keeps the small result and drops the
            # lineage, so later steps neither rescan the source nor re-plan the pass.
            hashed = hashed_dimensions(p, rows, p.unit_expansion(output_days))
            frame = pass_frame(
                prepared,
                p,
                source.time_column,
                source.unit,
                start,
                end,
                n,
                hashed=hashed,
                unit_rows=counted,
            )
            if contract is not None:
                # The duplicate keys' totals ride on the pass's action (see `contracts`).
                rows_read = source_rows(
                    source, catalog.sources, read, window(p), narrowed, checked=True
                )
                frame = contract.with_duplicates(frame, rows_read, rows)
            if not hashed:
                return frame.localCheckpoint(eager=True)
            # The check of dimensions and unit attributes rides on the same action.
            seen = Observation(f"dimensions of {p.name}")
            result = frame.observe(seen, F.sum("__conflicts").alias("conflicts"))
            result = result.localCheckpoint(eager=True)
            conflicts = seen.get.get("conflicts") or 0
            if not conflicts:
                return result.drop("__conflicts")
            if p.attributes:
                log.warning(
                    "%s: unit attributes %s are not constant per %s and period in %d cells "
                    "(or two values share a hash); computing the pass again without them. "
                    "Remove them from the source's unit_attributes to save this second pass.",
                    p.name,
                    ", ".join(p.attributes),
                    source.unit,
                    conflicts,
                )
            else:
                log.warning(
                    "%s: two values of a dimension share a 64-bit hash in %d cells; "
                    "computing the pass again on the values themselves.",
                    p.name,
                    conflicts,
                )
            plain = replace(p, attributes=())
            frame = pass_frame(
                prepared, plain, source.time_column, source.unit, start, end, n, hashed=False
            )
            return frame.localCheckpoint(eager=True)

    # Pool threads inherit the caller's job group and tags (what the Spark UI groups by).
    wrap: object = inheritable_thread_target(spark)  # the session itself where pinning is off
    target = wrap(run) if callable(wrap) else run
    with ThreadPoolExecutor(max_workers=max(1, concurrent)) as pool:
        by_name = {p.name: p for p in plan.passes}
        order = largest_first(work)
        futures = {
            name: pool.submit(target, i, by_name[name]) for i, name in enumerate(order, start=1)
        }
        results = {p.name: futures[p.name].result() for p in plan.passes}
    found = [r for p in plan.passes if p.name in checks for r in checks[p.name].results()]
    log_results(found)
    if any(r.stops_run for r in found):
        raise ContractError(found)
    return results, found


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

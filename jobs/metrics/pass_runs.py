"""Running a plan's passes: each pass's shuffle and unit partitioning, the order and the
parallelism of their Spark actions, hashed dimensions, and a pass run again without unit
attributes where a unit's attribute was not constant.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from jobs.core.delta import DeltaSink
from jobs.core.logs import stage
from jobs.metrics.contracts import PassContract
from jobs.metrics.definitions import Catalog, SourceDef
from jobs.metrics.passes import pass_frame
from jobs.metrics.planner import PassPlan, Plan
from jobs.metrics.previous_day_caps import cap_tables, caps_of, with_caps
from jobs.metrics.source_checks import (
    CheckResult,
    ContractError,
    log_results,
)
from jobs.metrics.sources import (
    Screen,
    estimated_rows,
    lookups_to_narrow,
    prepare,
    source_rows,
    table_reader,
)

log = logging.getLogger(__name__)

#: Passes run side by side (each is still one Spark job).
PARALLEL_PASSES = 2


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

            def screen_for(dates: tuple[str, str]) -> Screen:
                return PassContract(source, dates, moment, p.name).kept

            caps = cap_tables(
                caps_of(catalog, p), catalog, read, window(p), screen_for if contract else None
            )
            prepared = with_caps(
                prepare(source, catalog.sources, read, window(p), narrowed, screen),
                caps,
                source.time_column,
            )
            # The unit branch reads each row once: the contract counts the rows there.
            counted = (
                with_caps(
                    prepare(source, catalog.sources, read, window(p), narrowed, contract.counted),
                    caps,
                    source.time_column,
                )
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

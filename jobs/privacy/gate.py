"""The privacy publish gate: audit what a run is about to publish together with what the
table already publishes (and what its history still holds), and refuse to write a
recoverable cell, saying which and by which route."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import GateResult
from jobs.metrics.planner import window_days
from jobs.privacy.audit import AuditReport, audit
from jobs.privacy.publication import FULL, Row
from jobs.privacy.reading import collect_rows, has_table, history_frame, metadata_frame

log = logging.getLogger(__name__)
GATE_NAME = "no suppressed cell is recoverable"


def reach_days(catalog: Catalog) -> int:
    """Days on either side of the judged dates whose rows the audit also reads: cells
    further away share no window with them (the longest window, less one day)."""
    longest = max((window_days(w) for m in catalog.metrics.values() for w in m.windows), default=1)
    return longest - 1


def published_rows(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    table: str,
    start: dt.date | None,
    end: dt.date | None,
    *,
    history: bool = True,
    replaced: tuple[Iterable[dt.date], Iterable[str]] | None = None,
) -> list[Row]:
    """The table's rows around [start, end] (current version; and, with `history`, those
    only older versions hold). Rows of `replaced` (dates, metrics) partitions, which a run
    is about to overwrite, count as history: they stay readable by time travel."""
    if not has_table(table):
        return []
    reach = dt.timedelta(days=reach_days(catalog))
    first = None if start is None else start - reach
    last = None if end is None else end + reach
    dims = catalog.dimensions
    current = metadata_frame(sink.read(table), dims, first, last)
    if replaced is not None:
        dates, metrics = (list(x) for x in replaced)
        gone = F.col("date").isin(dates) & F.col("metric").isin(metrics)
        old = current.where(gone)
        current = current.where(~gone)
        rows = collect_rows(current) + collect_rows(old, history=True)
    else:
        rows = collect_rows(current)
    if history:
        older = history_frame(spark, table)
        if older is not None:
            rows += collect_rows(metadata_frame(older, dims, first, last), history=True)
    return rows


def run_rows(frame: DataFrame, catalog: Catalog) -> list[Row]:
    """The rows a run is about to publish (its `publishable` frame)."""
    return collect_rows(metadata_frame(frame, catalog.dimensions))


def privacy_gate(
    catalog: Catalog, final: DataFrame, published: list[Row]
) -> tuple[GateResult, AuditReport]:
    """Audit the rows a run is about to write (`final`, as written) with what the table
    already shows (`published_rows`): the gate fails when a suppressed cell the run writes
    is recoverable, or when a cell already published becomes recoverable because of the run
    (one that the table alone already gave away is reported, not blamed on the run)."""
    began = time.perf_counter()
    new = run_rows(final, catalog)
    rows = new + published
    report = audit(rows, catalog, stages=(FULL,))
    mine = {r.key for r in new}
    found = report.findings
    already: set[object] = set()
    if any(f.row.key not in mine for f in found):
        already = {f.row.key for f in audit(published, catalog, stages=(FULL,)).findings}
    blamed = [f for f in found if f.row.key not in already]
    seconds = time.perf_counter() - began
    if not blamed:
        detail = (
            f"{report.suppressed:,} suppressed cells, none recoverable from {len(rows):,} "
            f"published rows ({seconds:.1f} s)"
        )
        if found:
            detail += f"; {len(found)} were already recoverable before this run"
        return GateResult(GATE_NAME, True, detail), report
    routes = sorted({f.route for f in blamed})
    detail = (
        f"{len(blamed):,} suppressed cells would be recoverable (routes: {', '.join(routes)}); "
        "see docs/privacy.md"
    )
    return GateResult(GATE_NAME, False, detail, tuple(f.describe() for f in blamed[:5])), report

"""Restatement: find the stored (date, metric) cells whose definition version is not the
current one, group them into as few recomputations as possible, and log each one
recomputed in `runs/restatements`.

Every row of `metric_values` carries its metric's `definition_version` (a hash of all that
affects its numbers). A cell is stale when a date's rows for a metric carry another version,
or when a metric of the selection is missing on a date that has rows for others (a metric
added to the catalog). `run --restate` recomputes exactly the stale cells: dates are grouped
by the set of metrics they need, and consecutive dates with the same set become one run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.run_log import append_rows
from jobs.metrics.definitions import Catalog

log = logging.getLogger(__name__)
#: One row per (date, metric) cell a restatement recomputed.
RESTATEMENTS = "runs/restatements"
RESTATEMENTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("restated_at", pa.timestamp("us", tz="UTC")),
        ("date", pa.date32()),
        ("metric", pa.string()),
        ("stored_version", pa.string()),  # null: the metric had no rows that date
        ("current_version", pa.string()),
    ]
)


StoredVersions = dict[tuple[dt.date, str], frozenset[str]]


@dataclass(frozen=True)
class StaleCell:
    """One date's rows of one metric that need recomputing."""

    date: dt.date
    metric: str
    stored: str | None  # the stored version(s), comma-separated; None: missing that date
    current: str


@dataclass(frozen=True)
class Restatement:
    """One recomputation: `metrics` over every date of [start, end]."""

    metrics: tuple[str, ...]
    start: dt.date
    end: dt.date

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def stored_versions(
    metric_values: DataFrame, start: dt.date | None = None, end: dt.date | None = None
) -> StoredVersions:
    """(date, metric) -> the definition versions its rows carry: one small aggregation
    (a row per stored date and metric reaches the driver, not the table)."""
    table = metric_values
    if start is not None:
        table = table.where(F.col("date") >= F.lit(start))
    if end is not None:
        table = table.where(F.col("date") <= F.lit(end))
    rows = (
        table.groupBy("date", "metric")
        .agg(F.collect_set("definition_version").alias("versions"))
        .collect()
    )
    return {(r["date"], r["metric"]): frozenset(v or "" for v in r["versions"]) for r in rows}


def stale_cells(
    stored: StoredVersions, catalog: Catalog, metrics: Iterable[str]
) -> list[StaleCell]:
    """The cells of `metrics` on the stored dates whose version is not the current one."""
    dates = sorted({day for day, _ in stored})
    current = {m: catalog.metric_version(m) for m in metrics}
    stale = []
    for day in dates:
        for metric, version in current.items():
            versions = stored.get((day, metric))
            if versions is None:
                stale.append(StaleCell(day, metric, None, version))
            elif versions != {version}:
                stale.append(StaleCell(day, metric, ",".join(sorted(versions)), version))
    return stale


def undefined_metrics(stored: StoredVersions, catalog: Catalog) -> list[str]:
    """Stored metrics the catalog no longer defines (left as they are, and reported)."""
    return sorted({m for _, m in stored if m not in catalog.metrics})


def restatements(cells: Iterable[StaleCell]) -> list[Restatement]:
    """Group stale cells into runs: per date the set of metrics to recompute; consecutive
    dates with the same set share one run."""
    by_date: dict[dt.date, set[str]] = {}
    for cell in cells:
        by_date.setdefault(cell.date, set()).add(cell.metric)
    runs: list[Restatement] = []
    for day in sorted(by_date):
        metrics = tuple(sorted(by_date[day]))
        last = runs[-1] if runs else None
        if last and last.metrics == metrics and last.end + dt.timedelta(days=1) == day:
            runs[-1] = Restatement(metrics, last.start, day)
        else:
            runs.append(Restatement(metrics, day, day))
    return runs


def record_restatements(warehouse: str, run_id: str, cells: Iterable[StaleCell]) -> None:
    """Append one `restatements` row per recomputed (date, metric) cell."""
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, object]] = [
        {
            "run_id": run_id,
            "restated_at": now,
            "date": c.date,
            "metric": c.metric,
            "stored_version": c.stored,
            "current_version": c.current,
        }
        for c in cells
    ]
    if rows:
        append_rows(warehouse, RESTATEMENTS, rows, RESTATEMENTS_SCHEMA)
        log.info("%d restated cells recorded in %s", len(rows), RESTATEMENTS)

"""The monitoring job: score every metric series, explain anomalies, write two Delta tables.

    metric_values (the dates plus HISTORY_DAYS before them)
    -> one applyInPandas job per grain: every (metric, slice) series scored against its past
    -> metric_anomalies: every scored cell of the dates (is_anomaly marks alerts)
    -> anomaly_root_causes: for each anomalous cell (a day's, or an hour's at the hourly
       grain), its child slices ranked (driver side: one date's cells of a grain are a few
       thousand rows)

Both tables are partitioned by date, and a run replaces its dates atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.core.logs import stage
from jobs.metrics.definitions import Catalog
from jobs.metrics.job import METRIC_VALUES
from jobs.monitoring.root_cause import ROOT_CAUSE_COLUMNS, explain, metric_kinds
from jobs.monitoring.series import metric_series, score_series
from udfs.detector_settings import Grain

log = logging.getLogger(__name__)

METRIC_ANOMALIES = "monitoring/metric_anomalies"
ANOMALY_ROOT_CAUSES = "monitoring/anomaly_root_causes"
#: Days of metric history read before the first date: six weeks of seasonality plus the
#: drift detector's reference window, with room for missing days.
HISTORY_DAYS = 70
GRAINS: tuple[Grain, ...] = ("day", "hour")
ROOT_CAUSE_SCHEMA = (
    "date date, metric string, parent_slice_id string, rank int, slice_set string, "
    "slice_id string, explanatory_power double, surprise double, score double, value double, "
    "expected double, run_id string, grain string, period_start timestamp"
)
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class MonitoringSummary:
    dates: tuple[dt.date, ...]
    scored: int
    anomalies: int
    root_causes: int
    seconds: float
    statuses: tuple[tuple[str, int], ...] = ()

    def render(self) -> str:
        first, last = self.dates[0], self.dates[-1]
        span = str(first) if first == last else f"{first}..{last}"
        text = (
            f"metric_anomalies: {self.scored:,} cells scored on {span}, {self.anomalies:,} "
            f"anomalies, {self.root_causes:,} root-cause rows, {self.seconds:.1f} s"
        )
        counts = dict(self.statuses)
        if counts:
            text += "\n  cells by status: " + ", ".join(
                f"{k} {v:,}" for k, v in sorted(counts.items())
            )
        if counts.get("warming_up"):
            text += (
                "\n  (daily series are judged from their 8th day, hourly ones from their 2nd "
                "day: backfill with `safety-metrics run --start D0 --end D1`, then "
                "`safety-metrics monitor`)"
            )
        return text


def scored_cells(
    values: DataFrame, catalog: Catalog, start: dt.date, end: dt.date, run_id: str
) -> DataFrame:
    """Every monitored cell of [start, end] at every grain, scored, with its metric, slice,
    numerator and denominator (for root causes)."""
    frames = []
    for grain in GRAINS:
        series = metric_series(values, catalog, grain)
        keys = series.select("series_id", "metric", "slice_set", "slice_id").distinct()
        scored = score_series(series, grain).join(keys, on="series_id")
        frames.append(scored.select("*", F.lit(grain).alias("grain")))
    cells = frames[0].unionByName(frames[1])
    sums = values.select(
        "metric",
        "slice_id",
        "grain",
        F.col("period_start").alias("ts"),
        "numerator",
        "denominator",
        "units",
    ).where(F.col("window").isin("1d", "1h"))
    return (
        cells.withColumn("date", F.to_date("ts"))
        .where(F.col("date").between(F.lit(start), F.lit(end)))
        .join(sums, on=["metric", "slice_id", "grain", "ts"], how="left")
        .select(
            "date",
            F.col("ts").alias("period_start"),
            "grain",
            "metric",
            "slice_set",
            "slice_id",
            "value",
            "expected",
            "lower",
            "upper",
            "score",
            "is_anomaly",
            "severity",
            "direction",
            "detector",
            F.col("history").alias("history_length"),
            "status",
            "numerator",
            "denominator",
            "units",
            F.lit(run_id).alias("run_id"),
        )
    )


def run_monitoring(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    warehouse: str,
    start: dt.date,
    end: dt.date,
    run_id: str,
) -> MonitoringSummary:
    """Score the dates [start, end] of `metric_values`; replace them in both tables."""
    started = time.perf_counter()
    dates = tuple(start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    first = start - dt.timedelta(days=HISTORY_DAYS)
    table = os.path.join(warehouse, METRIC_VALUES)
    with stage(log, f"reading {first}..{end} of {table}"):
        # Read once: the series and the root causes' numerators both come from it.
        values = sink.read(table).where(F.col("date").between(F.lit(first), F.lit(end)))
        values = values.localCheckpoint()
    with stage(log, f"scoring every metric series on {start}..{end}"):
        cells = scored_cells(values, catalog, start, end, run_id).localCheckpoint()
        statuses = tuple((str(r[0]), int(r[1])) for r in cells.groupBy("status").count().collect())
        scored = sum(n for _, n in statuses)
        anomalies = cells.where("is_anomaly").count()
    with stage(log, "root causes"):
        causes = root_causes(spark, catalog, cells, run_id).localCheckpoint()
        count = causes.count()
    # Both tables are written only after everything is computed.
    table = os.path.join(warehouse, METRIC_ANOMALIES)
    with stage(log, f"writing {scored:,} scored cells ({anomalies:,} anomalies) to {table}"):
        sink.write(
            cells, table, mode="replace", partition_by=("date",), replace={"date": list(dates)}
        )
    table = os.path.join(warehouse, ANOMALY_ROOT_CAUSES)
    with stage(log, f"writing {count:,} root-cause rows to {table}"):
        sink.add_missing_columns(table, causes)  # tables written before the hourly grain
        sink.write(
            causes, table, mode="replace", partition_by=("date",), replace={"date": list(dates)}
        )
    seconds = time.perf_counter() - started
    return MonitoringSummary(dates, scored, anomalies, count, seconds, statuses)


def root_causes(spark: SparkSession, catalog: Catalog, cells: DataFrame, run_id: str) -> DataFrame:
    """Ranked child slices of each anomalous cell: per date at the daily grain, per hour at
    the hourly grain (only dates and grains with anomalies are read to the driver)."""
    kinds = metric_kinds(catalog)
    flagged = cells.where("is_anomaly").select("date", "grain").distinct().collect()
    records: list[tuple[Any, ...]] = []
    for day, grain in sorted((r[0], r[1]) for r in flagged):
        pdf: pd.DataFrame = cells.where(
            (F.col("date") == F.lit(day)) & (F.col("grain") == grain)
        ).toPandas()
        for period, points in pdf.groupby("period_start", sort=True):
            if not points["is_anomaly"].astype(bool).any():
                continue
            explained = explain(points, kinds)
            start = pd.Timestamp(period).to_pydatetime()
            for row in explained[list(ROOT_CAUSE_COLUMNS)].itertuples(index=False, name=None):
                values = [None if pd.isna(v) else v for v in row]
                records.append((day, *values, run_id, grain, start))
    return spark.createDataFrame(records, ROOT_CAUSE_SCHEMA)


# --- alerts -----------------------------------------------------------------------------------


def alerts(sink: DeltaSink, warehouse: str, day: dt.date) -> list[dict[str, Any]]:
    """The day's anomalies, most severe first (coarser slices before finer at equal
    severity), each with its top root causes."""
    cells = sink.read(os.path.join(warehouse, METRIC_ANOMALIES)).where(
        (F.col("date") == F.lit(day)) & F.col("is_anomaly")
    )
    found = [r.asDict() for r in cells.collect()]
    causes_path = os.path.join(warehouse, ANOMALY_ROOT_CAUSES)
    causes: dict[tuple[str, str, str, Any], list[dict[str, Any]]] = {}
    if os.path.isdir(os.path.join(causes_path, "_delta_log")):
        for r in sink.read(causes_path).where(F.col("date") == F.lit(day)).collect():
            cause = r.asDict()
            causes.setdefault(_cause_key(cause, cause["parent_slice_id"]), []).append(cause)
    out = []
    for cell in found:
        drivers = sorted(
            causes.get(_cause_key(cell, cell["slice_id"]), []), key=lambda c: c["rank"]
        )
        out.append(
            {
                "date": str(day),
                "metric": cell["metric"],
                "slice_id": cell["slice_id"],
                "grain": cell["grain"],
                "period_start": str(cell["period_start"]),
                "value": cell["value"],
                "expected": cell["expected"],
                "lower": cell["lower"],
                "upper": cell["upper"],
                "score": cell["score"],
                "severity": cell["severity"],
                "direction": cell["direction"],
                "detector": cell["detector"],
                "root_causes": [
                    {
                        "slice_id": c["slice_id"],
                        "explanatory_power": c["explanatory_power"],
                        "surprise": c["surprise"],
                    }
                    for c in drivers[:3]
                ],
            }
        )
    return sorted(
        out,
        key=lambda a: (
            SEVERITY_ORDER.get(a["severity"], 3),
            a["slice_id"].count("|") + (a["slice_id"] != "all"),
            -abs(a["score"] or 0.0),
        ),
    )


def _cause_key(row: dict[str, Any], slice_id: str) -> tuple[str, str, str, Any]:
    """(metric, slice, grain, hour) that joins a cell to its root causes; rows written
    before root causes had a grain are daily."""
    grain = row.get("grain") or "day"
    return (row["metric"], slice_id, grain, row.get("period_start") if grain == "hour" else None)


def render_alerts(found: list[dict[str, Any]], day: dt.date) -> str:
    if not found:
        return f"No anomalies on {day}."
    lines = [f"{len(found)} anomalies on {day}, most severe first:"]
    for i, a in enumerate(found, start=1):
        change = (a["value"] / a["expected"] - 1) if a["expected"] else float("nan")
        lines.append(
            f"{i:>3}. [{a['severity']}] {a['metric']} at {a['slice_id']} ({a['grain']}): "
            f"{a['value']:.6g} vs expected {a['expected']:.6g} ({change:+.0%}), "
            f"score {a['score']:+.1f}, {a['detector']}"
        )
        if a["root_causes"]:
            top = a["root_causes"][0]
            share = top["explanatory_power"]
            shown = f" ({share:.0%} of the change)" if share is not None else ""
            lines.append(f"       driven by {top['slice_id']}{shown}")
    return "\n".join(lines)


def write_json_lines(found: list[dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for alert in found:
            handle.write(json.dumps(alert, default=str) + "\n")


def latest_metric_date(sink: DeltaSink, warehouse: str, table: str) -> dt.date:
    """The last date in the Delta table `table` of the warehouse (a `FileNotFoundError`
    where there is no such table)."""
    path = os.path.join(warehouse, table)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        raise FileNotFoundError(f"{path}: no such Delta table; run `safety-metrics run` first")
    value = sink.read(path).agg(F.max("date")).collect()[0][0]
    if value is None:
        raise RuntimeError(f"{path} is empty")
    return value  # type: ignore[no-any-return]

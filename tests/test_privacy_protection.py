"""Planted publications through the real job: each route of the issue is closed.

Each test writes a few days of events where one cell is small in a way that the old
suppression (per metric, on the denominator's units, per period and window) published as
recoverable, runs the metrics job, and audits what it wrote: nothing may be recoverable,
and the planted cell must be hidden wherever it is shown. The restatement test checks that
the publish gate refuses a run that would hide a cell an earlier version showed.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import PublishGateError
from jobs.metrics.job import METRIC_VALUES, run_metrics
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.planner import compile_plan
from jobs.privacy.audit import AuditReport, audit
from jobs.privacy.gate import published_rows

START = dt.date(2026, 3, 1)
DAYS = 10
MIN_CELL = 5


def write_events(path: Path, rows: list[dict[str, Any]]) -> None:
    table = pa.table(
        {
            "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
            "user_id": pa.array([r["user"] for r in rows], pa.int64()),
            "country": pa.array([r["country"] for r in rows], pa.string()),
            "is_bad": pa.array([r["bad"] for r in rows], pa.bool_()),
        }
    )
    pq.write_table(table, path)


def events(
    small: dict[tuple[int, str], tuple[int, int]] | None = None, hours: bool = False
) -> list[dict[str, Any]]:
    """Every day: 12 users in each of FR, GB, US, DE (3 of them bad); `small` overrides
    (day, country) -> (users, bad users). With `hours`, users spread over the day's hours."""
    out = []
    user = 0
    for day in range(DAYS):
        for country in ("FR", "GB", "US", "DE"):
            users, bad = (small or {}).get((day, country), (12, 3))
            for i in range(users):
                user += 1
                hour = 8 + i % 6 if hours else 12  # hours: 8 users in each of 6 hours
                when = dt.datetime.combine(START + dt.timedelta(days=day), dt.time(hour))
                out.append({"ts": when, "user": user, "country": country, "bad": i < bad})
    return out


def catalog_for(path: Path, metrics: list[dict[str, Any]], min_cell: int = MIN_CELL) -> Catalog:
    source = {
        "path": str(path),
        "format": "parquet",
        "time_column": "ts",
        "unit": "user_id",
        "dimensions": ["country"],
    }
    common = {"description": "d", "owner": "o", "source": "events"}
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": min_cell, "gates": {"on_failure": "warn"}},
            "dimensions": ["country"],
            "sources": {"events": source},
            "metrics": [{**common, **m} for m in metrics],
        }
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None, problems
    return catalog


def publish(
    spark: SparkSession, warehouse: str, catalog: Catalog, start: dt.date, end: dt.date
) -> AuditReport:
    sink = DeltaSink.for_session(spark, "delta-rs")
    run_metrics(spark, sink, catalog, compile_plan(catalog), warehouse, start, end, run_id="t")
    table = os.path.join(warehouse, METRIC_VALUES)
    return audit(published_rows(spark, sink, catalog, table, None, None), catalog)


def suppressed_cells(spark: SparkSession, warehouse: str) -> set[tuple[str, str, str, str]]:
    """(metric, period start, window, slice id) of every suppressed row."""
    sink = DeltaSink.for_session(spark, "delta-rs")
    rows = sink.read(os.path.join(warehouse, METRIC_VALUES)).where("suppressed").collect()
    return {
        (r["metric"], str(r["period_start"] if r["grain"] == "hour" else r["date"]),
         r["window"], r["slice_id"])
        for r in rows
    }  # fmt: skip


COUNT = {"name": "bad", "type": "count", "filter": "is_bad", "slices": [[], ["country"]]}
SHARE = {
    "name": "bad_share",
    "type": "ratio",
    "numerator": {"agg": "count", "filter": "is_bad"},
    "denominator": {"agg": "count"},
    "slices": [[], ["country"]],
}


def test_metrics_route_a_count_is_hidden_wherever_it_is_shown(
    spark: SparkSession, tmp_path: Path
) -> None:
    """GB has 12 users but 2 bad ones on day 3: `bad` hides its count; the old suppression
    showed it as the numerator of `bad_share` (thresholded on 12 users)."""
    write_events(tmp_path / "e.parquet", events({(3, "GB"): (12, 2)}))
    catalog = catalog_for(tmp_path / "e.parquet", [COUNT, SHARE])
    day = START + dt.timedelta(days=3)
    report = publish(spark, str(tmp_path / "wh"), catalog, day, day)
    assert report.findings == [], report.render()
    hidden = suppressed_cells(spark, str(tmp_path / "wh"))
    assert ("bad", str(day), "1d", "country=GB") in hidden
    assert ("bad_share", str(day), "1d", "country=GB") in hidden


def test_windows_route_a_hidden_day_hides_the_windows_around_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    """GB has 2 users on day 5 only: 1d(t) = 7d(t) - 7d(t-1) + 1d(t-7) recovered it from
    the 7-day windows the old suppression showed."""
    write_events(tmp_path / "e.parquet", events({(5, "GB"): (2, 0), (5, "FR"): (3, 0)}))
    n = {"name": "n", "type": "count", "windows": ["1d", "7d"], "slices": [[], ["country"]]}
    catalog = catalog_for(tmp_path / "e.parquet", [n])
    report = publish(spark, str(tmp_path / "wh"), catalog, START, START + dt.timedelta(DAYS - 1))
    assert report.findings == [], report.render()
    hidden = suppressed_cells(spark, str(tmp_path / "wh"))
    for d in range(5, DAYS):
        assert ("n", str(START + dt.timedelta(days=d)), "7d", "country=GB") in hidden


def test_hours_route_a_lone_hidden_hour_takes_a_partner(
    spark: SparkSession, tmp_path: Path
) -> None:
    """An hourly count whose day is published: one small hour alone is the day minus the
    others."""
    rows = events(hours=True)
    rows.append(
        {"ts": dt.datetime(2026, 3, 2, 3, 30), "user": 10_000, "country": "FR", "bad": False}
    )
    write_events(tmp_path / "e.parquet", rows)
    hourly = {"name": "n_hourly", "type": "count", "grain": "hour", "slices": [[]]}
    daily = {"name": "n", "type": "count", "slices": [[]]}
    catalog = catalog_for(tmp_path / "e.parquet", [hourly, daily])
    day = START + dt.timedelta(days=1)
    report = publish(spark, str(tmp_path / "wh"), catalog, day, day)
    assert report.findings == [], report.render()
    hidden = {c for c in suppressed_cells(spark, str(tmp_path / "wh")) if c[0] == "n_hourly"}
    assert len(hidden) >= 2


def test_versions_route_a_restatement_that_would_hide_a_shown_cell_is_refused(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Version 1 (minimum cell size 3) shows GB's 4 users; version 2 (5) would hide them,
    but the old rows stay readable in the table's history: the gate refuses, naming it."""
    write_events(tmp_path / "e.parquet", events({(2, "GB"): (4, 1), (2, "FR"): (4, 1)}))
    n = {"name": "n", "type": "count", "slices": [[], ["country"]]}
    day = START + dt.timedelta(days=2)
    first = catalog_for(tmp_path / "e.parquet", [n], min_cell=3)
    assert publish(spark, str(tmp_path / "wh"), first, day, day).findings == []
    stricter = catalog_for(tmp_path / "e.parquet", [n], min_cell=5)
    sink = DeltaSink.for_session(spark, "delta-rs")
    with pytest.raises(PublishGateError, match="no suppressed cell is recoverable") as caught:
        run_metrics(spark, sink, stricter, compile_plan(stricter), str(tmp_path / "wh"), day, day)
    assert "country=GB" in str(caught.value)
    # Nothing was written: the table still holds version 1's rows.
    assert suppressed_cells(spark, str(tmp_path / "wh")) == set()


def test_rerunning_a_date_with_the_same_data_passes_the_gate(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The replaced rows stay in the history, but they show what the new ones show."""
    write_events(tmp_path / "e.parquet", events({(3, "GB"): (12, 2)}))
    catalog = catalog_for(tmp_path / "e.parquet", [COUNT, SHARE])
    day = START + dt.timedelta(days=3)
    publish(spark, str(tmp_path / "wh"), catalog, day, day)
    report = publish(spark, str(tmp_path / "wh"), replace(catalog), day, day)
    assert report.findings == []


def test_a_backfill_after_a_one_day_run_keeps_what_that_run_showed(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The README's `daily` publishes one day; a backfill of the days before it must not
    hide what that day showed (its old rows stay readable in the history). GB's small day 5
    lies inside the shown 7-day window of day 9: the backfill hides another day of that
    window instead, and nothing is recoverable."""
    write_events(tmp_path / "e.parquet", events({(5, "GB"): (2, 0), (5, "FR"): (3, 0)}))
    n = {"name": "n", "type": "count", "windows": ["1d", "7d"], "slices": [[], ["country"]]}
    catalog = catalog_for(tmp_path / "e.parquet", [n])
    last = START + dt.timedelta(DAYS - 1)
    wh = str(tmp_path / "wh")
    assert publish(spark, wh, catalog, last, last).findings == []
    assert ("n", str(last), "7d", "country=GB") not in suppressed_cells(spark, wh)
    report = publish(spark, wh, catalog, START, last)
    assert report.findings == [], report.render()
    hidden = suppressed_cells(spark, wh)
    assert ("n", str(last), "7d", "country=GB") not in hidden  # still shown, as before
    assert ("n", str(START + dt.timedelta(days=5)), "1d", "country=GB") in hidden


def test_a_window_equal_to_a_published_one_is_not_hidden_in_vain(
    spark: SparkSession, tmp_path: Path
) -> None:
    """GB has one user a day on days 3-8 only. Published first, day 9's 7-day window shows
    its 6 users; in the backfill, day 8's window (days 2-8) holds the same users (days 2
    and 9 are empty), so hiding it for its small days protects nothing: it is shown."""
    small = {(d, "GB"): (0, 0) for d in (0, 1, 2, 9)} | {(d, "GB"): (1, 0) for d in range(3, 9)}
    write_events(tmp_path / "e.parquet", events(small))
    n = {"name": "n", "type": "count", "windows": ["1d", "7d"], "slices": [[], ["country"]]}
    catalog = catalog_for(tmp_path / "e.parquet", [n])
    last = START + dt.timedelta(DAYS - 1)
    wh = str(tmp_path / "wh")
    assert publish(spark, wh, catalog, last, last).findings == []
    report = publish(spark, wh, catalog, START, last)
    assert report.findings == [], report.render()
    hidden = suppressed_cells(spark, wh)
    assert ("n", str(last - dt.timedelta(days=1)), "7d", "country=GB") not in hidden
    assert ("n", str(last - dt.timedelta(days=2)), "1d", "country=GB") in hidden

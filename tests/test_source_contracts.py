"""Source contracts: bad rows are caught in the pass, reported, and handled by their policy.

Small Parquet sources with planted bad rows (a null time, times outside their partition,
duplicate ids, negative amounts, a disallowed value, null units, times in the future). The
published numbers are checked against DuckDB over the rows the contract keeps, computed
independently in SQL; the same numbers must come out of 1 and 7 input partitions.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.cli import main
from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.failures import EXIT_GATE, EXIT_NOT_READY, outcome_of
from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.job import METRIC_VALUES, compute_metric_rows, run_metrics
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.pass_runs import compute_checked_passes
from jobs.metrics.planner import compile_plan
from jobs.metrics.runner import day_to_compute
from jobs.metrics.source_checks import SOURCE_CHECKS, CheckResult, ContractError
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker
from tests.conftest import REPO_ROOT

DAYS = [dt.date(2026, 3, 26), dt.date(2026, 3, 27), dt.date(2026, 3, 28)]
START, END = DAYS[0], DAYS[-1]
#: The runs' clock: the morning after the last date.
NOW = dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)
ALLOWED_KINDS = ("a", "b")
COLUMNS = ("event_id", "user_id", "ts", "day", "amount", "kind", "country")


# --- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """How many bad rows of each kind the events hold."""

    null_time: int = 2
    outside_partition: int = 3
    negative: int = 4
    disallowed: int = 3
    null_unit: int = 6
    exact_copies: int = 5
    conflicting_copies: int = 1


PLANTED = Planted()


def _row(
    event_id: int | None,
    user: int | None,
    ts: dt.datetime | None,
    day: dt.date,
    amount: float,
    kind: str,
    country: str,
) -> dict[str, Any]:
    return dict(zip(COLUMNS, (event_id, user, ts, day, amount, kind, country), strict=True))


def make_events() -> list[dict[str, Any]]:
    """240 clean events over 3 days, then the planted bad rows."""
    rng = np.random.RandomState(26)
    country_of = ["BR", "US", "IN"]
    rows = []
    for i in range(240):
        day = DAYS[i % 3]
        user = int(rng.randint(0, 40))
        ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(rng.randint(0, 86400)))
        # Quarters: fractional, yet sums are exact in any order (bit-identical totals).
        amount = float(rng.randint(0, 4000)) / 4
        rows.append(_row(i, user, ts, day, amount, ALLOWED_KINDS[i % 2], country_of[user % 3]))
    bad = 1000
    for _ in range(PLANTED.null_time):
        rows.append(_row(bad, 1, None, DAYS[1], 5.0, "a", "US"))
        bad += 1
    for _ in range(PLANTED.outside_partition):  # in the 27th's partition, on the 28th
        rows.append(_row(bad, 2, dt.datetime(2026, 3, 28, 10), DAYS[1], 7.5, "a", "IN"))
        bad += 1
    for _ in range(PLANTED.negative):
        rows.append(_row(bad, 3, dt.datetime(2026, 3, 27, 9), DAYS[1], -2.25, "b", "BR"))
        bad += 1
    for _ in range(PLANTED.disallowed):
        rows.append(_row(bad, 4, dt.datetime(2026, 3, 26, 9), DAYS[0], 3.0, "zzz", "US"))
        bad += 1
    for i in range(PLANTED.null_unit):  # kept (warn): counted in totals, not as units
        day = DAYS[i % 3]
        rows.append(_row(bad, None, dt.datetime.combine(day, dt.time(12)), day, 1.25, "a", "BR"))
        bad += 1
    for i in range(PLANTED.exact_copies):
        rows.append(dict(rows[10 * (i + 1)]))
    # A conflicting copy: same id, another user; the first by every column is kept.
    conflicting = dict(rows[60])
    conflicting["user_id"] = 39 if conflicting["user_id"] != 39 else 38
    conflicting["country"] = country_of[conflicting["user_id"] % 3]  # constant per user
    rows.append(conflicting)
    # Ids that are null are not duplicates of each other.
    rows += [_row(None, 5, dt.datetime(2026, 3, 28, 8), DAYS[2], 2.0, "b", "IN")] * 2
    return rows


def events_table(rows: list[dict[str, Any]], utc: bool) -> pa.Table:
    ts_type = pa.timestamp("us", tz="UTC") if utc else pa.timestamp("us")
    return pa.table(
        {
            "event_id": pa.array([r["event_id"] for r in rows], pa.int64()),
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "ts": pa.array([r["ts"] for r in rows], ts_type),
            "day": pa.array([r["day"] for r in rows], pa.date32()),
            "amount": pa.array([r["amount"] for r in rows], pa.float64()),
            "kind": pa.array([r["kind"] for r in rows], pa.string()),
            "country": pa.array([r["country"] for r in rows], pa.string()),
        }
    )


def reports_table() -> pa.Table:
    """A second, clean source without unit attributes (its pass is not hashed)."""
    times = [dt.datetime.combine(DAYS[i % 3], dt.time(i % 24)) for i in range(30)]
    return pa.table(
        {
            "report_id": pa.array(range(30), pa.int64()),
            "reporter_id": pa.array([i % 7 for i in range(30)], pa.int64()),
            "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
            "day": pa.array([t.date() for t in times], pa.date32()),
            "country": pa.array(["BR", "US", "IN"] * 10, pa.string()),
        }
    )


@dataclass(frozen=True)
class Data:
    events: list[dict[str, Any]]
    events_path: str
    reports_path: str


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("contracts")
    rows = make_events()
    events_path, reports_path = str(root / "events.parquet"), str(root / "reports.parquet")
    pq.write_table(events_table(rows, utc=True), events_path)
    pq.write_table(reports_table(), reports_path)
    return Data(rows, events_path, reports_path)


def catalog_yaml(
    events: str, reports: str, unique_policy: str = "quarantine", events_format: str = "parquet"
) -> str:
    where = f"catalog_table: {events}" if events_format == "catalog" else f"path: {events}"
    parquet = "" if events_format == "catalog" else "\n    format: parquet"
    return f"""\
settings: {{min_cell_size: 1, gates: {{on_failure: warn}}}}
dimensions: [country]
sources:
  events:
    {where}{parquet}
    time_column: ts
    date_column: day
    unit: user_id
    dimensions: [country]
    unit_attributes: [country]
    contract:
      unique: {{columns: [event_id], policy: {unique_policy}}}
      range:
        amount: {{min: 0, policy: quarantine}}
      allowed:
        kind: {{values: [a, b], policy: quarantine}}
  reports:
    path: {reports}
    format: parquet
    time_column: ts
    date_column: day
    unit: reporter_id
    dimensions: [country]
    contract:
      unique: [report_id]
defaults: {{owner: o, slices: [[], [country]]}}
metrics:
  - {{name: n_events, description: d, source: events, type: count, windows: [1d, 7d]}}
  - {{name: total_amount, description: d, source: events, type: sum, value: amount}}
  - {{name: mean_amount, description: d, source: events, type: mean, value: amount}}
  - {{name: users, description: d, source: events, type: distinct_count, value: user_id}}
  - {{name: distinct_events, description: d, source: events, type: distinct_count,
      value: event_id}}
  - {{name: approx_events, description: d, source: events, type: approx_distinct_count,
      value: event_id}}
  - {{name: p50_amount, description: d, source: events, type: quantile, value: amount,
      quantile: 0.5}}
  - {{name: n_reports, description: d, source: reports, type: count}}
"""


def checked_catalog(
    spark: SparkSession, text: str, file: str = "defs.yaml", warehouse: str = "/unused"
) -> Catalog:
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), warehouse)
    catalog, problems = catalog_from_documents(
        [parse_located(text, file)], lambda sources: SparkExpressionChecker(spark, read, sources)
    )
    assert not problems, [str(p) for p in problems]
    assert catalog is not None
    return catalog


# --- the independent computation over the rows a contract keeps ------------------------------


def clean_rows_sql(first: dt.date, last: dt.date) -> str:
    """The events the contract keeps of the dates [first, last] a pass reads, in DuckDB SQL:
    one row per non-null id (the first by every column in order, nulls last), then those
    dated inside their partition with amount >= 0 and an allowed kind."""
    kinds = ", ".join(f"'{k}'" for k in ALLOWED_KINDS)
    order = ", ".join(f"{c} ASC NULLS LAST" for c in COLUMNS)
    return f"""
        WITH dated AS (
            SELECT * FROM events
            WHERE day BETWEEN DATE '{first}' AND DATE '{last}'
              AND CAST(ts AS DATE) BETWEEN DATE '{first}' AND DATE '{last}'
        ), ranked AS (
            SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY {order}) AS rn
            FROM dated
        )
        SELECT * EXCLUDE (rn) FROM ranked
        WHERE (rn = 1 OR event_id IS NULL)
          AND CAST(ts AS DATE) = day
          AND NOT coalesce(amount < 0, FALSE)
          AND NOT coalesce(kind NOT IN ({kinds}), FALSE)
    """


def expected_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float | None]:
    """(metric, date, slice_id) -> value over the kept rows, 1-day windows (n_events: 7-day
    too), with DuckDB."""
    con = duckdb.connect()
    con.register("events_raw", events_table(rows, utc=False))
    con.execute("CREATE TABLE events AS SELECT * FROM events_raw")
    out: dict[tuple[str, str, str], float | None] = {}
    aggs = {
        "n_events": "count(*)",
        "total_amount": "sum(amount)",
        "mean_amount": "avg(amount)",
        "users": "count(DISTINCT user_id)",
        "distinct_events": "count(DISTINCT event_id)",
        "p50_amount": "quantile_cont(amount, 0.5)",
    }
    # The pass reads the 7-day window's lookback: kept rows are decided over those dates.
    con.execute(f"CREATE TABLE kept AS {clean_rows_sql(START - dt.timedelta(days=6), END)}")
    for window in (1, 7):
        for day in DAYS:
            first = day - dt.timedelta(days=window - 1)
            clean = f"SELECT * FROM kept WHERE CAST(ts AS DATE) BETWEEN '{first}' AND '{day}'"
            names = aggs if window == 1 else {"n_events": aggs["n_events"]}
            for name, agg in names.items():
                for group in ("'all'", "'country=' || country"):
                    sql = f"SELECT {group}, {agg} FROM ({clean}) GROUP BY ALL"
                    for sid, value in con.execute(sql).fetchall():
                        key = (f"{name}@{window}d", day.isoformat(), sid)
                        out[key] = None if value is None else float(value)
    return out


def computed_cells(
    spark: SparkSession, catalog: Catalog, warehouse: str
) -> tuple[dict[tuple[str, str, str], float | None], list[CheckResult]]:
    sink = DeltaSink.for_session(spark, "delta-rs")
    plan = compile_plan(catalog)
    results, checks = compute_checked_passes(
        spark, sink, catalog, plan, warehouse, START, END, now=NOW
    )
    cells = {
        (f"{r['metric']}@{r['window']}", r["period"].date().isoformat(), r["slice_id"]): r["value"]
        for r in compute_metric_rows(catalog, plan, results).collect()
    }
    return cells, checks


# --- the quarantine run, published through run_metrics ------------------------------------------


@dataclass(frozen=True)
class Published:
    catalog: Catalog
    warehouse: str
    cells: dict[tuple[str, str, str], float | None]
    checks: dict[tuple[str, str, str], CheckResult]
    table: list[dict[str, Any]]  # source_checks
    run_id: str
    rendered: str


def by_check(checks: list[CheckResult]) -> dict[tuple[str, str, str], CheckResult]:
    return {(c.source, c.check.kind, c.check.column): c for c in checks}


@pytest.fixture(scope="module")
def published(
    spark: SparkSession, data: Data, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    catalog = checked_catalog(spark, catalog_yaml(data.events_path, data.reports_path))
    warehouse = str(tmp_path_factory.mktemp("contracts-wh"))
    sink = DeltaSink.for_session(spark, "delta-rs")
    summary = run_metrics(
        spark, sink, catalog, compile_plan(catalog), warehouse, START, END, run_id="q1", now=NOW
    )
    rows = DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pyarrow_table().to_pylist()
    assert not any(r["suppressed"] for r in rows)  # every cell has a unit: all comparable
    cells = {
        (f"{r['metric']}@{r['window']}", r["date"].isoformat(), r["slice_id"]): r["value"]
        for r in rows
    }
    table = DeltaTable(os.path.join(warehouse, SOURCE_CHECKS)).to_pyarrow_table().to_pylist()
    return Published(
        catalog,
        warehouse,
        cells,
        by_check(list(summary.checks)),
        table,
        summary.run_id,
        summary.render(),
    )


def test_null_event_time_is_left_out_and_reported(published: Published) -> None:
    found = published.checks[("events", "null_time", "ts")]
    assert (found.violations, found.check.policy, found.action) == (
        PLANTED.null_time,
        "quarantine",
        "rows left out",
    )
    assert found.rows_checked == len(make_events())  # the lookback reads every day
    assert all(e.startswith("event_id=10") for e in found.examples)


def test_time_outside_its_partition_is_left_out_and_reported(published: Published) -> None:
    found = published.checks[("events", "time_outside_partition", "ts, day")]
    assert (found.violations, found.action) == (PLANTED.outside_partition, "rows left out")
    assert found.examples and all(
        "ts=2026-03-28 10:00:00, day=2026-03-27" in e for e in found.examples
    )
    # Today's code counted them on the 28th; they are left out, as DuckDB's kept rows say.
    expected = expected_cells(make_events())
    key = ("n_events@1d", "2026-03-28", "country=IN")
    assert published.cells[key] == expected[key]


def test_duplicates_are_counted_once_under_quarantine(published: Published) -> None:
    found = published.checks[("events", "unique", "event_id")]
    copies = PLANTED.exact_copies + PLANTED.conflicting_copies
    assert (found.violations, found.keys, found.action) == (copies, copies, "rows left out")
    assert set(found.examples) <= {f"event_id={10 * (i + 1)}" for i in range(6)}
    assert found.examples
    # Every event id once (the two null ids are no duplicates): n_events = distinct ids + 2.
    for day in DAYS:
        n = published.cells[("n_events@1d", day.isoformat(), "all")]
        ids = published.cells[("distinct_events@1d", day.isoformat(), "all")]
        nulls = 2 if day == DAYS[2] else 0
        assert n is not None and ids is not None
        assert n == ids + nulls, day


def test_out_of_range_and_disallowed_values_are_left_out(published: Published) -> None:
    negative = published.checks[("events", "range", "amount")]
    assert (negative.violations, negative.check.rule()) == (PLANTED.negative, ">= 0")
    assert all("amount=-2.25" in e for e in negative.examples)
    kinds = published.checks[("events", "allowed", "kind")]
    assert (kinds.violations, kinds.check.rule()) == (PLANTED.disallowed, "in {a, b}")
    assert all("kind=zzz" in e for e in kinds.examples)
    expected = expected_cells(make_events())
    assert published.cells[("mean_amount@1d", "2026-03-27", "all")] == pytest.approx(
        expected[("mean_amount@1d", "2026-03-27", "all")], rel=1e-12
    )


def test_null_units_are_counted_and_reported(published: Published) -> None:
    found = published.checks[("events", "null_unit", "user_id")]
    assert (found.violations, found.check.policy, found.action) == (
        PLANTED.null_unit,
        "warn",
        "rows kept",
    )
    # Kept: counted in totals, never as units (DuckDB's count(*) and count(DISTINCT)).
    expected = expected_cells(make_events())
    for key in [("n_events@1d", "2026-03-26", "all"), ("users@1d", "2026-03-26", "all")]:
        assert published.cells[key] == expected[key]
    kept = [r for r in make_events() if r["user_id"] is None and r["ts"].date() == DAYS[0]]
    assert len(kept) == 2


def test_quarantine_matches_duckdb_over_the_kept_rows(published: Published) -> None:
    expected = expected_cells(make_events())
    exact = {k: v for k, v in published.cells.items() if not k[0].startswith(("approx", "n_rep"))}
    assert sorted(exact) == sorted(expected)
    wrong = [
        (k, exact[k], v)
        for k, v in expected.items()
        if not (v is None and exact[k] is None)
        and not math.isclose(exact[k] or 0.0, v or 0.0, rel_tol=1e-12, abs_tol=1e-12)
    ]
    assert wrong == []
    approx = published.cells[("approx_events@1d", "2026-03-28", "all")]
    assert approx == pytest.approx(
        published.cells[("distinct_events@1d", "2026-03-28", "all")], rel=0.05
    )


def test_checks_are_in_the_table_and_the_summary(published: Published) -> None:
    table = published.table
    assert {r["run_id"] for r in table} == {"q1"}
    assert {r["published"] for r in table} == {True}
    assert len(table) == len(published.checks)
    row = next(r for r in table if r["check"] == "range")
    assert (row["source"], row["column"], row["violations"], row["policy"]) == (
        "events",
        "amount",
        PLANTED.negative,
        "quarantine",
    )
    assert (row["rows_removed"], row["action"]) == (PLANTED.negative, "rows left out")
    assert (row["first_date"], row["last_date"], row["read_from"]) == (
        START,
        END,
        START - dt.timedelta(days=6),
    )
    assert row["example_keys"] and all("amount=-2.25" in e for e in row["example_keys"])
    clean = [r for r in table if r["source"] == "reports"]
    assert clean and all(r["violations"] == 0 and r["action"] == "none" for r in clean)
    text = published.rendered
    assert (
        "source checks: 6/12 passed over 2 sources, 18 violating rows left out (quarantine)" in text
    ), text
    assert "events.amount range (>= 0): 4 of" in text


def test_results_do_not_depend_on_partitioning(
    spark: SparkSession, data: Data, published: Published, tmp_path: Path
) -> None:
    """The published run read the events as one partition; read as 7 partitions, rows in
    another order, the same cells come out bit for bit, with the same check results,
    examples included."""
    events = spark.read.parquet(data.events_path)
    assert events.rdd.getNumPartitions() == 1
    shuffled = events.orderBy(F.xxhash64("event_id", "amount")).repartition(7)
    shuffled.createOrReplaceTempView("contract_events_7")
    assert spark.table("contract_events_7").rdd.getNumPartitions() == 7
    catalog = checked_catalog(
        spark, catalog_yaml("contract_events_7", data.reports_path, events_format="catalog")
    )
    cells, checks = computed_cells(spark, catalog, str(tmp_path / "wh7"))
    assert sorted(cells) == sorted(published.cells)
    assert cells == published.cells  # exact: every cell, every metric
    summary = {k: (c.violations, c.keys, c.examples) for k, c in by_check(checks).items()}
    assert summary == {k: (c.violations, c.keys, c.examples) for k, c in published.checks.items()}


# --- policy fail: nothing is written ---------------------------------------------------------


def test_duplicates_fail_the_run_and_nothing_is_written(
    spark: SparkSession, data: Data, tmp_path: Path
) -> None:
    catalog = checked_catalog(
        spark, catalog_yaml(data.events_path, data.reports_path, unique_policy="fail")
    )
    warehouse = str(tmp_path / "wh")
    sink = DeltaSink.for_session(spark, "delta-rs")
    with pytest.raises(ContractError) as info:
        run_metrics(
            spark, sink, catalog, compile_plan(catalog), warehouse, START, END, run_id="f1", now=NOW
        )
    assert outcome_of(info.value).exit_code == EXIT_GATE
    message = str(info.value)
    assert "1 source contract check(s) with policy 'fail' found violations" in message
    assert (
        "events.event_id unique (unique (event_id)): 6 duplicate rows over 6 keys "
        "[fail: run stopped]" in message
    )
    assert not os.path.exists(os.path.join(warehouse, METRIC_VALUES))
    table = DeltaTable(os.path.join(warehouse, SOURCE_CHECKS)).to_pyarrow_table().to_pylist()
    assert {(r["run_id"], r["published"]) for r in table} == {("f1", False)}
    stopped = [r for r in table if r["action"] == "run stopped"]
    assert [(r["check"], r["violations"]) for r in stopped] == [("unique", 6)]


# --- times in the future, and `--date latest` ---------------------------------------------------


def test_times_in_the_future_fail_the_run(spark: SparkSession, tmp_path: Path) -> None:
    """Judged against the run's clock with the tolerance (1h by default): a row 30 minutes
    ahead passes, one 2 hours ahead stops the run."""
    today = NOW.date()
    times = [
        NOW - dt.timedelta(hours=3),
        NOW + dt.timedelta(minutes=30),
        NOW + dt.timedelta(hours=2),
    ]
    table = pa.table(
        {
            "event_id": pa.array([1, 2, 3], pa.int64()),
            "user_id": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
            "day": pa.array([today] * 3, pa.date32()),
            "country": pa.array(["BR"] * 3),
        }
    )
    path = str(tmp_path / "future.parquet")
    pq.write_table(table, path)
    text = f"""\
dimensions: [country]
sources:
  events: {{path: {path}, format: parquet, time_column: ts, date_column: day, unit: user_id}}
metrics:
  - {{name: n, description: d, owner: o, source: events, type: count}}
"""
    catalog = checked_catalog(spark, text)
    sink = DeltaSink.for_session(spark, "delta-rs")
    plan = compile_plan(catalog)
    with pytest.raises(ContractError) as info:
        compute_checked_passes(spark, sink, catalog, plan, str(tmp_path), today, today, now=NOW)
    (failed,) = [c for c in info.value.checks if c.violated]
    assert (failed.check.kind, failed.violations) == ("future_time", 1)
    assert failed.examples == ("user_id=3, ts=2026-03-29 08:00:00",)
    # Two hours later the same rows are in the past.
    later = NOW + dt.timedelta(hours=2)
    _, checks = compute_checked_passes(
        spark, sink, catalog, plan, str(tmp_path), today, today, now=later
    )
    assert not any(c.violated for c in checks)


@pytest.fixture(scope="module")
def future_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Delta warehouse whose views run to 2026-03-28 and hold rows dated 2030-01-01, and
    a catalog over it."""
    root = tmp_path_factory.mktemp("future")
    warehouse, defs = root / "warehouse", root / "defs"
    defs.mkdir()
    times = [dt.datetime.combine(DAYS[i % 3], dt.time(i % 24)) for i in range(60)]
    times += [dt.datetime(2030, 1, 1, 12)] * 3
    table = pa.table(
        {
            "view_id": pa.array(range(len(times)), pa.int64()),
            "viewer_id": pa.array([i % 12 for i in range(len(times))], pa.int64()),
            "viewed_at": pa.array(times, pa.timestamp("us", tz="UTC")),
            "date": pa.array([t.date() for t in times], pa.date32()),
            "country": pa.array(["BR", "US", "IN"] * (len(times) // 3)),
        }
    )
    write_deltalake(str(warehouse / "raw" / "views"), table, partition_by=["date"])
    (defs / "defs.yaml").write_text(
        """\
settings: {min_cell_size: 1}
dimensions: [country]
sources:
  views:
    table: raw/views
    time_column: viewed_at
    date_column: date
    unit: viewer_id
    dimensions: [country]
    contract: {unique: [view_id]}
metrics:
  - {name: views, description: d, owner: o, source: views, type: count, slices: [[], [country]]}
"""
    )
    return warehouse, defs


def test_latest_never_goes_past_today(
    spark: SparkSession, future_warehouse: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    warehouse, defs = future_warehouse
    config = load_config("test", conf_dir=REPO_ROOT / "conf", environ={})
    from dataclasses import replace

    config = replace(config, warehouse=str(warehouse))
    catalog = checked_catalog(spark, (defs / "defs.yaml").read_text(), warehouse=str(warehouse))
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), str(warehouse))
    sources = list(catalog.sources.values())
    with caplog.at_level(logging.WARNING, logger="safety-metrics"):
        day = day_to_compute("latest", config, read, sources, today=dt.date(2026, 12, 7))
    assert day == dt.date(2026, 3, 28)
    assert "views has rows dated up to 2030-01-01, after today (2026-12-07, UTC)" in caplog.text
    # On 2030-01-02 the rows are no longer in the future.
    assert day_to_compute("latest", config, read, sources, today=dt.date(2030, 1, 2)) == dt.date(
        2030, 1, 1
    )


def test_run_latest_publishes_today_at_most_and_a_future_date_is_not_ready(
    future_warehouse: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line, on the real clock (before 2030): `latest` is the last date
    up to today; an explicit date in the future has not landed (exit 75), whatever rows
    claim to be from it."""
    warehouse, defs = future_warehouse
    common = ["--defs", str(defs), "--env", "test", "--warehouse", str(warehouse)]
    assert main(["run", *common, "--date", "latest", "--run-id", "latest"]) == 0
    out = capsys.readouterr().out
    assert "rows for 1 metrics on 2026-03-28" in out
    assert "source checks: 5/5 passed over 1 source" in out
    assert main(["run", *common, "--date", "2030-01-01", "--run-id", "future"]) == EXIT_NOT_READY
    err = capsys.readouterr().err
    assert "no data for 2030-01-01 yet in views (latest 2026-03-28)" in err
    assert "Traceback" not in err
    dates = {
        (r["date"], r["run_id"])
        for r in DeltaTable(str(warehouse / METRIC_VALUES)).to_pyarrow_table().to_pylist()
    }
    assert dates == {(dt.date(2026, 3, 28), "latest")}


def test_a_pass_over_no_rows_reports_its_checks(spark: SparkSession, tmp_path: Path) -> None:
    """No rows in the dates read: every check reports 0 rows (their totals are still one
    row of the pass's result; an observation below the shuffle would never be reported)."""
    table = pa.table(
        {
            "event_id": pa.array([1], pa.int64()),
            "user_id": pa.array([1], pa.int64()),
            "ts": pa.array([dt.datetime(2020, 1, 1)], pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(2020, 1, 1)], pa.date32()),
            "country": pa.array(["BR"]),
        }
    )
    path = str(tmp_path / "old.parquet")
    pq.write_table(table, path)
    text = f"""\
dimensions: [country]
sources:
  events:
    {{path: {path}, format: parquet, time_column: ts, date_column: day, unit: user_id,
     dimensions: [country], unit_attributes: [country], contract: {{unique: [event_id]}}}}
metrics:
  - {{name: n, description: d, owner: o, source: events, type: count, slices: [[], [country]]}}
"""
    catalog = checked_catalog(spark, text)
    sink = DeltaSink.for_session(spark, "delta-rs")
    plan = compile_plan(catalog)
    results, checks = compute_checked_passes(
        spark, sink, catalog, plan, str(tmp_path), START, END, now=NOW
    )
    assert compute_metric_rows(catalog, plan, results).count() == 0
    assert [(c.check.kind, c.rows_checked, c.violations) for c in checks] == [
        ("null_unit", 0, 0),
        ("null_time", 0, 0),
        ("time_outside_partition", 0, 0),
        ("future_time", 0, 0),
        ("unique", 0, 0),
    ]


def test_key_check_partitions_keep_a_million_keys_per_task() -> None:
    """The unique-key shuffle is sized from the row count (adaptive execution would merge
    it into a few tasks that each spill a table of ~10M keys); unknown: Spark chooses."""
    from jobs.metrics.contracts import KEYS_PER_PARTITION, key_partitions

    assert key_partitions(None) is None
    assert key_partitions(0) == 1
    assert key_partitions(KEYS_PER_PARTITION) == 1
    assert key_partitions(20_267_193) == 21

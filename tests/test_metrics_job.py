"""The metrics job over the default catalog and a small generated dataset: the printed plan,
one Spark job per pass, fused equals metric-by-metric, atomic re-runs and backfills, gates."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs.core.delta import DeltaSink
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import PublishGateError
from jobs.metrics.job import METRIC_VALUES, compute_metric_rows, run_metrics
from jobs.metrics.loader import load_catalog
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import compile_plan, render_plan
from tests.conftest import REPO_ROOT

GOLDEN_PLAN = REPO_ROOT / "tests" / "golden" / "default_plan.txt"
LAST_DAY = dt.date(2026, 9, 28)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT / "metric_defs")


@pytest.fixture(scope="module")
def sink(spark: SparkSession) -> DeltaSink:
    return DeltaSink.for_session(spark, "delta-rs")


def test_printed_plan_of_the_default_catalog_is_the_reviewed_one(catalog: Catalog) -> None:
    """The golden file is reviewed like code. After a deliberate catalog change, refresh it
    with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_metrics_job.py` and review the diff."""
    printed = render_plan(catalog, compile_plan(catalog))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN_PLAN.write_text(printed)
    assert printed == GOLDEN_PLAN.read_text()


def test_default_catalog_has_at_least_20_metrics_and_one_pass_per_source(
    catalog: Catalog,
) -> None:
    """Stricter than one pass per (source, grain): a source's daily and hourly metrics
    share its pass."""
    plan = compile_plan(catalog)
    assert len(catalog.metrics) >= 20
    sources = {s for m in plan.metrics for s in catalog.metrics[m].sources()}
    assert sorted(sources) == sorted(p.source for p in plan.passes)
    views = next(p for p in plan.passes if p.source == "views")
    assert views.grains == ("day", "hour")
    assert views.windows == ("1d", "7d", "28d", "1h")


@pytest.fixture
def job_counter(spark: SparkSession) -> Iterator[Any]:
    """Counts the Spark jobs run inside the block, with the settings that add jobs of their
    own (adaptive re-planning per stage, broadcast joins) turned off."""
    settings = {"spark.sql.adaptive.enabled": "false", "spark.sql.autoBroadcastJoinThreshold": "-1"}
    before = {k: str(spark.conf.get(k)) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    group = f"count-{uuid.uuid4().hex}"
    tracker = spark.sparkContext.statusTracker()

    class Counter:
        def __enter__(self) -> None:
            spark.sparkContext.setJobGroup(group, "counted")

        def __exit__(self, *exc: object) -> None:
            spark.sparkContext.setJobGroup("", "")

        @property
        def jobs(self) -> int:
            return len(tracker.getJobIdsForGroup(group))

    yield Counter()
    for k, v in before.items():
        spark.conf.set(k, v)


def test_the_whole_catalog_runs_one_spark_job_per_pass(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    generated_warehouse: str,
    job_counter: Any,
) -> None:
    plan = compile_plan(catalog)
    with job_counter:
        results = compute_passes(
            spark, sink, catalog, plan, generated_warehouse, LAST_DAY, LAST_DAY
        )
    assert len(plan.passes) == 7
    assert job_counter.jobs == len(plan.passes)
    assert set(results) == {p.name for p in plan.passes}


def _rows(df: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    key = ("metric", "period", "window", "slice_id")
    values = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper")
    return {tuple(r[k] for k in key): tuple(r[v] for v in values) for r in df.collect()}


#: One metric of every type (and a join source, a cross-source rate, a derived metric).
ONE_OF_EACH = [
    "views", "avg_watch_seconds", "violative_view_rate", "violative_view_rate_hourly",
    "active_viewers", "videos_viewed_approx", "time_to_action_p90", "removed_within_24h_rate",
    "user_reports_per_1k_views", "overturned_per_1k_actions",
]  # fmt: skip


def test_fused_results_equal_metric_by_metric_results(
    spark: SparkSession, sink: DeltaSink, catalog: Catalog, generated_warehouse: str
) -> None:
    day = LAST_DAY
    plan = compile_plan(catalog)
    fused = _rows(compute_metric_rows(catalog, plan, compute_passes(
        spark, sink, catalog, plan, generated_warehouse, day, day)))  # fmt: skip
    single: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for name in ONE_OF_EACH:
        one = compile_plan(catalog, [name])
        rows = _rows(compute_metric_rows(catalog, one, compute_passes(
            spark, sink, catalog, one, generated_warehouse, day, day)))  # fmt: skip
        single.update({k: v for k, v in rows.items() if k[0] == name})
    fused = {k: v for k, v in fused.items() if k[0] in ONE_OF_EACH}
    assert len(fused) > 300
    assert {k[0] for k in fused} == set(ONE_OF_EACH)
    assert fused.keys() == single.keys()
    for key, values in fused.items():
        for got, want in zip(values, single[key], strict=True):
            assert (got is None and want is None) or got == pytest.approx(want, rel=1e-12), key


def _table(warehouse: str) -> DeltaTable:
    return DeltaTable(os.path.join(warehouse, METRIC_VALUES))


def test_rerun_replaces_a_date_and_a_backfill_never_double_counts(
    spark: SparkSession, sink: DeltaSink, catalog: Catalog, generated_warehouse: str, tmp_path: Path
) -> None:
    warehouse = str(tmp_path)
    os.symlink(os.path.join(generated_warehouse, "raw"), os.path.join(warehouse, "raw"))
    plan = compile_plan(catalog, ["violative_view_rate", "active_viewers", "suspicious_login_rate"])
    day, before = LAST_DAY, LAST_DAY - dt.timedelta(days=1)

    first = run_metrics(spark, sink, catalog, plan, warehouse, day, day, run_id="first")
    rows_one_day = first.rows
    assert rows_one_day > 0 and first.gates and all(g.passed for g in first.gates)
    again = run_metrics(spark, sink, catalog, plan, warehouse, day, day, run_id="again")
    table = _table(warehouse).to_pandas()
    assert len(table) == rows_one_day == again.rows
    assert set(table["run_id"]) == {"again"}

    backfill = run_metrics(spark, sink, catalog, plan, warehouse, before, day, run_id="backfill")
    table = _table(warehouse).to_pandas()
    assert len(table) == backfill.rows
    assert set(table["run_id"]) == {"backfill"}
    on_day = table[table["date"] == day]
    assert len(on_day) == rows_one_day
    assert not table.duplicated(["date", "metric", "window", "slice_id", "period_start"]).any()
    # Other metrics' partitions of the same date are left alone by a selective run.
    other = compile_plan(catalog, ["views"])
    run_metrics(spark, sink, catalog, other, warehouse, day, day, run_id="views-only")
    table = _table(warehouse).to_pandas()
    assert set(table[table["metric"] == "violative_view_rate"]["run_id"]) == {"backfill"}
    assert set(table[table["metric"] == "views"]["run_id"]) == {"views-only"}
    versions = dict(zip(table["metric"], table["definition_version"], strict=False))
    assert versions["views"] == catalog.metric_version("views")


def test_a_failing_gate_stops_the_write(
    spark: SparkSession, sink: DeltaSink, catalog: Catalog, generated_warehouse: str, tmp_path: Path
) -> None:
    warehouse = str(tmp_path)
    os.symlink(os.path.join(generated_warehouse, "raw"), os.path.join(warehouse, "raw"))
    plan = compile_plan(catalog, ["views"])
    run_metrics(spark, sink, catalog, plan, warehouse, LAST_DAY, LAST_DAY, run_id="good")
    version = _table(warehouse).version()
    after_the_data = LAST_DAY + dt.timedelta(days=1)
    with pytest.raises(PublishGateError) as info:
        run_metrics(spark, sink, catalog, plan, warehouse, after_the_data, after_the_data)
    assert "[FAIL] source fresh: views: latest data on 2026-09-28" in str(info.value)
    assert "nothing was written" in str(info.value)
    assert _table(warehouse).version() == version

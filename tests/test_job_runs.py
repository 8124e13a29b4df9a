"""Scheduled-job behaviour through the command line: the job_runs log (failed runs too),
exit statuses, chunked backfills and restatement of exactly the stale dates."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from jobs.cli import main
from jobs.core.failures import EXIT_NOT_READY, EXIT_USAGE
from jobs.core.run_log import JOB_RUNS
from jobs.metrics.job import METRIC_VALUES
from jobs.metrics.loader import load_catalog
from jobs.metrics.planner import compile_plan
from jobs.metrics.restatement import RESTATEMENTS
from tests.conftest import REPO_ROOT

LAST_DAY = dt.date(2026, 9, 28)
#: Metrics over the dense sources of the small generated dataset.
METRICS = "views,violative_view_rate"


@pytest.fixture
def warehouse(fresh_warehouse: str) -> str:
    return fresh_warehouse


def cli(warehouse: str, *args: str) -> int:
    return main([args[0], "--env", "test", "--warehouse", warehouse, *args[1:]])


def table(warehouse: str, name: str) -> DeltaTable:
    return DeltaTable(os.path.join(warehouse, name))


def runs(warehouse: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table(warehouse, JOB_RUNS).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["started_at"])


def test_a_successful_run_is_logged_with_dates_version_rows_and_stages(warehouse: str) -> None:
    assert (
        cli(warehouse, "run", "--date", str(LAST_DAY), "--metrics", METRICS, "--run-id", "r1") == 0
    )
    (run,) = runs(warehouse)
    metric_values = table(warehouse, METRIC_VALUES).to_pandas()
    catalog = load_catalog(REPO_ROOT / "metric_defs")
    plan = compile_plan(catalog, METRICS.split(","))
    assert run["run_id"] == "r1" and set(metric_values["run_id"]) == {"r1"}
    assert (run["job"], run["status"], run["exit_code"], run["error"]) == (
        "metrics",
        "succeeded",
        0,
        None,
    )
    assert run["dates"] == [LAST_DAY] and run["first_date"] == run["last_date"] == LAST_DAY
    assert run["definitions_version"] == catalog.definitions_version(plan.metrics)
    assert dict(run["rows_written"]) == {METRIC_VALUES: len(metric_values)}
    stages = [s["name"] for s in run["stages"]]
    assert any(s.startswith("[pass 1/1] views") for s in stages) and "publish gates" in stages
    assert all(s["ok"] and s["seconds"] >= 0 for s in run["stages"])
    assert run["duration_s"] > 0 and run["finished_at"] > run["started_at"]
    assert run["command"].startswith("safety-metrics run --env test --warehouse")
    assert (run["env"], run["master"], run["delta_backend"]) == ("test", "local[2]", "delta-rs")


def test_failed_runs_are_logged_with_their_exit_status_and_write_nothing(
    warehouse: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after_the_data = LAST_DAY + dt.timedelta(days=1)
    code = cli(warehouse, "run", "--date", str(after_the_data), "--metrics", METRICS)
    assert code == EXIT_NOT_READY
    said = capsys.readouterr().err
    assert "safety-metrics: data not ready: no data for 2026-09-29 yet in views" in said
    assert "safety-metrics: run failed (exit status 75)" in said
    bad_defs = tmp_path / "bad_defs"
    shutil.copytree(REPO_ROOT / "metric_defs", bad_defs)
    content = (bad_defs / "content.yaml").read_text()
    (bad_defs / "content.yaml").write_text(content.replace("type: ratio", "type: ration", 1))
    assert cli(warehouse, "run", "--defs", str(bad_defs), "--date", str(LAST_DAY)) == EXIT_USAGE
    assert "has type 'ration'; did you mean 'ratio'?" in capsys.readouterr().err
    not_ready, bad_input = runs(warehouse)
    assert (not_ready["status"], not_ready["exit_code"]) == ("failed", 75)
    assert not_ready["error"].startswith("data not ready: no data for 2026-09-29 yet in views")
    assert (bad_input["status"], bad_input["exit_code"]) == ("failed", 2)
    assert "content.yaml" in bad_input["error"]
    assert not os.path.exists(os.path.join(warehouse, METRIC_VALUES))
    assert dict(not_ready["rows_written"]) == dict(bad_input["rows_written"]) == {}


def test_a_backfill_commits_chunk_by_chunk_and_counts_each_date_once(warehouse: str) -> None:
    first = LAST_DAY - dt.timedelta(days=2)
    args = ["--start", str(first), "--end", str(LAST_DAY), "--metrics", METRICS]
    assert cli(warehouse, "backfill", *args, "--chunk-days", "2") == 0
    values = table(warehouse, METRIC_VALUES)
    assert values.version() == 1  # two chunks: two commits
    rows = values.to_pandas()
    assert sorted(set(rows["date"])) == [first + dt.timedelta(days=i) for i in range(3)]
    assert not rows.duplicated(["date", "metric", "window", "slice_id", "period_start"]).any()
    # Again, as one chunk: the same rows, nothing doubled.
    assert cli(warehouse, "backfill", *args, "--chunk-days", "7") == 0
    again = table(warehouse, METRIC_VALUES).to_pandas()
    assert len(again) == len(rows)
    key = ["date", "metric", "window", "slice_id", "period_start"]
    left = rows.drop(columns=["run_id", "computed_at"]).sort_values(key).reset_index(drop=True)
    right = again.drop(columns=["run_id", "computed_at"]).sort_values(key).reset_index(drop=True)
    assert left.equals(right)
    backfill = runs(warehouse)[-1]
    assert backfill["job"] == "backfill" and len(backfill["dates"]) == 3
    assert dict(backfill["rows_written"]) == {METRIC_VALUES: len(rows)}


def test_restate_recomputes_exactly_the_dates_whose_definition_changed(
    warehouse: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = LAST_DAY - dt.timedelta(days=1)
    range_args = ["--start", str(first), "--end", str(LAST_DAY)]
    assert cli(warehouse, "run", *range_args, "--metrics", METRICS, "--run-id", "old") == 0
    # One more date of views alone, computed later.
    before = LAST_DAY - dt.timedelta(days=3)
    assert cli(warehouse, "run", "--date", str(before), "--metrics", "views", "--run-id", "v") == 0
    defs = tmp_path / "defs"
    shutil.copytree(REPO_ROOT / "metric_defs", defs)
    content = (defs / "content.yaml").read_text()
    changed = content.replace(
        "numerator: {agg: count, filter: is_violative}",
        'numerator: {agg: count, filter: "is_violative AND watch_seconds > 0"}',
        1,
    )
    assert changed != content
    (defs / "content.yaml").write_text(changed)
    version_before = table(warehouse, METRIC_VALUES).version()
    capsys.readouterr()

    assert (
        cli(warehouse, "run", "--defs", str(defs), "--restate", "--dry-run", "--metrics", METRICS)
        == 0
    )
    listed = capsys.readouterr().out
    assert "3 stale (date, metric) cells on 3 dates, in 2 recomputation(s):" in listed
    assert table(warehouse, METRIC_VALUES).version() == version_before  # dry run: nothing

    assert (
        cli(
            warehouse,
            "run",
            "--defs",
            str(defs),
            "--restate",
            "--metrics",
            METRICS,
            "--run-id",
            "re",
        )
        == 0
    )
    rows = table(warehouse, METRIC_VALUES).to_pandas()
    catalog = load_catalog(defs)
    vvr = rows[rows["metric"] == "violative_view_rate"]
    views = rows[rows["metric"] == "views"]
    # The changed metric on every stored date (and on the date it was missing), nothing else.
    assert set(vvr["date"]) == {before, first, LAST_DAY}
    assert set(vvr["run_id"]) == {"re"}
    assert set(vvr["definition_version"]) == {catalog.metric_version("violative_view_rate")}
    assert set(views[views["date"] != before]["run_id"]) == {"old"}
    assert set(views[views["date"] == before]["run_id"]) == {"v"}
    restated = table(warehouse, RESTATEMENTS).to_pyarrow_table().to_pylist()
    assert sorted((r["date"], r["metric"], r["stored_version"] is None) for r in restated) == [
        (before, "violative_view_rate", True),
        (first, "violative_view_rate", False),
        (LAST_DAY, "violative_view_rate", False),
    ]
    assert {r["run_id"] for r in restated} == {"re"}
    assert runs(warehouse)[-1]["job"] == "restate"
    # Now current: a second restatement finds nothing to do.
    assert cli(warehouse, "run", "--defs", str(defs), "--restate", "--metrics", METRICS) == 0
    assert "nothing to restate" in capsys.readouterr().out

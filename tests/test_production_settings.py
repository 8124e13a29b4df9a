"""Scheduler ergonomics without Spark: cluster conf, environment overrides, default dates,
exit statuses, chunked backfills, restatement planning, JSON logs and the spark-submit
package."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import load_config
from jobs.core.failures import (
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_NOT_READY,
    EXIT_SIGTERM,
    EXIT_USAGE,
    JobInterrupted,
    UsageError,
    outcome_of,
)
from jobs.core.located_yaml import InputError
from jobs.core.logs import JsonFormatter, RunContext
from jobs.core.run_dates import DataNotReadyError, check_landed, resolve_date, yesterday_utc
from jobs.metrics.definitions import SourceDef
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.gates import source_volume
from jobs.metrics.loader import load_catalog
from jobs.metrics.restatement import Restatement, StaleCell, restatements, stale_cells
from jobs.metrics.runner import date_chunks, marking_landed
from jobs.submit import use_shipped_folders
from jobs.submit.package import ENTRY_POINTS, build_package
from tests.conftest import REPO_ROOT

D = dt.date


def test_cluster_conf_leaves_the_master_to_spark_submit_and_computes_yesterday() -> None:
    config = load_config("cluster", conf_dir=REPO_ROOT / "conf", environ={})
    assert config.spark.master is None
    assert config.default_date == "yesterday"
    assert config.log_format == "json"
    local = load_config("local", conf_dir=REPO_ROOT / "conf", environ={})
    assert local.default_date == "latest"  # the bundled dataset ends in the past


def test_environment_overrides_paths_master_and_run_settings() -> None:
    env = {
        "SAFETY_METRICS_WAREHOUSE": "s3://bucket/wh",
        "SAFETY_METRICS_MASTER": "yarn",
        "SAFETY_METRICS_DELTA_BACKEND": "delta-rs",
        "SAFETY_METRICS_LOG_FORMAT": "json",
        "SAFETY_METRICS_DEFAULT_DATE": "yesterday",
    }
    config = load_config("local", conf_dir=REPO_ROOT / "conf", environ=env)
    assert (config.warehouse, config.spark.master) == ("s3://bucket/wh", "yarn")
    assert (config.delta_backend, config.log_format, config.default_date) == (
        "delta-rs",
        "json",
        "yesterday",
    )
    described = config.describe()
    assert described["overridden_by"] == sorted(env, key=list(env).index)
    assert described["warehouse"] == "s3://bucket/wh"


def test_a_bad_environment_value_names_the_variable() -> None:
    env = {"SAFETY_METRICS_DEFAULT_DATE": "tomorrow", "SAFETY_METRICS_LOG_LEVEL": "loud"}
    with pytest.raises(InputError) as info:
        load_config("local", conf_dir=REPO_ROOT / "conf", environ=env)
    lines = sorted(str(p) for p in info.value.problems)
    assert lines == [
        "environment variable SAFETY_METRICS_DEFAULT_DATE: E005 unknown value 'tomorrow'; "
        "use one of: yesterday, latest",
        "environment variable SAFETY_METRICS_LOG_LEVEL: E005 unknown value 'LOUD'; "
        "use one of: DEBUG, INFO, WARNING, ERROR",
    ]


def test_a_bad_default_date_in_a_conf_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "prod.yaml").write_text("warehouse: w\ndefault_date: today\n")
    with pytest.raises(InputError, match=r"prod.yaml:2:1: E005 unknown default_date 'today'"):
        load_config("prod", conf_dir=tmp_path, environ={})


def test_yesterday_is_the_utc_calendar_day_before_now() -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    # 08:30 on Dec 2 in Tokyo is still Dec 1 in UTC: yesterday is Nov 30.
    assert yesterday_utc(dt.datetime(2026, 12, 2, 8, 30, tzinfo=tokyo)) == D(2026, 11, 30)
    assert yesterday_utc(dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)) == D(2026, 12, 1)
    assert resolve_date("latest", lambda: D(2026, 10, 26)) == D(2026, 10, 26)
    assert resolve_date(D(2026, 1, 2), lambda: D(2000, 1, 1)) == D(2026, 1, 2)


def test_a_date_past_a_sources_data_is_not_ready() -> None:
    check_landed(D(2026, 10, 1), {"views": D(2026, 10, 1), "reports": D(2026, 10, 3)})
    with pytest.raises(DataNotReadyError) as info:
        check_landed(
            D(2026, 10, 2), {"views": D(2026, 10, 1), "reports": None, "x": D(2026, 11, 1)}
        )
    assert str(info.value).startswith(
        "no data for 2026-10-02 yet in reports (empty), views (latest 2026-10-01); retry"
    )


def test_a_source_that_may_be_empty_neither_holds_back_nor_gates_a_date(
    spark: SparkSession,
) -> None:
    views = SourceDef("views", "delta", "raw/views", "ts", "viewer_id")
    live = SourceDef("live", "delta", "raw/live", "ts", "session_id", may_be_empty=True)
    assert marking_landed([views, live]) == [views]
    assert marking_landed([live]) == [live]  # with nothing else to go by, it still counts
    # Not even read: this frame has no `ts` column.
    nothing = spark.createDataFrame([(1,)], "x int")
    gates = source_volume(live, nothing, [D(2026, 10, 1)], 28, 0.5, 2.0)
    assert [(g.name, g.passed) for g in gates] == [
        ("source fresh: live", True),
        ("source volume: live", True),
    ]
    assert all("may_be_empty" in g.detail for g in gates)


def test_each_failure_has_its_exit_status() -> None:
    gate = PublishGateError([GateResult("unique keys", False, "2 duplicates")])
    statuses = {
        "input": outcome_of(InputError([])).exit_code,
        "usage": outcome_of(UsageError("give --date")).exit_code,
        "gate": outcome_of(gate).exit_code,
        "not ready": outcome_of(DataNotReadyError("later")).exit_code,
        "sigterm": outcome_of(JobInterrupted()).exit_code,
        "bug": outcome_of(ZeroDivisionError("division by zero")).exit_code,
    }
    assert statuses == {
        "input": EXIT_USAGE,
        "usage": EXIT_USAGE,
        "gate": EXIT_GATE,
        "not ready": EXIT_NOT_READY,
        "sigterm": EXIT_SIGTERM,
        "bug": EXIT_FAILED,
    }
    bug = outcome_of(ZeroDivisionError("division by zero\nmore"))
    assert bug.message == "error: ZeroDivisionError: division by zero" and bug.traceback
    assert not outcome_of(gate).traceback


def test_backfill_chunks_cover_the_range_once() -> None:
    chunks = date_chunks(D(2026, 9, 1), D(2026, 9, 17), 7)
    assert chunks == [
        (D(2026, 9, 1), D(2026, 9, 7)),
        (D(2026, 9, 8), D(2026, 9, 14)),
        (D(2026, 9, 15), D(2026, 9, 17)),
    ]
    assert date_chunks(D(2026, 9, 1), D(2026, 9, 3), None) == [(D(2026, 9, 1), D(2026, 9, 3))]
    with pytest.raises(UsageError, match="before --start"):
        date_chunks(D(2026, 9, 3), D(2026, 9, 1), 7)


def test_stale_cells_are_changed_versions_and_missing_metrics() -> None:
    catalog = load_catalog(REPO_ROOT / "metric_defs")
    views, vvr = catalog.metric_version("views"), catalog.metric_version("violative_view_rate")
    stored = {
        (D(2026, 9, 1), "views"): frozenset({views}),
        (D(2026, 9, 1), "violative_view_rate"): frozenset({"old"}),
        (D(2026, 9, 2), "views"): frozenset({views, "old"}),  # mixed: a partial older run
        (D(2026, 9, 2), "violative_view_rate"): frozenset({vvr}),
        (D(2026, 9, 3), "views"): frozenset({views}),  # vvr missing that date
        (D(2026, 9, 3), "retired_metric"): frozenset({"x"}),
    }
    cells = stale_cells(stored, catalog, ["views", "violative_view_rate"])
    assert cells == [
        StaleCell(D(2026, 9, 1), "violative_view_rate", "old", vvr),
        StaleCell(
            D(2026, 9, 2), "views", f"{views},old" if views < "old" else f"old,{views}", views
        ),
        StaleCell(D(2026, 9, 3), "violative_view_rate", None, vvr),
    ]


def test_restatements_merge_consecutive_dates_with_the_same_metrics() -> None:
    def cell(day: int, metric: str) -> StaleCell:
        return StaleCell(D(2026, 9, day), metric, "old", "new")

    cells = [cell(1, "a"), cell(2, "a"), cell(3, "a"), cell(3, "b"), cell(4, "a"), cell(4, "b")]
    cells += [cell(6, "a"), cell(8, "a")]  # gaps: runs of their own
    assert restatements(cells) == [
        Restatement(("a",), D(2026, 9, 1), D(2026, 9, 2)),
        Restatement(("a", "b"), D(2026, 9, 3), D(2026, 9, 4)),
        Restatement(("a",), D(2026, 9, 6), D(2026, 9, 6)),
        Restatement(("a",), D(2026, 9, 8), D(2026, 9, 8)),
    ]
    assert restatements([]) == []


def test_the_definitions_version_changes_with_any_metric() -> None:
    catalog = load_catalog(REPO_ROOT / "metric_defs")
    names = ["views", "violative_view_rate"]
    assert catalog.definitions_version(names) == catalog.definitions_version(reversed(names))
    assert catalog.definitions_version(names) != catalog.definitions_version(["views"])


def test_json_log_lines_carry_the_run_and_the_stage_timing() -> None:
    context = RunContext()
    context.run_id, context.job = "r-1", "metrics"
    record = logging.LogRecord("jobs.x", logging.INFO, __file__, 1, "%s done", ("pass",), None)
    record.stage, record.seconds, record.event = "pass", 1.5, "stage_done"
    context.filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "pass done" and entry["level"] == "INFO"
    assert (entry["run_id"], entry["job"], entry["stage"], entry["seconds"]) == (
        "r-1",
        "metrics",
        "pass",
        1.5,
    )
    assert entry["time"].endswith("Z")


def test_the_package_holds_code_entry_points_definitions_and_conf(tmp_path: Path) -> None:
    built = build_package(tmp_path / "dist", REPO_ROOT / "metric_defs")
    names = set(zipfile.ZipFile(built.code_zip).namelist())
    assert {"jobs/cli.py", "jobs/submit/__init__.py", "udfs/anomaly_detectors.py"} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert sorted(p.stem for p in built.entry_points) == sorted(ENTRY_POINTS)
    assert (built.folder / "metric_defs" / "catalog.yaml").is_file()
    assert (built.folder / "conf" / "cluster.yaml").is_file()
    assert "deltalake" in (built.folder / "requirements.txt").read_text()
    assert "spark-submit --master spark://HOST:7077" in (built.folder / "SUBMIT.md").read_text()
    # The zip alone provides the packages, and an entry point finds the shipped folders.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jobs.cli, udfs.anomaly_detectors;"
        "from jobs.submit import use_shipped_folders; import os;"
        "use_shipped_folders(sys.argv[2]); print(jobs.cli.__file__);"
        "print(os.environ['SAFETY_METRICS_DEFS_DIR']); print(os.environ['SAFETY_METRICS_CONF_DIR'])"
    )
    entry = built.folder / "entrypoints" / "daily_metrics.py"
    shown = subprocess.run(
        [sys.executable, "-c", probe, str(built.code_zip), str(entry)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert shown == [
        str(built.code_zip / "jobs" / "cli.py"),
        str(built.folder / "metric_defs"),
        str(built.folder / "conf"),
    ]


def test_shipped_folders_do_not_override_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg" / "entrypoints").mkdir(parents=True)
    (tmp_path / "pkg" / "metric_defs").mkdir()
    (tmp_path / "cwd" / "metric_defs").mkdir(parents=True)  # e.g. shipped with --archives
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("SAFETY_METRICS_DEFS_DIR", raising=False)
    monkeypatch.delenv("SAFETY_METRICS_CONF_DIR", raising=False)
    use_shipped_folders(str(tmp_path / "pkg" / "entrypoints" / "daily_metrics.py"))
    import os

    assert "SAFETY_METRICS_DEFS_DIR" not in os.environ  # ./metric_defs wins
    assert "SAFETY_METRICS_CONF_DIR" not in os.environ  # no conf/ shipped: the default lookup

"""The `safety-metrics generate` command: help, flag errors, and a real small run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs.cli import build_parser, main
from jobs.core.delta import DeltaSink
from jobs.generate.job import GROUND_TRUTH_FILE, generate
from jobs.generate.params import GeneratorParams
from jobs.generate.tables import build_tables, partition_columns
from tests.delta_helpers import delta_rows, spark_rows


def test_generate_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "generate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for action in commands.choices["generate"]._actions:
        for flag in action.option_strings:
            assert flag in out
        assert action.help, f"{action.option_strings} has no help text"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale", "0"], "argument --scale: must be greater than 0, got '0'"),
        (["--scale", "big"], "argument --scale: expected a number, got 'big'"),
        (["--days", "7"], "days must be an integer in [28, 730]"),
        (["--start-date", "2026-13-01"], "argument --start-date: expected a date as YYYY-MM-DD"),
        (["--partitions", "-1"], "argument --partitions: must be at least 1"),
        (["--sacle", "2"], "unrecognized arguments: --sacle"),
    ],
)
def test_bad_flag_values_get_a_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", *argv]) == 2  # a usage error, before any work
    assert message in capsys.readouterr().err


def test_generate_writes_every_table_and_the_ground_truth(
    spark: SparkSession, tmp_path: Path
) -> None:
    params = GeneratorParams(scale=0.01, days=28)
    out = str(tmp_path / "raw")
    summary = generate(spark, DeltaSink.for_session(spark), params, out)
    expected = build_tables(spark, params)
    assert set(summary.rows) == set(expected)
    for name in expected:
        table = DeltaTable(f"{out}/{name}")
        assert table.metadata().partition_columns == partition_columns()[name]
        assert summary.rows[name] == table.to_pyarrow_table().num_rows
    # Row-for-row check on two tables (the rest share the same write path).
    for name in ("accounts", "moderation_actions"):
        assert delta_rows(f"{out}/{name}") == spark_rows(expected[name])
    truth = json.loads((Path(out) / GROUND_TRUTH_FILE).read_text())
    assert {e["experiment_id"] for e in truth["experiments"]} >= {
        "exp_ranking_safety_v2",
        "exp_report_button_v3",
    }
    assert {i["kind"] for i in truth["incidents"]} == {"spike", "level_shift", "drift"}
    # --if-missing: the same parameters are not generated twice.
    again = generate(spark, DeltaSink.for_session(spark), params, out, only_if_missing=True)
    assert again.skipped
    assert DeltaTable(f"{out}/accounts").version() == 0


def test_generate_can_write_only_some_tables(spark: SparkSession, tmp_path: Path) -> None:
    """Benchmarks that read a few tables generate only those (same rows as a full run)."""
    params = GeneratorParams(scale=0.01, days=28)
    out = tmp_path / "raw"
    sink = DeltaSink.for_session(spark)
    summary = generate(spark, sink, params, str(out), tables=["uploads", "security_events"])
    assert set(summary.rows) == {"uploads", "security_events"}
    assert sorted(p.name for p in out.iterdir()) == [
        GROUND_TRUTH_FILE,
        "security_events",
        "uploads",
    ]
    full = build_tables(spark, params)
    assert delta_rows(str(out / "uploads")) == spark_rows(full["uploads"])
    with pytest.raises(ValueError, match=r"unknown tables \['view'\]"):
        generate(spark, sink, params, str(out), tables=["view"])
    with pytest.raises(ValueError, match="only_if_missing"):
        generate(spark, sink, params, str(out), tables=["uploads"], only_if_missing=True)

"""`experiment --units`: every bad cell of a user's unit table is a located error (file,
line or row, column, value), all of them at once, exit status 2, no Java trace, nothing
written. Line numbers are checked against the file's lines as Python reads them, also when
Spark reads the file in many splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.failures import EXIT_USAGE
from jobs.experiments.unit_file import checked_units
from jobs.experiments.unit_file_read import SPLIT, UnitTableError, read_located

HEADER = "unit,variant,metric,numerator,denominator,covariate,covariate_denominator"


def good_rows(n: int = 12) -> list[str]:
    """n units, alternating arms, fractional values."""
    return [
        f"{u},{'treatment' if u % 2 else 'control'},m,{u * 0.25 + 1},{u % 3 + 1},{u * 0.5},2"
        for u in range(n)
    ]


def run_units(
    path: Path, warehouse: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    code = main(
        ["experiment", "--env", "test", "--warehouse", str(warehouse), "--units", str(path),
         "--control", "control", "--replicates", "50", *extra]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_refused(code: int, output: str, warehouse: Path) -> None:
    assert code == EXIT_USAGE, output
    assert "Traceback" not in output and "at org.apache" not in output, output
    assert not os.path.exists(warehouse / "experiments"), "something was written"


# column index in HEADER, bad cell, the message's words
BAD_CELLS = [
    ("numerator", "", "is empty"),
    ("denominator", "", "is empty"),
    ("covariate", "", "is empty"),
    ("covariate_denominator", "", "is empty"),
    ("unit", "", "is empty"),
    ("variant", "", "is empty"),
    ("metric", "", "is empty"),
    ("numerator", "abc", "('abc') is not a number"),
    ("covariate", "1,5", "more fields than the header's 7"),
    ("numerator", "NaN", "('NaN') is not a finite number"),
    ("denominator", "nan", "('nan') is not a finite number"),
    ("covariate", "inf", "('inf') is not a finite number"),
    ("numerator", "-Infinity", "('-Infinity') is not a finite number"),
    ("denominator", "-2", "('-2') is negative"),
    ("covariate_denominator", "-0.5", "('-0.5') is negative"),
    ("numerator", "2e12", "('2e12') is not below 1e+12"),
]


@pytest.mark.parametrize(("column", "cell", "words"), BAD_CELLS)
def test_a_bad_cell_is_named_with_file_line_column_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, cell: str, words: str
) -> None:
    rows = good_rows()
    fields = rows[4].split(",")
    fields[HEADER.split(",").index(column)] = cell
    rows[4] = ",".join(fields)
    path = tmp_path / "units.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    code, output = run_units(path, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    line = 6  # header, then rows[0] on line 2
    if "more fields" in words:
        assert f"{path}:{line}: {words}" in output, output
    else:
        assert f"{path}:{line}: column '{column}' {words}" in output, output


def test_every_problem_is_reported_at_once_with_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = good_rows(80)
    for i in range(0, 60, 2):
        rows[i] = f"{i},control,m,,1,0,2"  # an empty numerator
    rows[61] = "61,treatment,m,1,x,0,2"
    rows[63] = "61,treatment,m,1,1,0,2"  # unit 61 again
    path = tmp_path / "many.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    code, output = run_units(path, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert f"{path}:2: column 'numerator' is empty" in output
    assert "31 bad cells in all (the first 20 rows shown)" in output
    assert "numerator empty: 30, denominator not a number: 1" in output
    assert f"(unit, metric) must be unique; repeated: (61, m) at {path}:63, {path}:65" in output


def test_only_the_control_has_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [r for r in good_rows() if ",control," in r]
    path = tmp_path / "control_only.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    code, output = run_units(path, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert "no treatment variant has units" in output
    assert "variants found: control (6 units)" in output


def test_a_misspelt_control_and_a_unit_in_two_variants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*good_rows(), "3,control,m2,1,1,0,2"]
    path = tmp_path / "two.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    code = main(
        ["experiment", "--env", "test", "--warehouse", str(tmp_path / "wh"), "--units",
         str(path), "--control", "contrl"]
    )  # fmt: skip
    output = capsys.readouterr().err
    assert_refused(code, output, tmp_path / "wh")
    assert "the control 'contrl' has no units" in output and "did you mean 'control'?" in output
    assert f"units in more than one variant: 3 (control at {path}:14, treatment at {path}:5)" in (
        output
    )


def test_an_arm_whose_denominators_are_all_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zero denominator is a unit without the denominator's events (allowed); an arm with
    nothing but zeros has no ratio."""
    rows = [r if ",control," in r else r.rsplit(",", 3)[0] + ",0,0,2" for r in good_rows()]
    path = tmp_path / "zeros.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    code, output = run_units(path, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert "metric 'm', variant 'treatment': the denominator is 0 for all 6 units" in output


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_units(tmp_path / "nowhere.csv", tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert "cannot read it as a unit table" in output


def test_line_numbers_hold_across_many_splits(spark: SparkSession, tmp_path: Path) -> None:
    """A 40 KB file read in 4 KB splits (lines cut by split boundaries, blank lines, CRLF,
    a byte order mark):
    every reported line holds the offending value, by Python's own reading of the file."""
    rng = np.random.default_rng(8)
    rows = good_rows(1500)
    bad = sorted(int(i) for i in rng.choice(len(rows), 25, replace=False))
    for i in bad:
        rows[i] = rows[i].rsplit(",", 4)[0] + ",oops" + f"{i},1,0,2"
    for i in (3, 700, 701):
        rows.insert(i, "")
    path = tmp_path / "big.csv"
    # A spreadsheet's export: byte order mark, CRLF line ends.
    path.write_bytes(("\ufeff" + "\r\n".join([HEADER, *rows]) + "\r\n").encode())
    sink = DeltaSink.for_session(spark, "delta-rs")
    old = str(spark.conf.get("spark.sql.files.maxPartitionBytes"))
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        table = read_located(spark, sink, str(path))
        assert table.rows.select(SPLIT).distinct().count() >= 8  # splits
        with pytest.raises(UnitTableError) as caught:
            checked_units(table, "e", "control")
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    message = str(caught.value)
    lines = path.read_text().splitlines()
    found = [p for p in message.splitlines() if p.startswith(f"  {path}:")]
    assert len(found) == 20 and "25 bad cells in all" in message
    for problem in found:
        line = int(problem.strip().split(":")[1])
        value = problem.split("('")[1].split("')")[0]
        assert value in lines[line - 1].split(","), (problem, lines[line - 1])


def test_parquet_and_delta_rows_are_located(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parquet: 'file row N', N counted from 1 in the file (several row groups); a Delta
    table through its live files likewise."""
    n = 40
    numerator = [float(u) + 0.5 for u in range(n)]
    numerator[17], numerator[33] = float("nan"), None  # type: ignore[call-overload]
    table = pa.table(
        {
            "unit": list(range(n)),
            "variant": ["control" if u % 2 else "treatment" for u in range(n)],
            "metric": ["m"] * n,
            "numerator": numerator,
        }
    )
    path = tmp_path / "units.parquet"
    pq.write_table(table, path, row_group_size=7)
    code, output = run_units(path, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert f"{path} row 18: column 'numerator' (nan) is not a finite number" in output
    assert f"{path} row 34: column 'numerator' is empty" in output
    delta = tmp_path / "units_delta"
    write_deltalake(str(delta), table)
    code, output = run_units(delta, tmp_path / "wh", capsys)
    assert_refused(code, output, tmp_path / "wh")
    assert "row 18: column 'numerator' (nan) is not a finite number" in output
    assert f"{delta}/part-" in output

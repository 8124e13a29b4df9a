"""Source contracts in YAML, and definition files that define nothing: every mistake gets a
located error (file:line:col, code, key) with a did-you-mean where a name is close."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import InputError, parse_located
from jobs.experiments.loader import experiments_from_documents
from jobs.metrics.contract_defs import Check
from jobs.metrics.loader import catalog_from_documents, load_catalog
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker
from tests.conftest import REPO_ROOT

SOURCE = """\
dimensions: [country]
sources:
  views:
    path: {path}
    format: parquet
    time_column: ts
    date_column: day
    unit: viewer_id
    dimensions: [country]
    contract:
{contract}
metrics:
  - {{name: n, description: d, owner: o, source: views, type: count}}
"""
#: The contract starts on line 11 of SOURCE, indented by 6.
FIRST = 11


def source_with(contract: str, path: str = "/nowhere/views.parquet") -> str:
    body = textwrap.indent(textwrap.dedent(contract).strip("\n"), " " * 6)
    return SOURCE.format(path=path, contract=body)


def problems_of(contract: str) -> list[str]:
    _, problems = catalog_from_documents([parse_located(source_with(contract), "defs.yaml")])
    return [str(p) for p in problems]


def test_a_contract_is_read_with_its_policies_and_defaults() -> None:
    text = source_with(
        """
        unique: [view_id]
        not_null: {video_id: quarantine, surface: warn}
        range:
          watch: {min: 0, max: 86400, policy: quarantine}
          at: {min: 2026-01-01}
        allowed:
          surface: [feed, search]
          tier: {values: [1, 2], policy: warn}
        null_unit: fail
        future_tolerance: 30m
        """
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    contract = catalog.sources["views"].contract
    assert [(c.kind, c.columns, c.policy) for c in contract.checks] == [
        ("unique", ("view_id",), "fail"),
        ("not_null", ("video_id",), "quarantine"),
        ("not_null", ("surface",), "warn"),
        ("range", ("watch",), "quarantine"),
        ("range", ("at",), "fail"),
        ("allowed", ("surface",), "fail"),
        ("allowed", ("tier",), "warn"),
    ]
    assert contract.checks[3].rule() == ">= 0 and <= 86400"
    assert contract.checks[4].minimum == dt.date(2026, 1, 1)
    assert contract.checks[6].values == (1, 2)
    implicit = contract.all_checks("viewer_id", "ts", "day")[:4]
    assert [(c.kind, c.columns, c.policy) for c in implicit] == [
        ("null_unit", ("viewer_id",), "fail"),
        ("null_time", ("ts",), "quarantine"),
        ("time_outside_partition", ("ts", "day"), "quarantine"),
        ("future_time", ("ts",), "fail"),
    ]
    assert implicit[3].tolerance == dt.timedelta(minutes=30)
    assert implicit[3].rule() == "<= run start + 30m"


def test_a_source_without_a_contract_has_the_implicit_checks() -> None:
    text = SOURCE.format(path="/x", contract="      {}")
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    checks = catalog.sources["views"].contract.all_checks("viewer_id", "ts", None)
    assert [c.kind for c in checks] == ["null_unit", "null_time", "future_time"]
    assert checks[2] == Check(
        "future_time", ("ts",), "fail", tolerance=dt.timedelta(hours=1), declared=False
    )


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (
            "uniq: [view_id]",
            f"defs.yaml:{FIRST}:7: E002 unknown key 'uniq' in sources.views.contract; "
            "did you mean 'unique'?",
        ),
        (
            "range:\n  watch: {min: 0, policy: drop}",
            f"defs.yaml:{FIRST + 1}:25: E060 policy must be fail, quarantine or warn, got 'drop'",
        ),
        (
            "unique: {columns: [view_id], policy: quarantene}",
            f"defs.yaml:{FIRST}:36: E060 policy must be fail, quarantine or warn, got "
            "'quarantene'; did you mean 'quarantine'?",
        ),
        (
            "range:\n  watch: {mn: 0}",
            f"defs.yaml:{FIRST + 1}:17: E002 unknown key 'mn' in "
            "sources.views.contract.range.watch; did you mean 'min'?",
        ),
        (
            "range:\n  watch: {policy: warn}",
            f"defs.yaml:{FIRST + 1}:9: E060 range.watch needs 'min', 'max' or both (inclusive)",
        ),
        (
            "range:\n  watch: {min: 10, max: 1}",
            f"defs.yaml:{FIRST + 1}:26: E060 range.watch: max 1 is below min 10",
        ),
        (
            "range:\n  watch: {min: ten}",
            f"defs.yaml:{FIRST + 1}:17: E060 range.watch.min must be a number, a date or a time, "
            "got 'ten'",
        ),
        (
            "allowed:\n  surface: []",
            f"defs.yaml:{FIRST + 1}:9: E060 allowed.surface must be a non-empty list of values, "
            "got []",
        ),
        (
            "not_null: [viewer_id]",
            f"defs.yaml:{FIRST}:18: E060 'viewer_id' is the source's unit column, whose nulls "
            "'null_unit' checks; set its policy with `null_unit: fail`",
        ),
        (
            "null_time: warn",
            f"defs.yaml:{FIRST}:7: E060 null_time cannot be 'warn'",
        ),
        (
            "future_tolerance: an hour",
            f"defs.yaml:{FIRST}:7: E060 future_tolerance must be a duration like 30m, 1h or 1d, "
            "got 'an hour'",
        ),
        (
            "unique: 42",
            f"defs.yaml:{FIRST}:7: E060 contract.unique must be a list of column names, got 42",
        ),
    ],
)
def test_each_contract_mistake_gets_a_located_error(contract: str, expected: str) -> None:
    found = problems_of(contract)
    assert any(p.startswith(expected) for p in found), found


def test_a_partition_check_needs_a_date_column() -> None:
    text = source_with("time_outside_partition: fail").replace("    date_column: day\n", "")
    _, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert [str(p) for p in problems] == [
        f"defs.yaml:{FIRST - 1}:7: E060 source 'views' has no date_column, so no time can be "
        "outside its partition; declare the source's date_column, or remove this key"
    ]


@pytest.fixture(scope="module")
def views_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("contract-defs") / "views.parquet"
    table = pa.table(
        {
            "ts": pa.array([0], pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(1970, 1, 1)], pa.date32()),
            "view_id": [1],
            "viewer_id": [1],
            "country": ["BR"],
            "watch_seconds": [1.5],
            "surface": ["feed"],
            "tags": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    pq.write_table(table, path)
    return str(path)


def spark_problems(spark: SparkSession, contract: str, path: str) -> list[str]:
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), "/unused")
    _, problems = catalog_from_documents(
        [parse_located(source_with(contract, path), "defs.yaml")],
        lambda sources: SparkExpressionChecker(spark, read, sources),
    )
    return [str(p) for p in problems]


def test_a_valid_contract_resolves_against_the_real_columns(
    spark: SparkSession, views_path: str
) -> None:
    contract = """
        unique: [view_id]
        range: {watch_seconds: {min: 0}, ts: {min: 2020-01-01}}
        allowed: {surface: [feed, search]}
        """
    assert spark_problems(spark, contract, views_path) == []


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (
            "range:\n  watch_secs: {min: 0}",
            f"defs.yaml:{FIRST + 1}:9: E061 contract of source 'views' names column "
            "'watch_secs', which the source does not have; did you mean 'watch_seconds'?",
        ),
        (
            "unique: [veiw_id]",
            f"defs.yaml:{FIRST}:7: E061 contract of source 'views' names column 'veiw_id', "
            "which the source does not have; did you mean 'view_id'?",
        ),
        (
            "range:\n  surface: {min: 0}",
            f"defs.yaml:{FIRST + 1}:9: E062 contract range on 'surface': the column is string; "
            "a range needs a number, a date or a time",
        ),
        (
            "allowed:\n  surface: [feed, 1]",
            f"defs.yaml:{FIRST + 1}:9: E062 contract allowed on 'surface': value 1 is not a "
            "string (quote it to make it text)",
        ),
        (
            "range:\n  day: {min: 0}",
            f"defs.yaml:{FIRST + 1}:9: E062 contract range on 'day': bound 0 does not suit a "
            "date column",
        ),
        (
            "unique: [tags]",
            f"defs.yaml:{FIRST}:7: E062 contract unique on 'tags': a map<string,bigint> column "
            "cannot be a key",
        ),
    ],
)
def test_contract_columns_are_checked_against_the_source(
    spark: SparkSession, views_path: str, contract: str, expected: str
) -> None:
    found = spark_problems(spark, contract, views_path)
    assert found == [expected] or any(p.startswith(expected) for p in found), found


# --- files that define nothing ----------------------------------------------------------------


def test_an_empty_definitions_file_is_an_error(tmp_path: Path) -> None:
    for name in ("catalog.yaml", "sources.yaml"):
        (tmp_path / name).write_text((REPO_ROOT / "metric_defs" / name).read_text())
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(InputError) as info:
        load_catalog(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'empty.yaml'}:1:1: E016 definitions file is empty; give it at least one "
        "of settings, dimensions, slice_sets, sources, defaults, metrics, assignment_sources, "
        "experiments, or delete it"
    ]


def test_a_file_without_a_known_top_level_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("metrix:\n  - {name: a}\n")
    (tmp_path / "b.yaml").write_text("{}\n")
    with pytest.raises(InputError) as info:
        load_catalog(tmp_path)
    found = [str(p) for p in info.value.problems]
    assert found[:3] == [
        f"{tmp_path / 'a.yaml'}:1:1: E017 definitions file has no recognised top-level key, so "
        "it defines nothing; top-level keys: settings, dimensions, slice_sets, sources, "
        "defaults, metrics, assignment_sources, experiments",
        f"{tmp_path / 'a.yaml'}:1:1: E002 unknown key 'metrix' in the top level; did you mean "
        "'metrics'?",
        f"{tmp_path / 'b.yaml'}:1:1: E017 definitions file has no recognised top-level key, so "
        "it defines nothing; top-level keys: settings, dimensions, slice_sets, sources, "
        "defaults, metrics, assignment_sources, experiments",
    ]


def test_the_experiments_loader_rejects_empty_files_too() -> None:
    catalog = load_catalog(REPO_ROOT / "metric_defs")
    with pytest.raises(InputError) as info:
        experiments_from_documents([parse_located("", "empty.yaml")], catalog)
    assert [p.code for p in info.value.problems] == ["E016"]


def test_validate_names_the_empty_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "defs.yaml").write_text("")
    assert main(["validate", "--defs", str(tmp_path), "--env", "test"]) == 2
    assert (
        f"{tmp_path / 'defs.yaml'}:1:1: E016 definitions file is empty" in capsys.readouterr().err
    )

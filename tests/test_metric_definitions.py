"""Metric definitions: a valid catalog loads; every kind of mistake gets a located error
(file, line, key), all of them at once, with a did-you-mean where a name is close."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import InputError, parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import catalog_from_documents, find_cycles, load_catalog
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker

BASE = """\
settings: {{min_cell_size: 5}}
dimensions: [country, surface]
sources:
  views:
    path: {path}
    format: parquet
    time_column: ts
    unit: viewer_id
    dimensions: [country, surface]
  actions:
    path: {path}
    format: parquet
    time_column: ts
    unit: viewer_id
    join:
      - source: views
        on: viewer_id
        columns: [watch]
    dimensions: [country]
metrics:
  - name: vvr
    description: Violative view rate.
    owner: safety
    source: views
    type: ratio
    numerator: {{agg: count, filter: bad}}
    denominator: {{agg: count}}
    slices: [[], [country], [country, surface]]
  - name: watch
    description: Mean watch.
    owner: safety
    source: views
    type: mean
    value: watch
"""


def load(text: str, path: str = "/nowhere/views.parquet") -> Catalog:
    catalog, problems = catalog_from_documents(
        [parse_located(BASE.format(path=path) + text, "defs.yaml")]
    )
    if problems:
        raise InputError(problems)
    assert catalog is not None
    return catalog


def problems_of(text: str, base: bool = True) -> list[str]:
    source = BASE.format(path="/nowhere/views.parquet") + text if base else text
    _, problems = catalog_from_documents([parse_located(textwrap.dedent(source), "defs.yaml")])
    return [str(p) for p in problems]


def test_the_base_catalog_is_valid_and_normalised() -> None:
    catalog = load("")
    vvr = catalog.metrics["vvr"]
    assert vvr.proportion and vvr.ci == "delta"  # views are not independent rows
    assert vvr.slices == ((), ("country",), ("country", "surface"))
    watch = catalog.metrics["watch"]
    assert watch.denominator is not None and watch.denominator.filter == "(watch) IS NOT NULL"
    assert catalog.sources["actions"].joins[0].on == ("viewer_id",)  # `on:` is not a boolean


def test_source_flags_are_true_or_false() -> None:
    base = BASE.format(path="/nowhere/views.parquet")
    actions = "    unit: viewer_id\n    join:"
    assert base.count(actions) == 1
    flagged = base.replace(actions, "    unit: viewer_id\n    may_be_empty: true\n    join:")
    catalog, problems = catalog_from_documents([parse_located(flagged, "defs.yaml")])
    assert not problems and catalog is not None
    assert catalog.sources["actions"].may_be_empty
    assert not catalog.sources["views"].may_be_empty
    bad = base.replace(actions, "    unit: viewer_id\n    may_be_empty: sometimes\n    join:")
    assert problems_of(bad, base=False) == [
        "defs.yaml:15:5: E004 may_be_empty must be true or false, got 'sometimes'"
    ]


def test_the_default_catalog_is_valid() -> None:
    catalog = load_catalog(Path(__file__).resolve().parent.parent / "metric_defs")
    assert len(catalog.metrics) >= 20
    assert catalog.metric_version("views") != catalog.metric_version("violative_views")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, filtr: bad}\n",
            "defs.yaml:35:69: E002 unknown key 'filtr' in metrics.2; did you mean 'filter'?",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: ration}\n",
            "defs.yaml:35:56: E030 metric 'a' has type 'ration'; did you mean 'ratio'?",
        ),
        (
            "  - {name: a, description: d, owner: o, source: veiws, type: count}\n",
            "defs.yaml:35:41: E021 unknown source 'veiws'; did you mean 'views'?",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, slices: [[contry]]}\n",
            "defs.yaml:35:79: E020 unknown dimension 'contry'; did you mean 'country'?",
        ),
        (
            "  - {name: a, owner: o, source: views, type: count}\n",
            "defs.yaml:35:5: E031 metric 'a' needs a 'description'",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: quantile, value: watch, "
            "quantile: 90}\n",
            "defs.yaml:35:86: E004 quantile must be a number in (0, 1), e.g. 0.9; got 90",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, windows: [weekly]}\n",
            "defs.yaml:35:79: E004 window 'weekly' is not like 1d, 7d, 28d (or 1h for hourly)",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, value: watch}\n",
            "defs.yaml:35:69: E032 'value' does not apply to a count metric",
        ),
        (
            "  - {name: vvr, description: d, owner: o, source: views, type: count}\n",
            "defs.yaml:35:6: E013 metric 'vvr' is already defined at defs.yaml:21:5",
        ),
        (
            "  - {name: a, description: d, owner: o, source: actions, type: count, slices: [[surface]]}\n",
            "defs.yaml:35:71: E024 metric 'a' is sliced by ['surface'], which source 'actions' "
            "does not offer (it offers: country)",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, ci: wilson}\n",
            "defs.yaml:35:69: E034 metric 'a': a Wilson interval needs a proportion",
        ),
        (
            "  - {name: a, description: d, owner: o, type: derived, expression: 'vvr * b'}\n"
            "  - {name: b, description: d, owner: o, type: derived, expression: 'a * 2'}\n",
            "defs.yaml:35:56: E036 derived metrics form a cycle: a -> b -> a",
        ),
        (
            "  - {name: a, description: d, owner: o, type: derived, expression: 'vvr * 2', "
            "slices: [[surface]]}\n",
            "defs.yaml:35:79: E035 'a' is sliced by [['surface']], which input 'vvr' does not compute",
        ),
        (
            # An unquoted comma in a flow mapping splits the value: `b)` becomes a key with
            # an empty value (once a crash in the YAML reader).
            "  - {name: a, description: d, owner: o, type: derived, "
            "expression: try_divide(vvr, b)}\n",
            "defs.yaml:35:84: E002 unknown key 'b)' in metrics.2",
        ),
    ],
)
def test_each_mistake_gets_a_located_error(extra: str, expected: str) -> None:
    found = problems_of(extra)
    assert any(p.startswith(expected) for p in found), found


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(InputError) as info:
        problems_of("metrics:\n  - name: a\n   bad: [\n", base=False)
    (problem,) = info.value.problems
    assert str(problem).startswith("defs.yaml:3:4: E001 invalid YAML")


def test_every_problem_is_reported_at_once() -> None:
    found = problems_of(
        "  - {name: a, description: d, owner: o, source: veiws, type: count}\n"
        "  - {name: b, description: d, owner: o, source: views, type: sum}\n"
        "  - {name: c, description: d, owner: o, source: views, type: rate, "
        "numerator: {agg: count}, denominator: {agg: count}}\n"
    )
    assert len(found) == 3, found
    assert {p.split(":")[1] for p in found} == {"35", "36", "37"}
    assert "needs 'value'" in found[1] and "needs 'per'" in found[2]


def test_problems_across_files_name_each_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE.format(path="/x.parquet"))
    (tmp_path / "b.yaml").write_text(
        "metrics:\n  - {name: vvr, description: d, owner: o, type: count}\n"
    )
    with pytest.raises(InputError) as info:
        load_catalog(tmp_path)
    text = str(info.value)
    assert (
        f"{tmp_path / 'b.yaml'}:2:6: E013 metric 'vvr' is already defined at {tmp_path / 'a.yaml'}:21:5"
        in text
    )


def test_cycles_are_found_once_each() -> None:
    assert find_cycles({"a": ["b"], "b": ["c", "a"], "c": ["a"]}) == [["a", "b", "c"], ["a", "b"]]
    assert find_cycles({"a": ["b"], "b": []}) == []


@pytest.fixture(scope="module")
def views_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("defs") / "views.parquet"
    table = pa.table({
        "ts": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
        "viewer_id": [1, 2], "country": ["BR", "US"], "surface": ["feed", "search"],
        "bad": [True, False], "watch": [1.5, 3.0],
    })  # fmt: skip
    pq.write_table(table, path)
    return str(path)


def checked(spark: SparkSession, text: str, path: str) -> list[str]:
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), "/unused")
    _, problems = catalog_from_documents(
        [parse_located(BASE.format(path=path) + text, "defs.yaml")],
        lambda sources: SparkExpressionChecker(spark, read, sources),
    )
    return [str(p) for p in problems]


def test_sql_expressions_resolve_against_the_real_columns(
    spark: SparkSession, views_path: str
) -> None:
    assert checked(spark, "", views_path) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, filter: 'is_bad'}\n",
            "defs.yaml:35:69: E041 filter: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, "
            "or function parameter with name `is_bad` cannot be resolved. Did you mean one of the "
            "following? [`bad`",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: count, filter: 'watch + 1'}\n",
            "defs.yaml:35:69: E041 filter: 'watch + 1' is double, not a boolean condition",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: sum, value: 'sum(watch)'}\n",
            "defs.yaml:35:67: E041 value: [MISSING_GROUP_BY]",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: sum, value: 'watch +'}\n",
            "defs.yaml:35:67: E041 value: [PARSE_SYNTAX_ERROR] Syntax error at or near end of input",
        ),
        (
            "  - {name: a, description: d, owner: o, source: views, type: sum, value: country}\n",
            "defs.yaml:35:67: E041 value: 'country' is string, not a number",
        ),
        (
            "  - name: a\n    description: d\n    owner: o\n    type: ratio\n    source: views\n"
            "    numerator: {agg: count, filter: 'surface = 1 AND'}\n    denominator: {agg: count}\n",
            "defs.yaml:40:29: E041 numerator.filter: 'surface = 1 AND' is not one expression: "
            "Spark would read its last word as an alias",
        ),
        (
            "  - {name: a, description: d, owner: o, type: derived, expression: 'vvr + nope'}\n",
            "defs.yaml:35:56: E041 expression: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, "
            "variable, or function parameter with name `nope` cannot be resolved",
        ),
    ],
)
def test_bad_sql_gets_a_located_error_from_spark(
    spark: SparkSession, views_path: str, extra: str, expected: str
) -> None:
    found = checked(spark, extra, views_path)
    assert any(p.startswith(expected) for p in found), found


def test_a_missing_source_table_says_how_to_create_it(spark: SparkSession, tmp_path: Path) -> None:
    found = checked(spark, "", str(tmp_path / "missing.parquet"))
    assert found and found[0].startswith("defs.yaml:5:5: E040 cannot read source 'views'")
    assert "run `safety-metrics generate`" in found[0]


def test_validate_command_reports_all_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "defs.yaml").write_text(
        BASE.format(path="/x.parquet")
        + "  - {name: a, description: d, owner: o, source: veiws, type: count}\n"
    )
    code = main(["validate", "--defs", str(tmp_path), "--env", "test"])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        f"{tmp_path / 'defs.yaml'}:35:41: E021 unknown source 'veiws'; did you mean 'views'?" in err
    )


def test_plan_command_prints_the_plan_without_spark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--metrics", "overturned_per_1k_actions"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Plan: 3 metrics, 1 aggregation pass (one per source")
    assert "overturned_per_1k_actions = appeal_rate * reinstatement_rate * 1000" in out


def test_run_with_bad_definitions_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "defs.yaml").write_text(
        BASE.format(path="/x.parquet")
        + "  - {name: a, description: d, owner: o, source: views, type: count, slices: [[contry]]}\n"
    )
    warehouse = tmp_path / "warehouse"
    code = main(
        [
            "run",
            "--defs",
            str(defs),
            "--env",
            "test",
            "--warehouse",
            str(warehouse),
            "--date",
            "2026-09-01",
        ]
    )
    assert code == 2
    assert "E020 unknown dimension 'contry'; did you mean 'country'?" in capsys.readouterr().err
    # No table but the run log, which records the failed run (issue 6: failed runs too).
    assert sorted(p.name for p in warehouse.iterdir()) == ["runs"]
    assert sorted(p.name for p in (warehouse / "runs").iterdir()) == ["job_runs"]
    (run,) = DeltaTable(str(warehouse / "runs" / "job_runs")).to_pyarrow_table().to_pylist()
    assert (run["status"], run["exit_code"], run["rows_written"]) == ("failed", 2, [])
    assert "E020 unknown dimension 'contry'" in run["error"]


def test_the_unit_may_be_a_derived_column_and_a_wrong_one_is_located(
    spark: SparkSession, views_path: str
) -> None:
    base = BASE.format(path=views_path)
    derived = base.replace(
        "    unit: viewer_id\n    dimensions: [country, surface]\n",
        "    unit: viewer_key\n    columns: {viewer_key: \"concat(country, '-', viewer_id)\"}\n"
        "    dimensions: [country, surface]\n",
        1,
    )
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), "/unused")

    def problems(text: str) -> list[str]:
        _, found = catalog_from_documents(
            [parse_located(text, "defs.yaml")],
            lambda sources: SparkExpressionChecker(spark, read, sources),
        )
        return [str(p) for p in found]

    assert problems(derived) == []
    wrong = base.replace("    unit: viewer_id\n", "    unit: viewer\n", 1)
    assert problems(wrong) == [
        "defs.yaml:8:5: E040 source 'views' has no column 'viewer'; did you mean 'viewer_id'?"
    ]


def test_dimension_names_may_not_shadow_table_columns() -> None:
    found = problems_of("dimensions: [country, window]\n", base=False)
    assert found == [
        "defs.yaml:1:23: E015 dimension name 'window' is reserved (a column of metric_values "
        "or of a pass); rename it, e.g. 'window_name'"
    ]

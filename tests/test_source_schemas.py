"""Declared source schemas: `validate` checks every definition without the data (a pull
request has no warehouse), and the real table, whenever it exists, must match the
declaration (a located error at the schema key, with the fix)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.source_schema import type_problem
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker

REPO = Path(__file__).resolve().parent.parent

DEFS = """\
dimensions: [country]
sources:
  views:
    path: {path}
    format: parquet
    schema: {{viewer_id: bigint, ts: timestamp, country: string, watch: {watch}}}
    time_column: ts
    unit: viewer_id
    dimensions: [country]
metrics:
  - name: mean_watch
    description: Mean watch time.
    owner: safety
    source: views
    type: mean
    value: {value}
"""


def problems(
    spark: SparkSession, path: str, watch: str = "double", value: str = "watch"
) -> tuple[list[str], list[str]]:
    """(problems, sources checked against their declaration alone) of DEFS."""
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), "/unused")
    checkers: list[SparkExpressionChecker] = []

    def checker(sources: dict) -> SparkExpressionChecker:  # type: ignore[type-arg]
        checkers.append(SparkExpressionChecker(spark, read, sources))
        return checkers[-1]

    text = DEFS.format(path=path, watch=watch, value=value)
    _, found = catalog_from_documents([parse_located(text, "defs.yaml")], checker)
    return [str(p) for p in found], [n for c in checkers for n in c.unread]


@pytest.fixture(scope="module")
def views_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("schemas") / "views.parquet"
    pq.write_table(
        pa.table(
            {
                "viewer_id": pa.array([1, 2], pa.int64()),
                "ts": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                "country": ["BR", "US"],
                "watch": [1.5, 2.5],
            }
        ),
        path,
    )
    return str(path)


def test_validate_needs_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "warehouse"
    empty.mkdir()
    code = main(["validate", "--env", "test", "--warehouse", str(empty)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "metrics over 7 sources are valid" in out
    assert "checked against their declared schemas alone" in out and "views" in out


def test_without_the_table_expressions_are_checked_against_the_declaration(
    spark: SparkSession, tmp_path: Path
) -> None:
    missing = str(tmp_path / "nowhere.parquet")
    assert problems(spark, missing) == ([], ["views"])
    found, _ = problems(spark, missing, value="watch_secs")
    assert len(found) == 1
    assert found[0].startswith("defs.yaml:16:5: E041 value: ")
    assert "watch_secs" in found[0] and "`watch`" in found[0]  # Spark's close names


def test_a_table_that_differs_from_its_declaration_is_located(
    spark: SparkSession, views_file: str
) -> None:
    assert problems(spark, views_file) == ([], [])
    found, _ = problems(spark, views_file, watch="bigint")
    assert found == [
        "defs.yaml:6:65: E046 source 'views' declares 'watch' as bigint; its table "
        f"{views_file} has double; declare watch: double"
    ]


def test_a_declared_column_the_table_lacks_is_located(spark: SparkSession, views_file: str) -> None:
    text = DEFS.replace("watch: {watch}}}", "watch: {watch}, wacth_s: double}}")
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), "/unused")
    _, found = catalog_from_documents(
        [parse_located(text.format(path=views_file, watch="double", value="watch"), "d.yaml")],
        lambda sources: SparkExpressionChecker(spark, read, sources),
    )
    assert [str(p) for p in found] == [
        f"d.yaml:6:80: E046 source 'views' declares column 'wacth_s', which its table "
        f"{views_file} does not have; did you mean 'watch'?"
    ]


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ("bigint", None),
        ("decimal(18, 2)", None),
        ("array<string>", None),
        ("map<string,array<bigint>>", None),
        ("struct<a:int, b:map<string,double>>", None),
        ("timestamp_ntz", None),
        ("bigit", "unknown type 'bigit' (did you mean 'bigint'?)"),
        ("decimal(40,2)", "decimal(40,2): precision 1-38, scale <= precision"),
        ("map<string>", "expected ',' at '>'"),
        ("array<string", "expected '>' at 'the end'"),
        ("string string", "unexpected 'string' in type 'string string'"),
        ("decimal (10, 2)", None),
        ("numeric(5)", None),
        ("varchar(10)", None),
        ("real", None),
    ],
)
def test_types_are_checked_without_spark(declared: str, problem: str | None) -> None:
    assert type_problem(declared) == problem


def test_a_bad_declaration_is_located_without_spark() -> None:
    text = DEFS.format(path="/x.parquet", watch="doubel", value="watch")
    _, found = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert [str(p) for p in found] == [
        "defs.yaml:6:65: E045 schema.watch: unknown type 'doubel' (did you mean 'double'?)"
    ]


def test_every_default_source_declares_its_schema() -> None:
    from jobs.metrics.loader import load_catalog

    catalog = load_catalog(REPO / "metric_defs")
    assert all(source.schema for source in catalog.sources.values())


def test_nested_nullability_is_no_difference_but_a_type_is() -> None:
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    from jobs.metrics.definitions import SourceDef
    from jobs.metrics.sql_check import schema_differences

    source = SourceDef("s", "delta", "raw/s", "ts", "u")
    declared = StructType([StructField("tags", ArrayType(StringType(), True))])
    same = StructType([StructField("tags", ArrayType(StringType(), False), False)])
    other = StructType([StructField("tags", ArrayType(LongType(), True))])
    assert schema_differences(source, declared, same) == []
    assert [key for key, _, _ in schema_differences(source, declared, other)] == [
        ("schema", "tags")
    ]


def test_struct_field_names_keep_their_case() -> None:
    text = DEFS.format(path="/x.parquet", watch="'struct<userId:int, Score:double>'", value="watch")
    catalog, found = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert found == [] and catalog is not None
    assert dict(catalog.sources["views"].schema)["watch"] == "struct<userId:int, Score:double>"

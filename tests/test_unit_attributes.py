"""Declared unit attributes: the pass groups units without them and puts them back per unit.

The numbers must equal the pass without attributes exactly, for rows without a unit too, and
an attribute that is not constant per unit must be caught and the pass computed again.
(The DuckDB comparison of every metric type with attributes is in test_metric_correctness.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics import pass_runs, passes
from jobs.metrics.job import compute_metric_rows
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import compile_plan, render_plan
from tests.test_metric_correctness import caught_warnings, write_parquet

DAY = dt.date(2026, 3, 26)
METRICS: list[dict[str, Any]] = [
    {"name": "n", "type": "count", "windows": ["1d", "7d"]},
    {
        "name": "share",
        "type": "ratio",
        "numerator": {"agg": "count", "filter": "is_bad"},
        "denominator": {"agg": "count"},
        "windows": ["1d", "7d"],
    },
    {"name": "users", "type": "distinct_count", "value": "user_id"},
    {"name": "p50", "type": "quantile", "value": "amount", "quantile": 0.5},
    {"name": "n_hourly", "type": "count", "grain": "hour", "slices": [[], ["country"]]},
]
SLICES = [[], ["country"], ["surface"], ["country", "surface"]]
OWNED = {"description": "d", "owner": "o"}


def events(countries: dict[int, list[str]]) -> pa.Table:
    """Two days of rows for users 1..6 with the given countries (cycled per row), and rows
    without a unit in several countries."""
    rows: list[tuple[dt.datetime, int | None, str, str, bool, float]] = []
    for user, theirs in countries.items():
        for i in range(8):
            when = dt.datetime(2026, 3, 25 + i % 2, 3 * i % 24)
            country = theirs[i % len(theirs)]
            rows.append((when, user, country, "feed" if i % 3 else "search", i % 4 == 0, i * user))
    for i, country in enumerate(["BR", "US", "US", "IN"]):
        rows.append((dt.datetime(2026, 3, 26, i), None, country, "feed", i == 1, float(i)))
    types = [pa.timestamp("us"), pa.int64(), pa.string(), pa.string(), pa.bool_(), pa.float64()]
    names = ["ts", "user_id", "country", "surface", "is_bad", "amount"]
    columns = zip(names, zip(*rows, strict=True), types, strict=True)
    return pa.table({name: pa.array(list(values), t) for name, values, t in columns})


def cells(
    spark: SparkSession, folder: Path, table: pa.Table, attributes: list[str]
) -> tuple[dict[tuple[Any, ...], tuple[Any, ...]], list[str], str]:
    """(metric, period, window, slice) -> numbers, the warnings logged, the printed plan."""
    write_parquet(table, folder / "events.parquet")
    source = {
        "path": str(folder / "events.parquet"),
        "format": "parquet",
        "time_column": "ts",
        "unit": "user_id",
        "dimensions": ["country", "surface"],
        "unit_attributes": attributes,
    }
    common = {"source": "events", "slices": SLICES, **OWNED}
    metrics = [{**common, **m} for m in METRICS]
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 1},
            "dimensions": ["country", "surface"],
            "sources": {"events": source},
            "metrics": metrics,
        }
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    plan = compile_plan(catalog)
    sink = DeltaSink.for_session(spark, "delta-rs")
    with caught_warnings("jobs.metrics.pass_runs") as warnings:
        results = compute_passes(spark, sink, catalog, plan, str(folder), DAY, DAY)
    assert "__conflicts" not in results["events"].columns
    rows = compute_metric_rows(catalog, plan, results).collect()
    key = ("metric", "period", "window", "slice_id")
    values = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper")
    out = {tuple(r[k] for k in key): tuple(r[v] for v in values) for r in rows}
    return out, warnings, render_plan(catalog, plan)


CONSTANT = {1: ["BR"], 2: ["BR"], 3: ["US"], 4: ["US"], 5: ["IN"], 6: ["(none)"]}


def test_attributes_give_the_same_cells_as_grouping_by_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    table = events(CONSTANT)
    plain, _, _ = cells(spark, tmp_path, table, [])
    fast, warnings, text = cells(spark, tmp_path, table, ["country"])
    assert warnings == []
    assert "unit attributes: country, checked constant per unit and period" in text
    assert "units grouped by 2 sets: overall | surface\n" in text
    assert len(plain) > 100
    assert fast == plain
    # Rows without a unit keep their own countries: 1 BR, 2 US and 1 IN on the day.
    assert fast[("n", dt.datetime(2026, 3, 26), "1d", "country=US")][0] == 2 * 8 // 2 + 2


def test_an_attribute_that_varies_within_a_unit_reruns_the_pass_without_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    table = events({**CONSTANT, 4: ["US", "MX"]})  # user 4 travels
    plain, _, _ = cells(spark, tmp_path, table, [])
    checked, warnings, _ = cells(spark, tmp_path, table, ["country"])
    assert len(warnings) == 1
    assert warnings[0].startswith("events: unit attributes country are not constant per user_id")
    assert checked == plain


@pytest.mark.parametrize(
    ("attributes", "code", "hint"),
    [
        (["contry"], "E025", "did you mean 'country'?"),
        (["policy"], "E025", "list it under the source's dimensions (country, surface)"),
        ("country", "E004", "e.g. unit_attributes: [country]"),
    ],
)
def test_an_attribute_must_be_a_dimension_of_its_source(
    attributes: Any, code: str, hint: str
) -> None:
    text = yaml.safe_dump(
        {
            "dimensions": ["country", "surface", "policy"],
            "sources": {
                "events": {
                    "path": "/nowhere",
                    "format": "parquet",
                    "time_column": "ts",
                    "unit": "user_id",
                    "dimensions": ["country", "surface"],
                    "unit_attributes": attributes,
                }
            },
            "metrics": [{"name": "n", "source": "events", "type": "count", **OWNED}],
        }
    )
    _, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert [(p.code, p.hint) for p in problems] == [(code, hint)]
    # Located at the bad entry (or the key, when the value is no list).
    where = str(problems[0]).split(" ")[0]
    assert where.startswith("defs.yaml:")
    line = text.splitlines()[int(where.split(":")[1]) - 1]
    assert ("unit_attributes" if code == "E004" else attributes[0]) in line


def test_dimension_values_that_share_a_hash_rerun_the_pass_on_the_values(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = events(CONSTANT)
    plain, _, _ = cells(spark, tmp_path, table, [])
    # A hash with two values: BR, US, IN and (none) cannot all have their own (and this
    # small pass carries its dimensions as hashes, as large ones do).
    monkeypatch.setattr(pass_runs, "HASHED_MIN_ENTRIES", 0)
    monkeypatch.setattr(passes, "dimension_hash", lambda value: F.xxhash64(value) % 2)
    rerun, warnings, _ = cells(spark, tmp_path, table, [])
    assert len(warnings) == 1
    assert warnings[0].startswith("events: two values of a dimension share a 64-bit hash")
    assert rerun == plain

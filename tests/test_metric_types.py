"""The metric-type registry: every type is one module the loader and the rest dispatch
through, and `winsorized_mean` (added through the registry alone) reads its cap with
located errors. Its numbers are checked against DuckDB + NumPy in test_metric_correctness."""

from __future__ import annotations

import importlib

import pytest

from jobs.core.located_yaml import parse_located
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.types import REGISTRY, TYPE_NAMES, traits
from jobs.metrics.types.winsorized_mean import capped

BASE = """\
dimensions: [country]
sources:
  views:
    path: /nowhere.parquet
    format: parquet
    time_column: ts
    unit: viewer_id
metrics:
  - name: m
    description: d
    owner: o
    source: views
"""


def problems(body: str) -> list[str]:
    _, found = catalog_from_documents([parse_located(BASE + body, "defs.yaml")])
    return [str(p) for p in found]


def test_each_type_is_one_documented_module_in_the_registry() -> None:
    assert tuple(REGISTRY) == TYPE_NAMES
    for name, kind in REGISTRY.items():
        module = importlib.import_module(type(kind).__module__)
        assert module.__name__ == f"jobs.metrics.types.{name}"
        assert module.__doc__ and f"`type: {name}`" in module.__doc__
        assert set(kind.required) - {"source"} <= set(kind.allowed)


def test_the_loader_reads_a_winsorized_mean_as_a_mean_of_capped_values() -> None:
    catalog, found = catalog_from_documents(
        [
            parse_located(
                BASE + "    type: winsorized_mean\n    value: watch\n"
                "    cap: {min: 0, max: 3600}\n    filter: is_feed\n",
                "defs.yaml",
            )
        ]
    )
    assert found == [] and catalog is not None
    metric = catalog.metrics["m"]
    assert metric.numerator is not None and metric.denominator is not None
    assert metric.numerator.agg == "sum" and metric.numerator.filter == "is_feed"
    assert metric.numerator.value == capped("watch", 0.0, 3600.0)
    assert metric.denominator.agg == "count"
    assert metric.denominator.filter == "(is_feed) AND ((watch) IS NOT NULL)"
    assert metric.ci == "delta" and traits(metric.type).series_kind == "mean"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    type: winsorized_mean\n    value: watch\n",
            "defs.yaml:9:5: E031 metric 'm' of type winsorized_mean needs 'cap'",
        ),
        (
            "    type: winsorized_mean\n    value: watch\n    cap: high\n",
            "defs.yaml:15:5: E004 cap max must be a finite number, got 'high'",
        ),
        (
            "    type: winsorized_mean\n    value: watch\n    cap: .inf\n",
            "defs.yaml:15:5: E004 cap max must be a finite number, got inf",
        ),
        (
            "    type: winsorized_mean\n    value: watch\n    cap: {min: 9, max: 1}\n",
            "defs.yaml:15:5: E004 cap min 9 is above cap max 1",
        ),
        (
            "    type: winsorized_mean\n    value: watch\n    cap: {ceiling: 9}\n",
            "defs.yaml:15:5: E004 cap takes min and/or max, got ['ceiling']",
        ),
        (
            "    type: mean\n    value: watch\n    cap: 9\n",
            "defs.yaml:15:5: E032 'cap' does not apply to a mean metric",
        ),
        (
            "    type: winsorised_mean\n    value: watch\n",
            "defs.yaml:13:5: E030 metric 'm' has type 'winsorised_mean'; "
            "did you mean 'winsorized_mean'?",
        ),
    ],
)
def test_winsorized_mean_yaml_mistakes_are_located(body: str, expected: str) -> None:
    assert problems(body) == [expected]


@pytest.mark.parametrize(
    ("low", "high", "row", "expected"),
    [
        (0.0, 10.0, 12.5, 10.0),
        (0.0, 10.0, -1.0, 0.0),
        (None, 10.0, 3.5, 3.5),
        (0.0, None, 1e12, 1e12),
    ],
)
def test_capped_holds_values_inside_the_cap_and_keeps_nulls(
    low: float | None, high: float | None, row: float, expected: float
) -> None:
    import duckdb

    sql = capped("x", low, high)
    with duckdb.connect() as db:
        assert db.execute(f"SELECT {sql} FROM (SELECT {row}::DOUBLE AS x)").fetchall() == [
            (expected,)
        ]
        assert db.execute(f"SELECT {sql} FROM (SELECT NULL::DOUBLE AS x)").fetchall() == [(None,)]


def test_a_percentile_cap_reads_the_previous_days_percentile() -> None:
    from jobs.metrics.definitions import PreviousDayCap

    catalog, found = catalog_from_documents(
        [
            parse_located(
                BASE + "    type: winsorized_mean\n    value: watch\n"
                "    cap: {percentile: 0.99}\n    filter: is_feed\n",
                "defs.yaml",
            )
        ]
    )
    assert found == [] and catalog is not None
    metric = catalog.metrics["m"]
    cap = PreviousDayCap("views", "watch", "is_feed", 0.99)
    assert metric.caps == (cap,)
    assert metric.numerator is not None
    assert metric.numerator.value == capped("watch", None, cap.column)
    assert f"`{cap.column}`" in metric.numerator.value


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("{percentile: 1.5}", "E004 cap percentile must be a number in (0, 1), got 1.5"),
        (
            "{percentile: 0.9, max: 3}",
            "E004 cap: {percentile: P} goes alone (no min or max with it)",
        ),
    ],
)
def test_percentile_cap_mistakes_are_located(cap: str, expected: str) -> None:
    body = f"    type: winsorized_mean\n    value: watch\n    cap: {cap}\n"
    assert problems(body) == [f"defs.yaml:15:5: {expected}"]


def test_experiments_refuse_a_metric_capped_by_the_previous_day() -> None:
    from dataclasses import replace

    from jobs.core.located_yaml import InputError
    from jobs.experiments.loader import experiments_from_documents
    from jobs.metrics.definitions import PreviousDayCap
    from jobs.metrics.loader import load_catalog
    from tests.test_experiment_definitions import DEFS, doc_text_with

    catalog = load_catalog(DEFS)
    views = catalog.metrics["views"]
    capped_views = replace(views, caps=(PreviousDayCap("views", "1", None, 0.5),))
    catalog = replace(catalog, metrics={**catalog.metrics, "views": capped_views})
    with pytest.raises(InputError) as exc:
        experiments_from_documents([parse_located(doc_text_with(), "exp.yaml")], catalog)
    assert [p.code for p in exc.value.problems] == ["E050"]
    assert "previous day" in str(exc.value.problems[0])

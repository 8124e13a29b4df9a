"""Every published number is the same, bit for bit, however the input is laid out.

The whole test catalog of `test_metric_correctness` (every metric type, window, grain and
slice set) runs three times over the same rows on fractional, large values with over a
third of the events without a unit: written as 1 file in order, as 3 files and as 16 files
in shuffled orders, with 1, 3 and 16 shuffle partitions. Every cell of `metric_values` must
be identical: exact sums, exact variances, sketches merged to the same registers. The same
for an experiment (`test_experiment_job`'s, with fractional watch times): every result row.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.experiments.analysis import analyse
from jobs.experiments.job import spec_for
from jobs.experiments.loader import experiments_from_documents
from jobs.experiments.units import quantile_events, unit_frame
from jobs.metrics.job import compute_metric_rows, publishable
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import compile_plan
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker
from jobs.metrics.suppression import suppress
from tests import test_experiment_job as job
from tests.test_metric_correctness import (
    END,
    START,
    catalog_yaml,
    make_events,
    make_impressions,
    make_reports,
)

LAYOUTS = [(1, 1, False), (3, 3, True), (16, 16, True)]  # (files, shuffle partitions, shuffled)
NUMBERS = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper", "suppressed")


def fractional(events: pa.Table, rng: np.random.RandomState) -> pa.Table:
    """Amounts at a level of 1e8 with fractional noise, and 40% of the rows without a user."""
    n = len(events)
    base = np.asarray(events["amount"].to_pandas().fillna(0.0), dtype=float)
    amount = 1e8 + base + rng.standard_normal(n) * 0.37
    keep = np.asarray(events["amount"].is_valid(), dtype=bool)
    users = events["user_id"].to_pylist()
    no_user = rng.rand(n) < 0.4
    index = events.schema.get_field_index
    events = events.set_column(
        index("amount"),
        "amount",
        pa.array([a if k else None for a, k in zip(amount, keep, strict=True)]),
    )
    return events.set_column(
        index("user_id"),
        "user_id",
        pa.array([None if z else u for u, z in zip(users, no_user, strict=True)], pa.int64()),
    )


def write_layout(
    table: pa.Table, folder: Path, files: int, shuffled: bool, seed: int, utc: bool = True
) -> str:
    """The table as `files` Parquet files, its rows in a shuffled order if asked (`ts` as
    a UTC instant if `utc`)."""
    folder.mkdir(parents=True)
    rows = len(table)
    order = np.random.RandomState(seed).permutation(rows) if shuffled else np.arange(rows)
    index = folder.name
    if utc:
        ts = table.schema.get_field_index("ts")
        table = table.set_column(ts, "ts", table["ts"].cast(pa.timestamp("us", tz="UTC")))
    for i, chunk in enumerate(np.array_split(order, files)):
        pq.write_table(table.take(pa.array(chunk)), folder / f"part-{index}-{i:02d}.parquet")
    return str(folder)


@pytest.fixture
def shuffle_partitions(spark: SparkSession) -> Iterator[None]:
    before = spark.conf.get("spark.sql.shuffle.partitions")
    yield
    if before is not None:
        spark.conf.set("spark.sql.shuffle.partitions", before)


def published(
    spark: SparkSession, root: Path, tables: dict[str, pa.Table], files: int, shuffled: bool
) -> dict[tuple[Any, ...], tuple[str, ...]]:
    paths = {
        name: write_layout(table, root / name, files, shuffled, seed=files)
        for name, table in tables.items()
    }
    warehouse = str(root / "warehouse")
    sink = DeltaSink.for_session(spark, "delta-rs")
    read = table_reader(spark, sink, warehouse)
    catalog, problems = catalog_from_documents(
        [parse_located(catalog_yaml(paths), "defs.yaml")],
        lambda sources: SparkExpressionChecker(spark, read, sources),
    )
    assert not problems and catalog is not None, problems
    plan = compile_plan(catalog)
    results = compute_passes(spark, sink, catalog, plan, warehouse, START, END)
    rows_before = compute_metric_rows(catalog, plan, results)
    final = publishable(catalog, suppress(catalog, plan, rows_before, results), "t")
    rows = [r.asDict() for r in final.collect()]
    # repr is exact for floats (it reads back to the same bits).
    return {
        (r["metric"], r["period_start"], r["window"], r["slice_id"]): tuple(
            repr(r[c]) for c in NUMBERS
        )
        for r in rows
    }


def test_every_number_is_identical_for_any_layout(
    spark: SparkSession, tmp_path: Path, shuffle_partitions: None
) -> None:
    rng = np.random.RandomState(20261207)
    tables = {
        "events": fractional(make_events(rng), rng),
        "reports": make_reports(rng),
        "impressions": make_impressions(rng),
    }
    runs = []
    for files, partitions, shuffled in LAYOUTS:
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
        runs.append(published(spark, tmp_path / f"layout{files}", tables, files, shuffled))
    first = runs[0]
    assert len(first) > 1500
    assert min(k[1] for k in first).date() >= START and max(k[1] for k in first).date() <= END
    # Fractional, large and with intervals: the cells that float sums would disturb.
    means = [v for k, v in first.items() if k[0] == "mean_feed_amount" and v[4] != "None"]
    assert means and all(math.isfinite(float(v[0])) and float(v[0]) > 1e8 for v in means)
    for other in runs[1:]:
        assert other.keys() == first.keys()
        differing = [(k, first[k], other[k]) for k in first if first[k] != other[k]]
        assert differing == [], differing[:5]


def experiment_results(
    spark: SparkSession, root: Path, rows: dict[str, list[dict[str, Any]]], files: int
) -> list[tuple[str, ...]]:
    """Every result row of test_experiment_job's experiment over `rows` laid out in `files`."""
    paths = {
        name: write_layout(pa.Table.from_pylist(r), root / name, files, files > 1, files, False)
        for name, r in rows.items()
    }
    text = job.CATALOG.format(start=job.START, end=job.END, covariate=job.COVARIATE_DAYS, **paths)
    doc = parse_located(text, "defs.yaml")
    catalog, problems = catalog_from_documents([doc])
    assert not problems and catalog is not None, problems
    exp = experiments_from_documents([doc], catalog)["exp_t"]
    read = table_reader(spark, DeltaSink.for_session(spark, "delta-rs"), str(root / "wh"))
    assignments = spark.read.parquet(exp.assignments.location)
    units = unit_frame(catalog, exp, read, assignments, job.END)
    events = quantile_events(catalog, exp, read, assignments, job.END)
    analysis = analyse(units, spec_for(catalog, exp), events)
    return sorted(tuple(repr(v) for v in r.values()) for r in analysis.results)


def test_an_experiment_is_identical_for_any_layout(
    spark: SparkSession, tmp_path: Path, shuffle_partitions: None
) -> None:
    assignments, views, reports = job._make_rows(np.random.default_rng(2026))
    # Watch times at a level of 1e8 with all their digits: float sums of them depend on
    # the order of addition.
    for v in views:
        if v["watch"] is not None:
            v["watch"] = 1e8 + v["watch"] * 1.000123456789
    rows = {"assignments": assignments, "views": views, "reports": reports}
    runs = []
    for files, partitions, _ in LAYOUTS:
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
        runs.append(experiment_results(spark, tmp_path / f"layout{files}", rows, files))
    assert len(runs[0]) >= 10
    for other in runs[1:]:
        assert other == runs[0]


def test_layouts_really_differ(tmp_path: Path) -> None:
    """(The fixture's layouts are what they claim: files, and rows in another order.)"""
    table = pa.table({"ts": pa.array([dt.datetime(2026, 3, 26)] * 40, pa.timestamp("us"))})
    table = table.append_column("i", pa.array(range(40), pa.int64()))
    one = write_layout(table, tmp_path / "a", 1, False, 1)
    many = write_layout(table, tmp_path / "b", 16, True, 16)
    assert len(os.listdir(one)) == 1 and len(os.listdir(many)) == 16
    first = pq.read_table(os.path.join(many, sorted(os.listdir(many))[0]))["i"].to_pylist()
    assert first != list(range(len(first)))

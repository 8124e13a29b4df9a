"""Exact sufficient statistics: no cancellation at any level, the same bits on any layout.

Values are rounded once per row to the metric's `decimals`; from there every sum is exact.
The oracles here are Fraction arithmetic over the per-unit values (rounded the same way):
the variance of values like 1e8 + N(0, 1), which the old float formulas turned negative
and clamped to a point interval, and 1e12-scale totals. Rows without a unit are clusters of
their own, spread over partitions.
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.stats import t as student_t

from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import PublishGateError
from jobs.metrics.job import compute_metric_rows, run_metrics
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.pass_columns import ANON
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.passes import shuffled_by_unit
from jobs.metrics.planner import compile_plan
from tests.test_metric_correctness import write_parquet
from udfs.exact_moments import (
    LIMB_BITS,
    ScaledSums,
    from_limbs,
    ratio_variance,
    ratio_variance_float,
)

DAY = dt.date(2026, 3, 26)
OWNED = {"description": "d", "owner": "o"}


def rounded(value: float, decimals: int) -> Fraction:
    """A row's value as the pass keeps it: as numpy.round(value, decimals) rounds it (the
    double times 10^decimals, to the nearest whole, ties to even), exactly."""
    return Fraction(round(float(value) * 10**decimals), 10**decimals)


def fraction_ratio_variance(ys: list[Fraction], xs: list[Fraction]) -> Fraction:
    """n/(n-1) sum_u (y_u - R x_u)^2 / X^2, straight from the per-unit values."""
    n, total_y, total_x = len(ys), sum(ys, Fraction(0)), sum(xs, Fraction(0))
    r = total_y / total_x
    residuals = sum(((y - r * x) ** 2 for y, x in zip(ys, xs, strict=True)), Fraction(0))
    return Fraction(n, n - 1) * residuals / total_x**2


def clustered_values(
    rng: np.random.Generator, units: int, level: float, spread: float
) -> list[list[float]]:
    """1 to 5 rows per unit of level + N(0, spread)."""
    return [
        [float(v) for v in level + spread * rng.standard_normal(rng.integers(1, 6))]
        for _ in range(units)
    ]


@pytest.mark.parametrize(("level", "decimals"), [(1e8, 6), (1e12, 3)])
def test_ratio_variance_is_exact_at_huge_levels(level: float, decimals: int) -> None:
    units = clustered_values(np.random.default_rng(7), 300, level, 1.0)
    ys = [sum((rounded(v, decimals) for v in rows), Fraction(0)) for rows in units]
    xs = [Fraction(len(rows)) for rows in units]
    scale = 10**decimals
    whole_y = [int(y * scale) for y in ys]
    sums = ScaledSums(
        n=len(units),
        y=sum(whole_y),
        x=int(sum(xs)),
        yy=sum(y * y for y in whole_y),
        xx=int(sum(x * x for x in xs)),
        xy=sum(y * int(x) for y, x in zip(whole_y, xs, strict=True)),
        y_decimals=decimals,
    )
    expected = fraction_ratio_variance(ys, xs)
    assert ratio_variance(sums) == expected  # exact, not merely close
    # The variance of a mean of about 900 rows of unit spread: about 1/900 (positive).
    assert 0.5 / 900 < float(expected) < 2 / 900


def test_limbs_put_back_a_sum_of_squares_beyond_64_bits() -> None:
    totals = [2**62 + 12345, -(2**61) - 7, 3, 2**40]
    high = sum((t >> LIMB_BITS) * t for t in totals)
    low = sum((t & (2**LIMB_BITS - 1)) * t for t in totals)
    assert from_limbs(high, low) == sum(t * t for t in totals)


# --- the pass, end to end ------------------------------------------------------------------


def catalog_for(
    spark: SparkSession, folder: Path, table: pa.Table, metrics: list[dict[str, Any]], **source: Any
) -> Catalog:
    write_parquet(table, folder / "events.parquet")
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 1, "gates": {"on_failure": "warn"}},
            "dimensions": ["country"],
            "sources": {
                "events": {
                    "path": str(folder / "events.parquet"),
                    "format": "parquet",
                    "time_column": "ts",
                    "unit": "user_id",
                    "dimensions": ["country"],
                    **source,
                }
            },
            "metrics": [{"source": "events", **OWNED, **m} for m in metrics],
        }
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None, problems
    return catalog


def events(units: list[list[float]], users: list[int | None] | None = None) -> pa.Table:
    """One row per value on DAY; unit i's rows belong to users[i] (default i)."""
    owners = users if users is not None else list(range(len(units)))
    ts, user, country, amount = [], [], [], []
    for i, rows in enumerate(units):
        for j, v in enumerate(rows):
            ts.append(dt.datetime(2026, 3, 26, (i + j) % 24, j))
            user.append(owners[i])
            country.append("BR" if i % 3 else "US")
            amount.append(float(v))
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us")),
            "user_id": pa.array(user, pa.int64()),
            "country": pa.array(country, pa.string()),
            "amount": pa.array(amount, pa.float64()),
        }
    )


def overall(spark: SparkSession, folder: Path, catalog: Catalog) -> dict[str, Any]:
    plan = compile_plan(catalog)
    sink = DeltaSink.for_session(spark, "delta-rs")
    results = compute_passes(spark, sink, catalog, plan, str(folder), DAY, DAY)
    rows = compute_metric_rows(catalog, plan, results).where(F.col("slice_id") == "all")
    return {r["metric"]: r.asDict() for r in rows.collect()}


@pytest.mark.parametrize(("level", "decimals"), [(1e8, 6), (1e12, 0)])
def test_a_mean_at_a_huge_level_keeps_its_interval(
    spark: SparkSession, tmp_path: Path, level: float, decimals: int
) -> None:
    # 1e8 + N(0, 1) with 6 decimals; 1e12-scale values (bytes) with a 10% spread, whole.
    spread = 1.0 if level == 1e8 else 1e11
    units = clustered_values(np.random.default_rng(11), 200, level, spread)
    metric = {"name": "m", "type": "mean", "value": "amount", "ci": "delta", "decimals": decimals}
    cell = overall(spark, tmp_path, catalog_for(spark, tmp_path, events(units), [metric]))["m"]
    ys = [sum((rounded(v, decimals) for v in rows), Fraction(0)) for rows in units]
    xs = [Fraction(len(rows)) for rows in units]
    r = sum(ys) / sum(xs)
    half = student_t.ppf(0.975, len(units) - 1) * math.sqrt(fraction_ratio_variance(ys, xs))
    assert cell["value"] == float(r)
    # The bounds are doubles near the level: their difference is exact to a few ulps of it.
    width, expected = cell["ci_upper"] - cell["ci_lower"], 2 * half
    assert abs(width - expected) <= 8 * math.ulp(level) + 1e-9 * expected
    assert width > 0.5 * expected  # the old formula gave 0 (a negative variance, clamped)


def test_rows_without_a_unit_are_clusters_of_their_own(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    units = clustered_values(rng, 120, 5.0, 2.0)
    # Over 40% of the rows have no unit: each of them is a cluster of one row.
    loose = [[float(v)] for v in 5.0 + 2.0 * rng.standard_normal(300)]
    owners: list[int | None] = [*range(len(units)), *[None] * len(loose)]
    table = events([*units, *loose], owners)
    assert table["user_id"].null_count / len(table) > 0.4
    metric = {"name": "m", "type": "mean", "value": "amount", "ci": "delta"}
    cell = overall(spark, tmp_path, catalog_for(spark, tmp_path, table, [metric]))["m"]
    clusters = [*units, *loose]
    ys = [sum((rounded(v, 6) for v in rows), Fraction(0)) for rows in clusters]
    xs = [Fraction(len(rows)) for rows in clusters]
    half = student_t.ppf(0.975, len(clusters) - 1) * math.sqrt(fraction_ratio_variance(ys, xs))
    assert cell["units"] == len(units)  # they are no units of the cell
    assert math.isclose(cell["ci_upper"] - cell["ci_lower"], 2 * half, rel_tol=1e-12)


def test_rows_without_a_unit_are_spread_over_partitions(spark: SparkSession) -> None:
    rows = spark.range(20_000).select(
        F.when(F.col("id") % 10 < 4, F.lit(None)).otherwise(F.col("id") % 500).alias("user_id"),
        (F.col("id") * 7 % 13).alias("x"),
    )
    shuffled = shuffled_by_unit(rows, "user_id", 8)
    assert ANON in shuffled.columns
    sizes = [
        r["n"]
        for r in shuffled.groupBy(F.spark_partition_id()).agg(F.count("*").alias("n")).collect()
    ]
    assert len(sizes) == 8
    assert max(sizes) < 0.25 * 20_000  # 40% would sit in one partition if keyed by the unit


@pytest.mark.parametrize(
    "units",
    [
        [[1e15, 2e15], [3e15], [1e15, 1e15, 1e15]],  # each row beyond 64 bits at 6 decimals
        [[5e12, 5e12], [1.0], [2.0]],  # each row fits; one unit's total does not
    ],
)
def test_per_unit_totals_beyond_64_bits_stop_the_run(
    spark: SparkSession, tmp_path: Path, units: list[list[float]]
) -> None:
    metric = {"name": "bytes_mean", "type": "mean", "value": "amount", "ci": "delta"}
    catalog = catalog_for(spark, tmp_path, events(units), [metric])
    sink = DeltaSink.for_session(spark, "delta-rs")
    with pytest.raises(PublishGateError) as failure:
        run_metrics(spark, sink, catalog, compile_plan(catalog), str(tmp_path), DAY, DAY)
    message = str(failure.value)
    assert "exact sums of sum(amount)" in message
    assert "lower `decimals` of bytes_mean (now 6)" in message


@pytest.mark.parametrize(
    ("where", "value"),
    [("metric", -1), ("metric", 13), ("metric", "six"), ("settings", 2.5)],
)
def test_decimals_must_be_a_small_whole_number(where: str, value: Any) -> None:
    metric: dict[str, Any] = {"name": "m", "type": "mean", "value": "amount", "source": "events"}
    settings: dict[str, Any] = {}
    (metric if where == "metric" else settings)["decimals"] = value
    text = yaml.safe_dump(
        {
            "settings": settings,
            "dimensions": ["country"],
            "sources": {
                "events": {"path": "/x", "format": "parquet", "time_column": "ts", "unit": "u"}
            },
            "metrics": [{**metric, **OWNED}],
        },
        sort_keys=False,
    )
    _, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert [p.code for p in problems] == ["E004"]
    where_text = str(problems[0]).split(" ")[0]
    line = text.splitlines()[int(where_text.split(":")[1]) - 1]
    assert "decimals" in line
    assert "decimals must be an integer from 0 to 12" in str(problems[0])


def test_decimals_change_the_version_and_the_rounding(spark: SparkSession, tmp_path: Path) -> None:
    units = [[1.25, 2.5], [0.125], [3.0, 1.0, 0.5]]
    base: dict[str, Any] = {"type": "sum", "value": "amount"}
    metrics: list[dict[str, Any]] = [{"name": "s6", **base}, {"name": "s1", **base, "decimals": 1}]
    catalog = catalog_for(spark, tmp_path, events(units), metrics)
    assert catalog.metric_version("s6") != catalog.metric_version("s1")
    cells = overall(spark, tmp_path, catalog)
    assert cells["s6"]["value"] == 8.375
    # Per row, as numpy.round(value, 1): 1.25 -> 1.2 and 0.125 -> 0.1 (ties to even).
    assert cells["s1"]["value"] == pytest.approx(
        float(np.round([1.25, 2.5, 0.125, 3, 1, 0.5], 1).sum())
    )
    assert cells["s1"]["value"] == 8.3


def test_the_integer_variance_is_the_rounded_fraction() -> None:
    rng = np.random.default_rng(11)
    for _ in range(500):
        n = int(rng.integers(2, 40))
        ys = [int(v) for v in rng.integers(-(10**15), 10**15, n)]
        xs = [int(v) for v in rng.integers(1, 10**12, n)]
        sums = ScaledSums(
            n,
            sum(ys),
            sum(xs),
            sum(a * a for a in ys),
            sum(b * b for b in xs),
            sum(a * b for a, b in zip(ys, xs, strict=True)),
            y_decimals=int(rng.integers(0, 7)),
            x_decimals=int(rng.integers(0, 7)),
        )
        exact = ratio_variance(sums)
        assert exact is not None and ratio_variance_float(sums) == float(exact)

"""The distributed Poisson bootstrap and per-arm moments in Spark, against NumPy on the same
units: the same weights exactly, the same sums exactly, identical results for any
partitioning, and intervals that agree with a classical resampling bootstrap."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.experiments.aggregates import (
    collect_moments,
    collect_replicates,
    fixed_point_digits,
    moment_frame,
    replicate_frame,
)
from jobs.experiments.bootstrap_stats import bootstrap_comparison, replicate_ratios
from jobs.experiments.quantiles import quantile_arms
from jobs.experiments.stats import Moments
from udfs.poisson_bootstrap import numpy_weights, numpy_xxhash64, poisson_weight

SEED = 20261125
B = 200


def unit_rows(n_per_arm: int, seed: int = 7) -> list[tuple[str, str, int, float, float]]:
    """(metric, variant, unit_key, y, x): a ratio metric (clustered events) per unit, with
    values rounded to 4 decimals so exact sums are easy to state in Python."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant, lift in (("control", 0.0), ("treatment", 0.1)):
        x = rng.poisson(4, n_per_arm) + 1.0
        y = np.round(rng.lognormal(0, 1, n_per_arm) * x * (1 + lift), 4)
        keys = rng.integers(-(2**62), 2**62, n_per_arm)
        rows += [
            ("watch", variant, int(k), float(a), float(b))
            for k, a, b in zip(keys, y, x, strict=True)
        ]
    return rows


def units_frame(spark: SparkSession, rows: list[tuple[str, str, int, float, float]]) -> DataFrame:
    frame = spark.createDataFrame(
        rows, "metric string, variant string, unit_key long, y double, x double"
    )
    return frame.select("*", F.lit(0.0).alias("cy"), F.lit(0.0).alias("cx"))


def test_weights_match_numpy_exactly(spark: SparkSession) -> None:
    keys = [0, 1, -1, 2**62, -(2**63), 2**63 - 1, 123456789]
    frame = spark.createDataFrame([(k,) for k in keys], "k long")
    hashed = frame.select(
        F.xxhash64(F.lit(SEED).cast("bigint"), F.col("k"), F.lit(3).cast("bigint"))
    ).collect()
    assert [r[0] for r in hashed] == numpy_xxhash64(np.int64(SEED), np.array(keys), 3).tolist()
    weights = frame.select(
        *[poisson_weight(SEED, F.col("k"), F.lit(b)).alias(f"b{b}") for b in range(40)]
    ).collect()
    assert [list(r) for r in weights] == numpy_weights(SEED, keys, 40).tolist()


def test_weights_are_poisson_one() -> None:
    w = numpy_weights(SEED, np.arange(20_000), 50).ravel()
    assert w.mean() == pytest.approx(1.0, abs=0.01)
    assert w.var() == pytest.approx(1.0, abs=0.02)
    assert np.mean(w == 0) == pytest.approx(np.exp(-1), abs=0.005)


def test_replicate_sums_equal_a_single_machine_bootstrap_with_the_same_weights(
    spark: SparkSession,
) -> None:
    rows = unit_rows(300)
    got = {
        (r["variant"], r["replicate"]): (r["w_y"], r["w_x"], r["w"], r["digits_y"], r["digits_x"])
        for r in replicate_frame(units_frame(spark, rows), B, SEED).collect()
    }
    for variant in ("control", "treatment"):
        mine = [r for r in rows if r[1] == variant]
        w = numpy_weights(SEED, [r[2] for r in mine], B)
        # Exact arithmetic: Decimal sums of integer weights times 4-decimal values.
        y = [Decimal(str(r[3])) for r in mine]
        x = [Decimal(str(r[4])) for r in mine]
        for b in range(B):
            expected_y = sum((int(wi) * yi for wi, yi in zip(w[:, b], y, strict=True)), Decimal(0))
            expected_x = sum((int(wi) * xi for wi, xi in zip(w[:, b], x, strict=True)), Decimal(0))
            w_y, w_x, w_sum, digits_y, digits_x = got[(variant, b)]
            assert min(digits_y, digits_x) >= 4  # 4-decimal values: nothing rounded away
            scale_y, scale_x = Decimal(10) ** digits_y, Decimal(10) ** digits_x
            assert (w_y, w_x, w_sum) == (expected_y * scale_y, expected_x * scale_x, w[:, b].sum())


def test_fixed_point_digits_are_chosen_per_metric(spark: SparkSession) -> None:
    rows = [("tiny", "a", 1, 1.5e-6, 1.0), ("huge", "a", 2, 3.0e9, 2.0e9)] * 50
    frame = spark.createDataFrame(
        rows, "metric string, variant string, unit_key long, y double, x double"
    )
    digits = fixed_point_digits(frame)
    assert digits["tiny"] == (10, 10)  # not rounded to the huge metric's precision
    weights = 50 + 10 * np.sqrt(50) + 18  # the bound on 50 units' Poisson weights
    assert digits["huge"][0] == int(np.floor(np.log10((2**63 - 1) / (weights * 3.0e9))))


def test_moments_equal_numpy(spark: SparkSession) -> None:
    rows = unit_rows(300)
    moments = collect_moments(moment_frame(units_frame(spark, rows)))
    for variant in ("control", "treatment"):
        y = np.array([r[3] for r in rows if r[1] == variant])
        x = np.array([r[4] for r in rows if r[1] == variant])
        expected = Moments.of_units(y, x, np.zeros_like(y), np.zeros_like(y))
        got = moments[("watch", variant)]
        assert got.n == expected.n
        np.testing.assert_allclose(got.sums, expected.sums, rtol=1e-13)
        np.testing.assert_allclose(got.cross, expected.cross, rtol=1e-13)


def test_moments_from_spark_keep_the_variance_of_values_far_from_zero(
    spark: SparkSession,
) -> None:
    """Values like 1e8 + N(0, 1): the covariance comes from the exact sums, not float ones."""
    rng = np.random.default_rng(11)
    y = np.round(1e8 + rng.normal(0, 1, 300), 4)
    x = np.round(2e6 + rng.normal(0, 3, 300), 4)
    rows = [
        ("level", "a", i, float(a), float(b)) for i, (a, b) in enumerate(zip(y, x, strict=True))
    ]
    got = collect_moments(moment_frame(units_frame(spark, rows)))[("level", "a")]
    np.testing.assert_allclose(got.covariance[:2, :2], np.cov(np.vstack([y, x])), rtol=1e-6)


def test_results_are_identical_for_any_partitioning(spark: SparkSession) -> None:
    units = units_frame(spark, unit_rows(500))

    def results(partitions: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        spread = units.repartition(partitions)
        moments = moment_frame(spread).orderBy("metric", "variant").collect()
        reps = replicate_frame(spread, 50, SEED).orderBy("variant", "replicate").collect()
        return [tuple(r) for r in moments], [tuple(r) for r in reps]

    one = results(1)
    assert results(3) == one
    assert results(16) == one


def test_percentile_interval_agrees_with_a_resampling_bootstrap(spark: SparkSession) -> None:
    """Poisson and classical (multinomial) bootstraps of the same lift agree within Monte
    Carlo error: interval ends within a tenth of the interval's width."""
    rows = unit_rows(2000, seed=11)
    replicates = 1000
    sums = collect_replicates(
        replicate_frame(units_frame(spark, rows), replicates, SEED), replicates
    )
    arms = {v: replicate_ratios(*sums[("watch", v)]) for v in ("control", "treatment")}
    y = {v: np.array([r[3] for r in rows if r[1] == v]) for v in ("control", "treatment")}
    x = {v: np.array([r[4] for r in rows if r[1] == v]) for v in ("control", "treatment")}
    point = {v: y[v].sum() / x[v].sum() for v in y}
    poisson = bootstrap_comparison(
        arms["control"], arms["treatment"], 0.05, point["control"], point["treatment"]
    )

    rng = np.random.default_rng(5)
    classical = {}
    for v in y:
        idx = rng.integers(0, len(y[v]), (replicates, len(y[v])))
        classical[v] = y[v][idx].sum(axis=1) / x[v][idx].sum(axis=1)
    resampled = bootstrap_comparison(
        classical["control"], classical["treatment"], 0.05, point["control"], point["treatment"]
    )
    width = resampled.lift_upper - resampled.lift_lower
    assert poisson.lift_lower == pytest.approx(resampled.lift_lower, abs=0.1 * width)
    assert poisson.lift_upper == pytest.approx(resampled.lift_upper, abs=0.1 * width)
    assert poisson.lift_lower < point["treatment"] - point["control"] < poisson.lift_upper


def weighted_lower_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose weighted share at or below it reaches q (single machine)."""
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    return float(v[np.searchsorted(cw, q * cw[-1], side="left")])


def test_a_quantile_grid_that_would_clip_grows_until_nothing_is_clipped(
    spark: SparkSession,
) -> None:
    """One unit holds 95% of an arm's events: when its weight is 0 (37% of replicates) the
    median drops to the other units' values, far below q - 6 SE of the first grid. The grid
    widens until every replicate quantile is the single-machine weighted quantile rounded
    up to the grid, and none is clamped."""
    rng = np.random.default_rng(21)
    rows = [("p50", "control", 1, float(v)) for v in np.round(rng.uniform(100, 200, 2000), 3)]
    for unit in range(2, 61):
        rows += [("p50", "control", unit, float(v)) for v in np.round(rng.uniform(0, 1, 2), 3)]
    for unit in range(100, 160):
        rows += [("p50", "treatment", unit, float(v)) for v in np.round(rng.uniform(0, 9, 5), 3)]
    events = spark.createDataFrame(
        rows, "metric string, variant string, unit_key long, value double"
    )
    units = {("p50", "control"): 60, ("p50", "treatment"): 60}
    replicates = 100
    arms = quantile_arms(events, {"p50": 0.5}, units, replicates, SEED)
    control = arms[("p50", "control")]
    values = np.array([r[3] for r in rows if r[1] == "control"])
    keys = np.array([r[2] for r in rows if r[1] == "control"])
    weights = numpy_weights(SEED, keys, replicates).astype(float)
    exact = np.array(
        [weighted_lower_quantile(values, weights[:, b], 0.5) for b in range(replicates)]
    )
    # The first grid (q +- 6 SE with 60 units) starts near the 11th percentile: today's
    # clamp would have moved every replicate whose big unit got weight 0.
    first_low = np.quantile(values, 0.5 - 6 * np.sqrt(0.25 / 60))
    assert np.sum(exact < first_low) > 20
    assert control.clipped == 0 and control.span_se > 6
    for b in range(replicates):
        above = control.grid[control.grid >= exact[b]]
        assert control.replicates[b] == above[0], b
    assert arms[("p50", "treatment")].span_se == 6  # a well-behaved arm keeps its grid


def test_quantile_replicates_of_a_large_arm_do_not_depend_on_partitioning(
    spark: SparkSession,
) -> None:
    """150,000 events per arm: beyond what an approximate percentile keeps exactly, so the
    grid comes from exact percentiles (it differed in 247 of 400 values between 1 and 7
    partitions with percentile_approx)."""
    frame = (
        spark.range(300_000)
        .select(
            F.lit("p90").alias("metric"),
            F.when(F.col("id") % 2 == 0, "control").otherwise("treatment").alias("variant"),
            (F.col("id") % 20_000).alias("unit_key"),
            F.exp(F.randn(5) + 3).alias("value"),
        )
        .localCheckpoint()
    )
    units = {("p90", "control"): 10_000, ("p90", "treatment"): 10_000}
    one = quantile_arms(frame.repartition(1), {"p90": 0.9}, units, 40, SEED)
    seven = quantile_arms(frame.repartition(7), {"p90": 0.9}, units, 40, SEED)
    for key, arm in one.items():
        np.testing.assert_array_equal(seven[key].grid, arm.grid)
        np.testing.assert_array_equal(seven[key].replicates, arm.replicates)

"""Statistical and determinism checks of the hash-based random column expressions."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import stats

from udfs import seeded_random as sr

N = 20_000
SEED = 7
WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05, "never": 0.0}


def _draws(spark: SparkSession, partitions: int) -> DataFrame:
    key = F.col("id")
    return spark.range(0, N, 1, partitions).select(
        "id",
        sr.uniform(SEED, "u", key).alias("u"),
        sr.uniform(SEED, "other", key).alias("u_other"),
        sr.uniform(SEED + 1, "u", key).alias("u_seed"),
        sr.normal(SEED, "z", key).alias("z"),
        sr.lognormal(SEED, "ln", key, median=30.0, sigma=0.8).alias("lognormal"),
        sr.exponential(SEED, "exp", key, mean=5.0).alias("exponential"),
        sr.pareto(SEED, "par", key, minimum=2.0, alpha=1.5).alias("pareto"),
        sr.categorical(sr.uniform(SEED, "cat", key), WEIGHTS).alias("cat"),
        sr.bernoulli(SEED, "bern", key, p=0.1).alias("bern"),
        sr.poisson(SEED, "p_small", key, lam=0.3).alias("p_small"),
        sr.poisson(SEED, "p_mid", key, lam=1.7).alias("p_mid"),
        sr.poisson(SEED, "p_big", key, lam=9.0).alias("p_big"),
        sr.uniform_int(SEED, "int", key, n=7).alias("int7"),
    )


@pytest.fixture(scope="module")
def draws(spark: SparkSession) -> Iterator[dict[str, np.ndarray]]:
    rows = _draws(spark, 3).orderBy("id").collect()
    columns = rows[0].asDict().keys()
    yield {c: np.array([row[c] for row in rows]) for c in columns}


def test_uniform_is_in_unit_interval_and_uniform(draws: dict[str, np.ndarray]) -> None:
    u = draws["u"]
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_streams_with_other_salt_or_seed_are_independent(draws: dict[str, np.ndarray]) -> None:
    # |r| of independent uniforms has sd 1/sqrt(N) ~ 0.007; 0.03 is over four sd.
    assert abs(np.corrcoef(draws["u"], draws["u_other"])[0, 1]) < 0.03
    assert abs(np.corrcoef(draws["u"], draws["u_seed"])[0, 1]) < 0.03
    assert not np.array_equal(draws["u"], draws["u_seed"])


def test_draws_do_not_depend_on_partitioning(spark: SparkSession) -> None:
    columns = ["id", "u", "z", "cat", "p_mid"]
    one = _draws(spark, 1).select(*columns)
    five = _draws(spark, 5).select(*columns)
    assert one.exceptAll(five).union(five.exceptAll(one)).count() == 0


def test_normal_mean_sd_and_shape(draws: dict[str, np.ndarray]) -> None:
    z = draws["z"]
    tolerance = 4 / math.sqrt(N)
    assert abs(z.mean()) < tolerance
    assert abs(z.std() - 1.0) < tolerance
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_lognormal_median_and_exponential_mean(draws: dict[str, np.ndarray]) -> None:
    assert np.median(draws["lognormal"]) == pytest.approx(30.0, rel=0.05)
    assert stats.kstest(np.log(draws["lognormal"] / 30.0) / 0.8, "norm").pvalue > 1e-3
    assert draws["exponential"].mean() == pytest.approx(5.0, rel=0.05)


def test_pareto_matches_its_distribution(draws: dict[str, np.ndarray]) -> None:
    sample = draws["pareto"]
    assert sample.min() >= 2.0
    assert stats.kstest(sample, "pareto", args=(1.5, 0, 2.0)).pvalue > 1e-3


def test_categorical_frequencies_match_weights(draws: dict[str, np.ndarray]) -> None:
    values, counts = np.unique(draws["cat"], return_counts=True)
    observed = dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert "never" not in observed
    names = ["a", "b", "c", "d"]
    expected = [WEIGHTS[n] * N for n in names]
    assert stats.chisquare([observed.get(n, 0) for n in names], expected).pvalue > 1e-3


def test_bernoulli_and_uniform_int(draws: dict[str, np.ndarray]) -> None:
    assert draws["bern"].mean() == pytest.approx(0.1, abs=4 * math.sqrt(0.09 / N))
    values, counts = np.unique(draws["int7"], return_counts=True)
    assert values.tolist() == list(range(7))
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize(("column", "lam"), [("p_small", 0.3), ("p_mid", 1.7), ("p_big", 9.0)])
def test_poisson_mean_and_variance(draws: dict[str, np.ndarray], column: str, lam: float) -> None:
    sample = draws[column]
    assert sample.min() >= 0
    assert sample.mean() == pytest.approx(lam, abs=4 * math.sqrt(lam / N))
    assert sample.var() == pytest.approx(lam, rel=0.06)


def test_poisson_exact_branch_matches_the_pmf(draws: dict[str, np.ndarray]) -> None:
    values, counts = np.unique(draws["p_mid"], return_counts=True)
    top = 6  # pool the tail so every expected cell is large enough for chi-square
    observed = [int(counts[values == k].sum()) for k in range(top)]
    observed.append(int(counts[values >= top].sum()))
    pmf = [stats.poisson.pmf(k, 1.7) for k in range(top)]
    expected = [p * N for p in [*pmf, 1 - sum(pmf)]]
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_sql_literals_round_trip(spark: SparkSession) -> None:
    values = ["it's", "back\\slash", 3, 2**40, 0.1, True]
    row = spark.range(1).select(sr.literal_array([str(v) for v in values]).alias("s")).first()
    assert row is not None and row["s"] == [str(v) for v in values]
    mapped = spark.range(1).select(sr.literal_map({"x": 0.25, "y'": 2.0})["y'"].alias("m"))
    assert mapped.first()["m"] == 2.0  # type: ignore[index]
    assert [sr.sql_literal(v) for v in (3, 2**40, 0.1, True)] == [
        "3",
        "1099511627776L",
        "0.1D",
        "true",
    ]


def test_invalid_arguments_are_rejected(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="at least one category"):
        sr.categorical(F.lit(0.5), {})
    with pytest.raises(ValueError, match="non-negative"):
        sr.categorical(F.lit(0.5), {"a": -1.0})
    with pytest.raises(ValueError, match="at least one key"):
        sr.uniform(1, "salt")
    with pytest.raises(ValueError, match="exact_below"):
        sr.poisson(1, "salt", "id", lam=1.0, exact_below=0.0)

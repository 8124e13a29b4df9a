"""64-bit limb sums (`jobs.metrics.exact_sums`) against Python's unbounded integers."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DecimalType,
    DoubleType,
    LongType,
    StructField,
    StructType,
)

from jobs.metrics.exact_sums import (
    combined,
    limbs,
    overflowed,
    product_sums,
    scaled_value,
    total_sums,
)
from udfs.exact_moments import from_limbs

BIG = 2**62


def _totals(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    """(cell, a sum's total, a count) per unit: huge, negative, tiny and zero totals."""
    out = []
    for i in range(n):
        kind = i % 4
        a = [rng.randrange(-BIG, BIG), rng.randrange(-1000, 1000), 0, -(2**63)][kind]
        out.append((i % 3, a, rng.randrange(0, 2**31)))
    return out


def test_limb_sums_are_the_exact_sums_of_products(spark: SparkSession) -> None:
    rows = _totals(random.Random(7), 3000)
    units = spark.createDataFrame(rows, "cell int, a long, n long").repartition(7)
    a, n = F.col("a"), F.col("n")
    aggs = [
        *total_sums(a, "ta"),
        *product_sums(limbs(a, count=False), None, "aa"),
        *product_sums(limbs(a, count=False), limbs(n, count=True), "an"),
        *product_sums(limbs(n, count=True), None, "nn"),
    ]
    cells = units.groupBy("cell").agg(*aggs)
    flags = cells.select("cell", overflowed(cells, ["ta", "aa", "an", "nn"]).alias("lost"))
    assert [r["lost"] for r in flags.collect()] == [0, 0, 0]
    got = {r["cell"]: r for r in combined(cells, ["ta"], ["aa", "an", "nn"]).collect()}
    for cell in range(3):
        mine = [(x, m) for c, x, m in rows if c == cell]
        assert int(got[cell]["ta"]) == sum(x for x, _ in mine)
        assert from_limbs(got[cell]["aa_h"], got[cell]["aa_l"]) == sum(x * x for x, _ in mine)
        assert from_limbs(got[cell]["an_h"], got[cell]["an_l"]) == sum(x * m for x, m in mine)
        assert from_limbs(got[cell]["nn_h"], got[cell]["nn_l"]) == sum(m * m for _, m in mine)


def test_a_sum_beyond_64_bits_is_flagged_not_wrapped(spark: SparkSession) -> None:
    units = spark.createDataFrame([(0, 3 * 10**9), (0, 3 * 10**9)], "cell int, n long")
    n = F.col("n")
    cells = units.groupBy("cell").agg(F.try_sum(n * n).alias("nn__g0"))
    row = cells.select(overflowed(cells, ["nn"]).alias("lost")).first()
    assert row is not None and row["lost"] == 1


@pytest.mark.parametrize(
    ("kind", "value", "decimals", "expected"),
    [
        (LongType(), 12, 3, 12_000),
        (LongType(), 2**62, 1, None),  # does not fit a long: null, counted by the pass
        (DoubleType(), 1.25, 1, 12),  # ties to even, like numpy.round
        (DoubleType(), -2.675, 2, round(-2.675 * 100)),  # the product in doubles, rounded
        (DoubleType(), 1e8 + 0.1234567, 6, round((1e8 + 0.1234567) * 10**6)),
        (DoubleType(), 1e300, 0, None),
        (DoubleType(), 2.0**63, 0, None),  # a cast alone would give the largest long
        (DoubleType(), float("nan"), 2, None),
        (DecimalType(38, 0), "1" + "0" * 30, 12, None),  # beyond DECIMAL(38,12): null
        (DecimalType(20, 4), "1.2345", 3, 1235),  # a DECIMAL rounds half up
    ],
)
def test_a_row_value_is_scaled_and_rounded_once(
    spark: SparkSession, kind: DataType, value: object, decimals: int, expected: int | None
) -> None:
    literal = Decimal(value) if isinstance(value, str) else value
    frame = spark.createDataFrame([(literal,)], StructType([StructField("v", kind)]))
    row = frame.select(scaled_value(F.col("v"), decimals, kind).alias("x")).first()
    assert row is not None and row["x"] == expected


def test_an_experiment_value_beyond_64_bits_stops_the_job(spark: SparkSession) -> None:
    from pyspark.errors import PySparkException

    from jobs.experiments.units import _part_sum
    from jobs.metrics.definitions import Part

    rows = spark.createDataFrame([("a", 1.5), ("a", 2e13), ("b", 1.0)], "unit string, v double")
    total = _part_sum(Part("s", "sum", "v", decimals=6), F.lit(True), rows)
    with pytest.raises(PySparkException, match="does not fit in 64 bits"):
        rows.groupBy("unit").agg(total.alias("t")).collect()
    fine = _part_sum(Part("s", "sum", "v", decimals=3), F.lit(True), rows)
    got = {r["unit"]: r["t"] for r in rows.groupBy("unit").agg(fine.alias("t")).collect()}
    assert got == {"a": 2e13 + 1.5, "b": 1.0}

"""Column helpers shared by the table builders: time, lookups and id ranges.

Time is carried as integer UTC epoch seconds and a window-relative day index; the DateType
`date` column comes from the day index, so it never depends on the session time zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.params import DAY_SECONDS, GeneratorParams, Window
from jobs.generate.scenario import Incident
from udfs import seeded_random as sr

V = TypeVar("V")


def id_range(spark: SparkSession, params: GeneratorParams, count: int) -> DataFrame:
    """`id` 0..count-1 with the requested partitioning (the only row source the builders use)."""
    return spark.range(0, count, 1, params.partitions)


def lookup(key: Column, mapping: Mapping[str, V]) -> Column:
    """`mapping[key]` as a column (null for unknown keys)."""
    return sr.literal_map(mapping)[key]


def idiv(numerator: Column, denominator: int | Column) -> Column:
    """Floor division of integers, as BIGINT."""
    return F.floor(numerator / denominator).cast("bigint")


def day_of(win: Window, epoch: Column) -> Column:
    """Window-relative day index of an epoch-seconds column (negative before the window)."""
    return idiv(epoch - win.start_epoch, DAY_SECONDS)


def date_of_day(win: Window, day: Column) -> Column:
    return F.date_add(F.lit(win.start_date), day.cast("int"))


def ts(epoch: Column) -> Column:
    """TimestampType (an instant) from integer epoch seconds."""
    return F.timestamp_seconds(epoch.cast("bigint"))


def day_start(win: Window, day: Column) -> Column:
    return F.lit(win.start_epoch) + day.cast("bigint") * DAY_SECONDS


def weekday_factor(win: Window, day: Column, factors: Sequence[float]) -> Column:
    """Monday-first weekly factors for window day indices."""
    first = win.start_date.weekday()
    weekday = F.pmod(day + first, F.lit(7)).cast("int")
    return F.element_at(sr.literal_array([float(f) for f in factors]), weekday + 1)


def time_of_day(seed: int, salt: str, *keys: Column) -> Column:
    """Seconds after midnight following the diurnal hour shape (BIGINT)."""
    weights = dict(enumerate(catalog.HOUR_WEIGHTS))
    hour = sr.categorical(sr.uniform(seed, f"{salt}:hour", *keys), weights)
    second = sr.uniform_int(seed, f"{salt}:second", *keys, n=3600)
    return hour.cast("bigint") * 3600 + second


def counted_sequence(count: Column) -> Column:
    """`[0, count)` as an array, empty for zero: exploding it replaces a filter on `count`.

    A filter on a computed count would be pushed below the projection that computes it and
    inline the whole (large) random expression; an empty array drops the row instead.
    """
    n = count.cast("int")
    return F.when(n > 0, F.sequence(F.lit(0), n - 1)).otherwise(F.array().cast("array<int>"))


def explode_days(df: DataFrame, first_day: Column, days: int) -> DataFrame:
    """One row per window day from `first_day` (clamped to 0) to the last, adding `day`.

    Per-entity attributes are computed once, before the explode, not once per day.
    """
    first = F.greatest(F.lit(0), first_day.cast("int"))
    span = F.when(first <= days - 1, F.sequence(first, F.lit(days - 1))).otherwise(
        F.array().cast("array<int>")
    )
    exploded = df.select("*", F.explode(span).alias("day_int"))
    return exploded.withColumn("day", F.col("day_int").cast("bigint")).drop("day_int")


def keep_rows(df: DataFrame, flag: Column) -> DataFrame:
    """Rows where `flag` is true, computing `flag` once in a projection.

    `df.where(flag)` lets the optimizer push the predicate below the projections that build
    its inputs, inlining their (large, random) expressions into the filter and evaluating
    them twice; exploding a zero- or one-element array drops rows without a predicate.
    """
    marked = df.select("*", flag.cast("int").alias("_keep"))
    kept = marked.select("*", F.explode(counted_sequence(F.col("_keep"))).alias("_kept"))
    return kept.drop("_keep", "_kept")


def seconds(value: Column) -> Column:
    """Round a duration in (double) seconds to whole seconds, at least one."""
    return F.greatest(F.lit(1), F.round(value).cast("bigint"))


def incident_multiplier(incident: Incident, day: Column) -> Column:
    """The incident's multiplier inside its slice and dates, else 1."""
    condition = day >= incident.start_day
    if incident.end_day is not None:
        condition &= day <= incident.end_day
    for dimension, value in incident.slice:
        condition &= F.col(dimension) == value
    return F.when(condition, F.lit(incident.magnitude)).otherwise(1.0)

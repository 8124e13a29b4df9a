"""Live sessions by creators, with rare mid-stream interruptions by enforcement."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.accounts import account_attrs
from jobs.generate.common import (
    counted_sequence,
    date_of_day,
    day_start,
    explode_days,
    id_range,
    idiv,
    seconds,
    time_of_day,
    ts,
)
from jobs.generate.params import GeneratorParams, sizes, window
from udfs import seeded_random as sr

MAX_DURATION_SECONDS = 12 * 3600
MAX_PEAK_VIEWERS = 5_000_000
FAKE_INTERRUPT_FACTOR = 4.0


def build_live_sessions(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    seed, win, days = params.seed, window(params), params.days
    rank = F.col("id")
    attrs = account_attrs(params, rank * catalog.CREATOR_STRIDE)
    creators = id_range(spark, params, sizes(params).creators).select(
        (rank * catalog.CREATOR_STRIDE).alias("streamer_id"),
        attrs.country.alias("country"),
        attrs.is_fake.alias("is_fake"),
        (F.sqrt(attrs.activity) * catalog.LIVE_PER_CREATOR_DAY).alias("rate"),
    )
    staged = explode_days(creators, F.lit(0), days).withColumnRenamed("rate", "lam")
    streamer, day = F.col("streamer_id"), F.col("day")
    count = sr.poisson(seed, "live:count", streamer, day, lam=F.col("lam"), exact_below=1.0)
    sessions = staged.select("*", F.least(count, F.lit(catalog.MAX_LIVE_PER_DAY)).alias("n"))
    exploded = sessions.select("*", F.explode(counted_sequence(F.col("n"))).alias("k"))
    session_id = (idiv(streamer, catalog.CREATOR_STRIDE) * days + day) * F.lit(
        catalog.MAX_LIVE_PER_DAY
    ) + F.col("k")
    sid = F.col("session_id")
    duration = F.least(
        F.lit(MAX_DURATION_SECONDS),
        seconds(
            sr.lognormal(
                seed, "live:duration", sid, median=catalog.LIVE_DURATION_MEDIAN_SECONDS, sigma=0.8
            )
        ),
    )
    interrupt_p = F.lit(catalog.LIVE_INTERRUPT_PROB) * F.when(
        F.col("is_fake"), F.lit(FAKE_INTERRUPT_FACTOR)
    ).otherwise(1.0)
    timed = exploded.select(
        session_id.alias("session_id"),
        "streamer_id",
        "day",
        "country",
        (day_start(win, day) + time_of_day(seed, "live:start", session_id)).alias("started"),
        duration.alias("duration"),
        sr.bernoulli(seed, "live:interrupted", session_id, p=interrupt_p).alias("interrupted"),
    )
    to_interrupt = F.least(
        F.col("duration") - 1,
        seconds(sr.lognormal(seed, "live:to_interrupt", sid, median=600.0, sigma=1.0)),
    )
    interrupted = F.col("interrupted")
    with_cut = timed.select(
        "*", F.when(interrupted, F.greatest(F.lit(1), to_interrupt)).alias("to_interrupt")
    )
    ended = F.col("started") + F.coalesce(F.col("to_interrupt"), F.col("duration"))
    peak = F.floor(sr.pareto(seed, "live:peak", sid, minimum=2.0, alpha=1.15))
    policy = sr.categorical(sr.uniform(seed, "live:policy", sid), catalog.LIVE_INTERRUPT_POLICY)
    return with_cut.select(
        "session_id",
        "streamer_id",
        ts(F.col("started")).alias("started_at"),
        F.when(ended < win.end_epoch, ts(ended)).alias("ended_at"),
        date_of_day(win, day).alias("date"),
        "country",
        F.least(F.lit(MAX_PEAK_VIEWERS), peak.cast("bigint")).alias("peak_viewers"),
        "interrupted",
        F.when(interrupted, ts(F.col("started") + F.col("to_interrupt"))).alias("interrupted_at"),
        F.when(interrupted, policy).alias("interrupt_policy"),
        F.col("to_interrupt").alias("seconds_to_interrupt"),
    )

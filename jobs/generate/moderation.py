"""Moderation actions: at most one per video, actioned inside the window.

Most violating uploads are actioned (recall < 1) and a few clean ones are actioned by
mistake (the false positives, which are far likelier to be appealed and reinstated).
Automated detections are fast and often pre-publication (no views); human and report-driven
ones take hours to days. The drift incident slows automated actions by detection day.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.accounts import account_attrs
from jobs.generate.common import date_of_day, day_of, keep_rows, lookup, seconds, ts
from jobs.generate.params import DAY_SECONDS, GeneratorParams, window
from jobs.generate.scenario import Incident, incidents
from jobs.generate.videos import (
    content_type_of,
    is_violating_of,
    policy_of,
    uploaded_epoch_of,
    uploader_of,
    video_ids,
)
from udfs import seeded_random as sr

ACTION_ID_BASE = 10**13
HOUR = 3600.0


def false_positive_rate() -> float:
    """P(action | clean upload) that makes false positives the stated share of actions."""
    violating = sum(
        catalog.UPLOAD_CONTENT_MIX[c] * catalog.UPLOAD_VIOLATING_SHARE[c]
        for c in catalog.CONTENT_TYPES
    )
    share = catalog.FALSE_POSITIVE_SHARE
    return share * catalog.ACTION_RECALL * violating / ((1.0 - share) * (1.0 - violating))


def drift_multiplier(drift: Incident, day: Column) -> Column:
    """1 before the drift, rising linearly to the magnitude on its last day, then holding."""
    if drift.end_day is None:
        raise ValueError(f"drift incident {drift.incident_id} needs an end day")
    length = drift.end_day - drift.start_day + 1
    progress = (day - (drift.start_day - 1)).cast("double") / (float(length))
    ramp = F.lit(1.0) + (drift.magnitude - 1.0) * F.least(
        F.lit(1.0), F.greatest(F.lit(0.0), progress)
    )
    in_slice = F.lit(True)
    for dimension, value in drift.slice:
        in_slice &= F.col(dimension) == value
    return F.when(in_slice, ramp).otherwise(1.0)


def _detection_delay(seed: int, vid: Column) -> Column:
    source = F.col("source")
    return (
        F.when(F.col("prepublication"), sr.uniform(seed, "mod:prepub", vid) * 60.0)
        .when(source == "automated", sr.exponential(seed, "mod:auto", vid, mean=6 * HOUR))
        .when(source == "human", sr.lognormal(seed, "mod:human", vid, median=12 * HOUR, sigma=1.0))
        .otherwise(sr.lognormal(seed, "mod:report", vid, median=30 * HOUR, sigma=1.0))
    )


def build_moderation_actions(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    seed, win = params.seed, window(params)
    drift = incidents(params)[2]
    vid = F.col("video_id")
    violating = is_violating_of(vid)
    actioned = F.when(
        violating, sr.bernoulli(seed, "mod:actioned", vid, p=catalog.ACTION_RECALL)
    ).otherwise(sr.bernoulli(seed, "mod:actioned", vid, p=false_positive_rate()))
    u_source = sr.uniform(seed, "mod:source", vid)
    source = F.when(violating, sr.categorical(u_source, catalog.SOURCE_CORRECT)).otherwise(
        sr.categorical(u_source, catalog.SOURCE_FALSE_POSITIVE)
    )
    picked = (
        video_ids(spark, params)
        .where(actioned)
        .select(
            "video_id",
            violating.alias("is_correct"),
            source.alias("source"),
            uploaded_epoch_of(params, vid).alias("uploaded_epoch"),
        )
    )
    prepublication = (F.col("source") == "automated") & sr.bernoulli(
        seed, "mod:prepublication", vid, p=catalog.PREPUBLICATION_SHARE
    )
    staged = picked.select("*", prepublication.alias("prepublication"))
    detected = staged.select(
        "*", (F.col("uploaded_epoch") + seconds(_detection_delay(seed, vid))).alias("detected")
    )
    src = F.col("source")
    tta = sr.lognormal(
        seed,
        "mod:tta",
        vid,
        median=lookup(src, catalog.TTA_MEDIAN_SECONDS),
        sigma=lookup(src, catalog.TTA_SIGMA),
    ) * drift_multiplier(drift, day_of(win, F.col("detected")))
    timed = detected.select("*", (F.col("detected") + seconds(tta)).alias("actioned"))
    actioned_at = F.col("actioned")
    in_window = (actioned_at >= win.start_epoch) & (actioned_at < win.end_epoch)
    acted = keep_rows(timed, in_window)
    return _with_outcomes(params, acted)


def _with_outcomes(params: GeneratorParams, acted: DataFrame) -> DataFrame:
    """Views before action, the action taken, and appeals observed by the window's end."""
    seed, win = params.seed, window(params)
    vid, correct = F.col("video_id"), F.col("is_correct")
    exposure_hours = (F.col("actioned") - F.col("uploaded_epoch")).cast("double") / HOUR
    reach = sr.lognormal(
        seed,
        "mod:views",
        vid,
        median=F.lit(25.0) * F.pow(F.lit(1.0) + exposure_hours, F.lit(0.6)),
        sigma=1.3,
    )
    views_before = F.when(F.col("prepublication"), F.lit(0)).otherwise(F.floor(reach))
    wrong_policy = sr.categorical(sr.uniform(seed, "mod:fp_policy", vid), catalog.POLICY_WEIGHTS)
    policy = F.when(correct, policy_of(params, vid)).otherwise(wrong_policy)
    kind = F.when(correct, F.lit("correct")).otherwise("false_positive")
    appeal_p = lookup(kind, catalog.APPEAL_PROB)
    appeal_delay = sr.lognormal(seed, "mod:appeal_delay", vid, median=20 * HOUR, sigma=1.0)
    appealed_epoch = F.col("actioned") + seconds(appeal_delay)
    appealed = sr.bernoulli(seed, "mod:appealed", vid, p=appeal_p) & (
        appealed_epoch < win.end_epoch
    )
    reinstate_delay = sr.lognormal(
        seed, "mod:reinstate_delay", vid, median=2.0 * DAY_SECONDS, sigma=0.8
    )
    with_appeal = acted.select(
        "*",
        policy.alias("policy"),
        views_before.cast("bigint").alias("views_before_action"),
        appealed.alias("appealed"),
        F.when(appealed, appealed_epoch).alias("appealed_epoch"),
        sr.bernoulli(seed, "mod:reinstated", vid, p=lookup(kind, catalog.REINSTATE_PROB)).alias(
            "reinstate_draw"
        ),
    )
    reinstated_epoch = F.col("appealed_epoch") + seconds(reinstate_delay)
    reinstated = F.col("appealed") & F.col("reinstate_draw") & (reinstated_epoch < win.end_epoch)
    action = sr.categorical(sr.uniform(seed, "mod:action", vid), catalog.ACTION_WEIGHTS)
    uploader = account_attrs(params, uploader_of(params, vid))
    return with_appeal.select(
        (F.lit(ACTION_ID_BASE) + vid).alias("action_id"),
        "video_id",
        date_of_day(win, day_of(win, F.col("actioned"))).alias("date"),
        "policy",
        F.when(F.col("policy") == "child_safety", F.lit("remove"))
        .otherwise(action)
        .alias("action"),
        "source",
        ts(F.col("detected")).alias("detected_at"),
        ts(F.col("actioned")).alias("actioned_at"),
        (F.col("actioned") - F.col("detected")).alias("time_to_action_seconds"),
        "views_before_action",
        "is_correct",
        "appealed",
        ts(F.col("appealed_epoch")).alias("appealed_at"),
        F.coalesce(reinstated, F.lit(False)).alias("reinstated"),
        F.when(reinstated, ts(reinstated_epoch)).alias("reinstated_at"),
        uploader.country.alias("country"),
        content_type_of(vid).alias("content_type"),
    )

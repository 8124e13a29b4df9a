"""Uploads, and video attributes as pure functions of `video_id`.

A video id is `index * 8 + code`, where `code = content_type_index * 2 + is_violating`. A
view can then choose "a violating short" by building an id in that block, and any table can
read a video's content type, violation, policy, upload time and uploader from its id alone.
Within a block, indices are in upload order, so "uploaded before day d" is an index bound.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.accounts import account_attrs
from jobs.generate.common import date_of_day, day_of, id_range, idiv, ts
from jobs.generate.params import DAY_SECONDS, GeneratorParams, sizes, window
from udfs import seeded_random as sr

CODES = 2 * len(catalog.CONTENT_TYPES)


def _per_code(values: tuple[int, ...], code: Column) -> Column:
    return F.element_at(sr.literal_array(values), code.cast("int") + 1)


def content_index(content_type: Column) -> Column:
    mapping = {name: i for i, name in enumerate(catalog.CONTENT_TYPES)}
    return sr.literal_map(mapping)[content_type]


def content_type_of(video_id: Column) -> Column:
    types = sr.literal_array(catalog.CONTENT_TYPES)
    return F.element_at(types, idiv(F.pmod(video_id, F.lit(CODES)), 2).cast("int") + 1)


def is_violating_of(video_id: Column) -> Column:
    return F.pmod(video_id, F.lit(2)) == 1


def policy_of(params: GeneratorParams, video_id: Column) -> Column:
    """The violated policy, or null for a clean video."""
    policy = sr.categorical(
        sr.uniform(params.seed, "video:policy", video_id), catalog.POLICY_WEIGHTS
    )
    return F.when(is_violating_of(video_id), policy)


def uploaded_epoch_of(params: GeneratorParams, video_id: Column) -> Column:
    """Uploads spread evenly over the lead-in plus the window, in index order per block."""
    win = window(params)
    span = (catalog.CATALOG_LEAD_DAYS + params.days) * DAY_SECONDS
    first = win.start_epoch - catalog.CATALOG_LEAD_DAYS * DAY_SECONDS
    code = F.pmod(video_id, F.lit(CODES))
    block = _per_code(sizes(params).videos_by_code, code).cast("double")
    index = idiv(video_id, CODES).cast("double")
    jitter = sr.uniform(params.seed, "video:upload", video_id)
    return F.lit(first) + F.floor((index + jitter) / block * (float(span))).cast("bigint")


def uploader_of(params: GeneratorParams, video_id: Column) -> Column:
    """A creator account; u**3 concentrates uploads on a few prolific creators."""
    u = sr.uniform(params.seed, "video:uploader", video_id)
    rank = F.floor(F.pow(u, F.lit(3.0)) * (sizes(params).creators)).cast("bigint")
    return rank * catalog.CREATOR_STRIDE


def pick_video(params: GeneratorParams, u: Column, code: Column, day: Column) -> Column:
    """A video of block `code` uploaded before window day `day`, biased to recent uploads."""
    lead = catalog.CATALOG_LEAD_DAYS
    block = _per_code(sizes(params).videos_by_code, code).cast("double")
    fraction = (day.cast("double") + (float(lead))) / (float(lead + params.days))
    available = F.greatest(F.lit(1), F.floor(block * fraction).cast("bigint"))
    offset = F.floor(available.cast("double") * F.pow(u, F.lit(catalog.RECENCY_POWER)))
    index = available - 1 - offset.cast("bigint")
    return index * CODES + code.cast("bigint")


def video_ids(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """`video_id` for every video: one id range, cut into the blocks in code order.

    One range rather than a union of eight keeps a single (large) generated stage.
    """
    counts = sizes(params).videos_by_code
    starts = [sum(counts[:code]) for code in range(len(counts))]
    row = F.col("id")
    code = sum(((row >= start).cast("int") for start in starts[1:]), F.lit(0))
    index = row - F.element_at(sr.literal_array(starts), code + 1)
    return id_range(spark, params, sum(counts)).select((index * CODES + code).alias("video_id"))


def build_uploads(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """Every video in the catalogue, including the lead-in before the window (dated then)."""
    win = window(params)
    video_id = F.col("video_id")
    with_time = video_ids(spark, params).select(
        "video_id",
        uploader_of(params, video_id).alias("uploader_id"),
        uploaded_epoch_of(params, video_id).alias("uploaded_epoch"),
    )
    uploader = account_attrs(params, F.col("uploader_id"))
    return with_time.select(
        "video_id",
        "uploader_id",
        ts(F.col("uploaded_epoch")).alias("uploaded_at"),
        date_of_day(win, day_of(win, F.col("uploaded_epoch"))).alias("date"),
        uploader.country.alias("country"),
        content_type_of(video_id).alias("content_type"),
        is_violating_of(video_id).alias("is_violating"),
        policy_of(params, video_id).alias("policy"),
    )

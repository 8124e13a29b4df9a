"""Accounts, and account attributes as pure functions of `account_id`.

Every table that mentions an account (viewer, uploader, streamer, experiment unit) computes
that account's country, creation time, fakeness and activity from its id with these same
expressions, so all tables agree without a single join.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.common import id_range, time_of_day, ts
from jobs.generate.params import DAY_SECONDS, GeneratorParams, sizes, window
from udfs import seeded_random as sr


@dataclass(frozen=True)
class AccountAttrs:
    """Column expressions for one account id column."""

    country: Column
    created_epoch: Column
    created_day: Column  # window day index of creation (negative: before the window)
    is_fake: Column
    is_creator: Column
    activity: Column  # mean-one lognormal multiplier of viewing and login rates


def account_attrs(params: GeneratorParams, account_id: Column) -> AccountAttrs:
    """Creators are old accounts (they uploaded the pre-window catalogue); fakes skew new."""
    seed, win = params.seed, window(params)
    is_creator = F.pmod(account_id, F.lit(catalog.CREATOR_STRIDE)) == 0
    is_new = ~is_creator & sr.bernoulli(seed, "acct:new", account_id, p=catalog.NEW_ACCOUNT_SHARE)
    clock = time_of_day(seed, "acct:created", account_id)
    new_day = sr.uniform_int(seed, "acct:new_day", account_id, n=params.days)
    age = sr.exponential(seed, "acct:age", account_id, mean=catalog.OLD_ACCOUNT_MEAN_AGE_DAYS)
    old_days = (
        F.lit(1)
        + F.floor(F.least(age, F.lit(5000.0))).cast("bigint")
        + F.when(is_creator, F.lit(catalog.CATALOG_LEAD_DAYS + 30)).otherwise(0)
    )
    created_day = F.when(is_new, new_day).otherwise(-old_days)
    created_epoch = F.lit(win.start_epoch) + created_day * DAY_SECONDS + clock
    fake_p = F.when(is_new, F.lit(catalog.FAKE_SHARE_NEW)).otherwise(catalog.FAKE_SHARE_OLD)
    is_fake = sr.bernoulli(seed, "acct:fake", account_id, p=fake_p)
    sigma = catalog.ACTIVITY_SIGMA
    activity = F.least(
        F.lit(80.0), sr.lognormal(seed, "acct:activity", account_id, median=1.0, sigma=sigma)
    ) * math.exp(-sigma * sigma / 2)  # mean one
    activity = activity * F.when(is_fake, F.lit(catalog.FAKE_ACTIVITY)).otherwise(1.0)
    country = sr.categorical(sr.uniform(seed, "acct:country", account_id), catalog.COUNTRY_WEIGHTS)
    return AccountAttrs(
        country=country,
        created_epoch=created_epoch,
        created_day=created_day,
        is_fake=is_fake,
        is_creator=is_creator,
        activity=activity,
    )


def _age_bucket(age_days: Column) -> Column:
    expr = F.when(age_days < catalog.AGE_BUCKETS[0][0], F.lit(catalog.AGE_BUCKETS[0][1]))
    for limit, name in catalog.AGE_BUCKETS[1:]:
        expr = expr.when(age_days < limit, F.lit(name))
    return expr.otherwise(catalog.OLDEST_AGE_BUCKET)


def build_accounts(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """One row per account; `account_age_bucket` is the age at the end of the window."""
    win = window(params)
    account_id = F.col("id")
    attrs = account_attrs(params, account_id)
    base = id_range(spark, params, sizes(params).accounts).select(
        account_id.alias("account_id"),
        attrs.created_epoch.alias("created_epoch"),
        attrs.country.alias("country"),
        attrs.is_fake.alias("is_fake"),
        attrs.is_creator.alias("is_creator"),
    )
    age_days = (F.lit(win.end_epoch) - F.col("created_epoch")) / DAY_SECONDS
    return base.select(
        "account_id",
        ts(F.col("created_epoch")).alias("created_at"),
        "country",
        _age_bucket(age_days).alias("account_age_bucket"),
        "is_fake",
        "is_creator",
    )

"""Security events and privacy requests, both driven by per-account attributes.

Security events come from (account, day) pairs: independent Poisson counts per event type,
with rates proportional to logins (so "per login" rates are exact in expectation), then
exploded. Fake accounts get one `fake_account_blocked` event and stop logging in after it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.accounts import account_attrs
from jobs.generate.common import (
    date_of_day,
    day_of,
    day_start,
    explode_days,
    id_range,
    incident_multiplier,
    lookup,
    seconds,
    time_of_day,
    ts,
)
from jobs.generate.params import DAY_SECONDS, GeneratorParams, sizes, window
from jobs.generate.scenario import incidents
from udfs import seeded_random as sr

BLOCKED = "fake_account_blocked"
REQUEST_ID_BASE = 2 * 10**13
#: Poisson exact-branch bounds near the largest per-account-day rates of each kind.
LOGIN_EXACT_BELOW = 2.0
RARE_EXACT_BELOW = 0.1
REQUEST_DAYS_MEDIAN_SHARE = 0.35  # median fulfilment time as a share of the SLA


def _repeat(event_type: str, count: Column) -> Column:
    return F.array_repeat(F.lit(event_type), count.cast("int"))


def build_security_events(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    seed, win, days = params.seed, window(params), params.days
    shift = incidents(params)[1]
    account = F.col("id")
    attrs = account_attrs(params, account)
    block_delay = sr.exponential(
        seed, "sec:block_delay", account, mean=catalog.FAKE_BLOCK_MEAN_DAYS * DAY_SECONDS
    )
    blocked = attrs.is_fake & sr.bernoulli(seed, "sec:blocked", account, p=catalog.FAKE_BLOCK_PROB)
    accounts = id_range(spark, params, sizes(params).accounts).select(
        account.alias("account_id"),
        attrs.country.alias("country"),
        attrs.created_day.alias("created_day"),
        F.when(blocked, attrs.created_epoch + F.floor(block_delay).cast("bigint")).alias(
            "blocked_epoch"
        ),
        (F.sqrt(attrs.activity) * catalog.LOGINS_PER_ACCOUNT_DAY).alias("logins"),
    )
    staged = explode_days(accounts, F.col("created_day"), days)
    account, day = F.col("account_id"), F.col("day")
    blocked_day = day_of(win, F.col("blocked_epoch"))
    active = (day > F.col("created_day")) & F.coalesce(day <= blocked_day, F.lit(True))
    rates = staged.select(
        "account_id",
        "day",
        "country",
        "blocked_epoch",
        F.coalesce(blocked_day == day, F.lit(False)).alias("blocked_today"),
        F.when(active, F.col("logins")).otherwise(0.0).alias("lam"),
        incident_multiplier(shift, day).alias("shift"),
    )
    per_type = {"login": F.col("lam")}
    for event_type, per_login in catalog.SECURITY_PER_LOGIN.items():
        rate = F.col("lam") * per_login
        per_type[event_type] = rate * F.col("shift") if event_type == "suspicious_login" else rate
    # Rates, then counts, then events, each in its own projection: a count repeats its rate
    # in every unrolled term, so the rate must be a column, not an inlined expression.
    with_rates = rates.select(
        "account_id", "day", "country", "blocked_epoch", "blocked_today",
        *[rate.alias(f"rate_{name}") for name, rate in per_type.items()],
    )  # fmt: skip
    with_counts = with_rates.select(
        "account_id", "day", "country", "blocked_epoch", "blocked_today",
        *[
            sr.poisson(
                seed, f"sec:{name}", account, day, lam=F.col(f"rate_{name}"),
                exact_below=LOGIN_EXACT_BELOW if name == "login" else RARE_EXACT_BELOW,
            ).alias(f"n_{name}")
            for name in per_type
        ],
    )  # fmt: skip
    counts = [_repeat(name, F.col(f"n_{name}")) for name in per_type]
    counts.append(_repeat(BLOCKED, F.col("blocked_today").cast("int")))
    events = F.slice(F.concat(*counts), 1, catalog.MAX_EVENTS_PER_DAY)
    exploded = with_counts.select(
        "account_id", "day", "country", "blocked_epoch", F.posexplode(events).alias("pos", "type")
    )
    event_id = (account * days + day) * catalog.MAX_EVENTS_PER_DAY + F.col("pos")
    clock = day_start(win, day) + time_of_day(seed, "sec:time", event_id)
    epoch = F.when(F.col("type") == BLOCKED, F.col("blocked_epoch")).otherwise(clock)
    timed = exploded.select("*", event_id.alias("event_id"), epoch.alias("epoch"))
    return timed.select(
        "event_id",
        "account_id",
        ts(F.col("epoch")).alias("event_at"),
        date_of_day(win, day_of(win, F.col("epoch"))).alias("date"),
        "country",
        F.col("type").alias("event_type"),
    )


def build_privacy_requests(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """Data-subject requests; SLA by jurisdiction; unfulfilled by the window's end = open."""
    seed, win = params.seed, window(params)
    account = F.col("id")
    attrs = account_attrs(params, account)
    first_day = F.greatest(F.lit(0), attrs.created_day + 1)
    span = F.lit(params.days) - first_day
    day = first_day + sr.uniform_int(seed, "priv:day", account, n=span.cast("double"))
    requesters = id_range(spark, params, sizes(params).accounts).where(
        sr.bernoulli(seed, "priv:asks", account, p=catalog.PRIVACY_REQUEST_PROB) & (span > 0)
    )
    staged = requesters.select(
        account.alias("account_id"),
        attrs.country.alias("country"),
        (day_start(win, day) + time_of_day(seed, "priv:time", account)).alias("received"),
    )
    jurisdiction = F.coalesce(
        lookup(F.col("country"), catalog.JURISDICTION), F.lit(catalog.DEFAULT_JURISDICTION)
    )
    with_sla = staged.select("*", jurisdiction.alias("jurisdiction")).select(
        "*", lookup(F.col("jurisdiction"), catalog.SLA_DAYS).alias("sla_days")
    )
    sla = F.col("sla_days")
    took = sr.lognormal(
        seed,
        "priv:took",
        F.col("account_id"),
        median=sla.cast("double") * (REQUEST_DAYS_MEDIAN_SHARE * DAY_SECONDS),
        sigma=0.6,
    )
    never = sr.bernoulli(seed, "priv:never", F.col("account_id"), p=catalog.PRIVACY_NEVER_FULFILLED)
    done = F.col("received") + seconds(took)
    fulfilled = F.when(~never & (done < win.end_epoch), done)
    deadline = F.col("received") + sla.cast("bigint") * DAY_SECONDS
    timed = with_sla.select("*", fulfilled.alias("fulfilled"), deadline.alias("deadline"))
    within = F.when(F.col("fulfilled").isNotNull(), F.col("fulfilled") <= F.col("deadline")).when(
        F.col("deadline") < win.end_epoch, F.lit(False)
    )
    request_type = sr.categorical(
        sr.uniform(seed, "priv:type", F.col("account_id")), catalog.PRIVACY_REQUEST_TYPES
    )
    return timed.select(
        (F.lit(REQUEST_ID_BASE) + F.col("account_id")).alias("request_id"),
        "account_id",
        request_type.alias("request_type"),
        "country",
        "jurisdiction",
        ts(F.col("received")).alias("received_at"),
        date_of_day(win, day_of(win, F.col("received"))).alias("date"),
        ts(F.col("fulfilled")).alias("fulfilled_at"),
        "sla_days",
        within.alias("fulfilled_within_sla"),
    )

"""Views (the big table) and the user reports filed from them.

Rows come from (viewer, day) pairs: a Poisson count with a heavy-tailed per-viewer rate and
a weekly shape, exploded into views. Each view first decides whether it lands on violating
content, with a rate set by country, surface, content type, the spike incident and the
ranking experiment, and then picks a video from the matching id block (see `videos.py`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate import catalog
from jobs.generate.accounts import account_attrs
from jobs.generate.common import (
    counted_sequence,
    date_of_day,
    day_of,
    day_start,
    explode_days,
    id_range,
    incident_multiplier,
    keep_rows,
    lookup,
    seconds,
    time_of_day,
    ts,
    weekday_factor,
)
from jobs.generate.experiments import assignment
from jobs.generate.params import GeneratorParams, sizes, window
from jobs.generate.scenario import experiments, incidents
from jobs.generate.videos import content_index, pick_video, policy_of
from udfs import seeded_random as sr

VIEW_COLUMNS = (
    "view_id", "viewer_id", "video_id", "viewed_at", "date", "country", "surface",
    "content_type", "watch_seconds", "is_violative", "policy",
)  # fmt: skip


def _mean_violative_multiplier() -> float:
    """E[country x surface x content multiplier], so the base rate hits the stated share."""
    country = sum(
        w * catalog.VIOLATIVE_BY_COUNTRY[c] for c, w in catalog.COUNTRY_WEIGHTS.items()
    ) / sum(catalog.COUNTRY_WEIGHTS.values())
    surface_total = sum(catalog.SURFACE_WEIGHTS.values())
    by_surface = 0.0
    for surface, weight in catalog.SURFACE_WEIGHTS.items():
        mix = (
            catalog.SHORTS_FEED_CONTENT
            if surface == "shorts_feed"
            else catalog.OTHER_SURFACE_CONTENT
        )
        content = sum(w * catalog.VIOLATIVE_BY_CONTENT[c] for c, w in mix.items()) / sum(
            mix.values()
        )
        by_surface += weight / surface_total * catalog.VIOLATIVE_BY_SURFACE[surface] * content
    return country * by_surface


def _treated_from(params: GeneratorParams, index: int, viewer: Column, created: Column) -> Column:
    """Epoch from which this viewer's events are treated in experiment `index`, else null."""
    exp = experiments(params)[index]
    assigned = assignment(params, exp, viewer, created)
    return F.when(assigned.variant == exp.treatment, assigned.assigned_epoch)


def _viewer_days(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """(viewer, day, n): viewer attributes once per account, then a Poisson count per day."""
    seed, win = params.seed, window(params)
    viewer = F.col("id")
    attrs = account_attrs(params, viewer)
    created = attrs.created_epoch
    viewers = id_range(spark, params, sizes(params).accounts).select(
        viewer.alias("viewer_id"),
        attrs.country.alias("country"),
        (attrs.created_day + 1).alias("first_day"),
        (attrs.activity * catalog.VIEWS_PER_ACCOUNT_DAY).alias("rate"),
        _treated_from(params, 0, viewer, created).alias("ranking_treated_from"),
        _treated_from(params, 1, viewer, created).alias("reports_treated_from"),
    )
    day = F.col("day")
    with_rate = explode_days(viewers, F.col("first_day"), params.days).select(
        "*", (F.col("rate") * weekday_factor(win, day, catalog.WEEKDAY_VIEW_FACTOR)).alias("lam")
    )
    count = sr.poisson(seed, "views:count", F.col("viewer_id"), day, lam=F.col("lam"))
    return with_rate.select(
        "viewer_id",
        "day",
        "country",
        "ranking_treated_from",
        "reports_treated_from",
        F.least(count, F.lit(catalog.MAX_VIEWS_PER_DAY - 1)).alias("n"),
    )


def views_with_internals(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """Views plus `epoch`, `day` and `reports_treated_from`, which the reports builder needs."""
    seed, win, days = params.seed, window(params), params.days
    spike = incidents(params)[0]
    ranking = experiments(params)[0]
    exploded = _viewer_days(spark, params).select(
        "*", F.explode(counted_sequence(F.col("n"))).alias("k")
    )
    view_id = (F.col("viewer_id") * days + F.col("day")) * F.lit(catalog.MAX_VIEWS_PER_DAY) + F.col(
        "k"
    )
    surface = sr.categorical(sr.uniform(seed, "views:surface", view_id), catalog.SURFACE_WEIGHTS)
    keyed = exploded.select(
        view_id.alias("view_id"),
        "viewer_id",
        "day",
        "country",
        "ranking_treated_from",
        "reports_treated_from",
        (day_start(win, F.col("day")) + time_of_day(seed, "views:time", view_id)).alias("epoch"),
        surface.alias("surface"),
    )
    vid = F.col("view_id")
    u_content = sr.uniform(seed, "views:content", vid)
    content = F.when(
        F.col("surface") == "shorts_feed", sr.categorical(u_content, catalog.SHORTS_FEED_CONTENT)
    ).otherwise(sr.categorical(u_content, catalog.OTHER_SURFACE_CONTENT))
    treated = F.coalesce(F.col("epoch") >= F.col("ranking_treated_from"), F.lit(False))
    rate = (
        F.lit(catalog.VIOLATIVE_VIEW_RATE / _mean_violative_multiplier())
        * lookup(F.col("country"), catalog.VIOLATIVE_BY_COUNTRY)
        * lookup(F.col("surface"), catalog.VIOLATIVE_BY_SURFACE)
        * lookup(F.col("content_type"), catalog.VIOLATIVE_BY_CONTENT)
        * incident_multiplier(spike, F.col("day"))
        * F.when(treated, F.lit(1.0 + ranking.effect("violative_view_rate"))).otherwise(1.0)
    )
    with_content = keyed.select("*", content.alias("content_type"))
    with_flag = with_content.select(
        "*", sr.bernoulli(seed, "views:violative", vid, p=rate).alias("is_violative")
    )
    code = content_index(F.col("content_type")) * 2 + F.col("is_violative").cast("int")
    video_id = pick_video(params, sr.uniform(seed, "views:video", vid), code, F.col("day"))
    ctype = F.col("content_type")
    watch = sr.lognormal(
        seed,
        "views:watch",
        vid,
        median=lookup(ctype, catalog.WATCH_MEDIAN_SECONDS),
        sigma=lookup(ctype, catalog.WATCH_SIGMA),
    )
    with_video = with_flag.select(
        "*",
        video_id.alias("video_id"),
        F.least(seconds(watch), lookup(ctype, catalog.WATCH_CAP_SECONDS).cast("bigint")).alias(
            "watch_seconds"
        ),
    )
    return with_video.select(
        "*",
        ts(F.col("epoch")).alias("viewed_at"),
        date_of_day(win, F.col("day")).alias("date"),
        policy_of(params, F.col("video_id")).alias("policy"),
    )


def build_views(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    return views_with_internals(spark, params).select(*VIEW_COLUMNS)


def build_user_reports(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """Reports filed from views: likelier on violating content and under the new button."""
    seed, win = params.seed, window(params)
    button = experiments(params)[1]
    views = views_with_internals(spark, params)
    vid = F.col("view_id")
    treated = F.coalesce(F.col("epoch") >= F.col("reports_treated_from"), F.lit(False))
    probability = F.when(F.col("is_violative"), F.lit(catalog.REPORT_PROB_VIOLATIVE)).otherwise(
        F.lit(catalog.REPORT_PROB_CLEAN)
    ) * F.when(treated, F.lit(1.0 + button.effect("user_reports_per_1k_views"))).otherwise(
        F.lit(1.0)
    )
    delay = sr.lognormal(
        seed, "reports:delay", vid, median=catalog.REPORT_DELAY_MEDIAN_SECONDS, sigma=1.2
    )
    reported = keep_rows(views, sr.bernoulli(seed, "reports:filed", vid, p=probability))
    timed = reported.select("*", (F.col("epoch") + seconds(delay)).alias("reported_epoch"))
    filed = keep_rows(timed, F.col("reported_epoch") < win.end_epoch)
    any_reason = sr.categorical(sr.uniform(seed, "reports:reason", vid), catalog.POLICY_WEIGHTS)
    names_policy = F.col("is_violative") & sr.bernoulli(
        seed, "reports:names_policy", vid, p=catalog.REPORT_REASON_MATCHES_POLICY
    )
    borderline = sr.bernoulli(
        seed, "reports:borderline", vid, p=catalog.REPORT_BORDERLINE_ACTIONABLE
    )
    epoch = F.col("reported_epoch")
    return filed.select(
        vid.alias("report_id"),
        F.col("viewer_id").alias("reporter_id"),
        "video_id",
        ts(epoch).alias("reported_at"),
        date_of_day(win, day_of(win, epoch)).alias("date"),
        "country",
        "surface",
        F.when(names_policy, F.col("policy")).otherwise(any_reason).alias("reason"),
        (F.col("is_violative") | borderline).alias("is_actionable"),
    )

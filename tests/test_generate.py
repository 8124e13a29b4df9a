"""The synthetic generator: parameters, shapes, determinism, realistic rates, planted truth.

Statistical checks run on one scale-1.0 build (~1M views) and compare observed effects with
the ground truth within four standard errors computed from the observed counts, so a
correct generator fails them with negligible probability and a missing effect fails them.
"""

from __future__ import annotations

import datetime
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, TimestampType
from scipy import stats

from jobs.generate.params import GeneratorParams
from jobs.generate.tables import TABLE_BUILDERS, build_tables, ground_truth, partition_columns

TABLES = [
    "accounts", "uploads", "views", "moderation_actions", "user_reports", "security_events",
    "live_sessions", "privacy_requests", "experiment_assignments",
]  # fmt: skip
SMALL = GeneratorParams(scale=0.01, partitions=1)
BIG = GeneratorParams(scale=1.0)
RANKING, REPORTS = "exp_ranking_safety_v2", "exp_report_button_v3"


def _truth(kind: str, key: str, params: GeneratorParams = BIG) -> dict[str, Any]:
    items: list[dict[str, Any]] = ground_truth(params)[kind]
    id_key = "experiment_id" if kind == "experiments" else "incident_id"
    return next(item for item in items if item[id_key] == key)


def _log_ratio_se(*counts: float) -> float:
    """Standard error of a log rate ratio from Poisson event counts."""
    return math.sqrt(sum(1.0 / c for c in counts))


# --- parameters and ground truth (no Spark) ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scale", 0), ("scale", -1.0), ("scale", float("nan")), ("scale", True),
        ("days", 27), ("days", 28.0), ("start_date", datetime.datetime(2026, 9, 1)),
        ("partitions", 0), ("seed", "42"), ("srm_control_drop", 1.0),
        ("ranking_effect", -1.0), ("spike_multiplier", 0.0),
    ],
)  # fmt: skip
def test_invalid_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} "):
        GeneratorParams(**{field: value})  # type: ignore[arg-type]


def test_ground_truth_is_json_and_plants_in_the_second_half() -> None:
    for params in (BIG, GeneratorParams(days=28, start_date=datetime.date(2027, 1, 4))):
        truth = ground_truth(params)
        assert json.loads(json.dumps(truth)) == truth
        start = params.start_date
        halfway = start + datetime.timedelta(days=params.days // 2)
        last = start + datetime.timedelta(days=params.days - 1)
        kinds = {i["kind"] for i in truth["incidents"]}
        assert kinds == {"spike", "level_shift", "drift"}
        for incident in truth["incidents"]:
            begin = datetime.date.fromisoformat(incident["start_date"])
            assert halfway <= begin <= last, incident
            if incident["end_date"] is not None:
                assert begin <= datetime.date.fromisoformat(incident["end_date"]) <= last
    srm = _truth("experiments", REPORTS)
    assert srm["srm"] is True and srm["control"] == "control"
    assert srm["observed_split_expected"]["treatment"] == pytest.approx(0.5 / 0.97, abs=1e-6)
    assert _truth("experiments", RANKING)["srm"] is False
    assert _truth("experiments", RANKING)["effects"] == [
        {"metric": "violative_view_rate", "relative_effect": -0.2, "direction": "decrease"}
    ]


# --- shapes and determinism (scale 0.01) ----------------------------------------------------


@pytest.fixture(scope="module")
def small(spark: SparkSession) -> dict[str, DataFrame]:
    return build_tables(spark, SMALL)


def test_tables_partitions_and_types(small: dict[str, DataFrame]) -> None:
    assert list(small) == TABLES
    partitions = partition_columns()
    assert list(partitions) == TABLES and partitions["accounts"] == []
    for name, df in small.items():
        types = {f.name: f.dataType for f in df.schema.fields}
        for column in partitions[name]:
            assert types[column] == DateType(), (name, column)
        for column, kind in types.items():
            if column.endswith("_at"):
                assert kind == TimestampType(), (name, column)
            if column.endswith("_id") and column != "experiment_id":
                assert kind == LongType(), (name, column)


def _sorted_rows(df: DataFrame) -> list[tuple[Any, ...]]:
    """All rows, sorted in Python (no Spark sort job); None sorts after any value."""
    rows = [tuple(row) for row in df.collect()]
    return sorted(rows, key=lambda row: tuple((v is None, v) for v in row))


def test_tables_do_not_depend_on_partitioning(
    spark: SparkSession, small: dict[str, DataFrame]
) -> None:
    other = build_tables(spark, replace(SMALL, partitions=3))
    for name in TABLES:
        rows = _sorted_rows(small[name])
        assert rows, name
        assert rows == _sorted_rows(other[name]), name


def test_a_different_seed_gives_different_data(
    spark: SparkSession, small: dict[str, DataFrame]
) -> None:
    reseeded = TABLE_BUILDERS["views"](spark, replace(SMALL, seed=SMALL.seed + 1))
    fingerprint = [F.sum(F.xxhash64(*reseeded.columns) % 1_000_003), F.count("*")]
    assert small["views"].agg(*fingerprint).first() != reseeded.agg(*fingerprint).first()


# --- the scale-1 build: small aggregates collected once -------------------------------------


@dataclass(frozen=True)
class Observed:
    """Small aggregates of the scale-1 build, from which the tests read."""

    view_cells: list[dict[str, Any]]  # date, country, surface, arms -> views, violative
    reports_by_arm: dict[str, int]
    views_per_viewer: np.ndarray
    security: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    shares: dict[str, float]


def _arm(ts_column: str, exp: str) -> Column:
    return F.when(F.col(ts_column) >= F.col(f"{exp}_at"), F.col(f"{exp}_variant")).otherwise(
        "unexposed"
    )


def _with_arms(df: DataFrame, unit: str, assignments: DataFrame) -> DataFrame:
    for exp in (RANKING, REPORTS):
        arm = assignments.where(F.col("experiment_id") == exp).select(
            F.col("unit_id").alias(unit),
            F.col("variant").alias(f"{exp}_variant"),
            F.col("assigned_at").alias(f"{exp}_at"),
        )
        df = df.join(F.broadcast(arm), unit, "left")
    return df


@pytest.fixture(scope="module")
def observed(spark: SparkSession) -> Iterator[Observed]:
    tables = build_tables(spark, BIG)
    views = tables["views"].cache()
    assignments = tables["experiment_assignments"].cache()
    cells = (
        _with_arms(views, "viewer_id", assignments)
        .groupBy(
            "date", "country", "surface",
            _arm("viewed_at", RANKING).alias("ranking_arm"),
            _arm("viewed_at", REPORTS).alias("reports_arm"),
        )
        .agg(
            F.count("*").alias("views"),
            F.sum(F.col("is_violative").cast("int")).alias("violative"),
        )
    )  # fmt: skip
    reports = _with_arms(
        tables["user_reports"].withColumnRenamed("reporter_id", "viewer_id"),
        "viewer_id",
        assignments,
    ).groupBy(_arm("reported_at", REPORTS).alias("arm"))
    per_viewer = views.groupBy("viewer_id").count()
    security = tables["security_events"].groupBy("date", "country", "event_type").count()
    actions = tables["moderation_actions"].select(
        "date", "source", "is_correct", "time_to_action_seconds", "views_before_action",
        "appealed", "reinstated",
    )  # fmt: skip
    shares = [
        tables["accounts"].agg(F.avg(F.col("is_fake").cast("double")).alias("fake")),
        tables["uploads"].agg(F.avg(F.col("is_violating").cast("double")).alias("violating")),
        tables["user_reports"].agg(
            F.avg(F.col("is_actionable").cast("double")).alias("actionable")
        ),
    ]
    yield Observed(
        view_cells=[r.asDict() for r in cells.collect()],
        reports_by_arm={r["arm"]: r["count"] for r in reports.count().collect()},
        views_per_viewer=np.array([r["count"] for r in per_viewer.collect()]),
        security=[r.asDict() for r in security.collect()],
        actions=[r.asDict() for r in actions.collect()],
        shares={k: v for df in shares for k, v in df.first().asDict().items()},  # type: ignore[union-attr]
    )
    views.unpersist()
    assignments.unpersist()


def _sum_cells(cells: list[dict[str, Any]], **match: Any) -> tuple[int, int]:
    rows = [c for c in cells if all(c[k] == v for k, v in match.items())]
    return sum(c["views"] for c in rows), sum(c["violative"] for c in rows)


def test_violative_view_share_is_realistic_and_varies_by_surface(observed: Observed) -> None:
    views, violative = _sum_cells(observed.view_cells)
    assert 900_000 < views < 1_100_000
    assert 0.002 <= violative / views <= 0.005
    shorts = _sum_cells(observed.view_cells, surface="shorts_feed")
    subscriptions = _sum_cells(observed.view_cells, surface="subscriptions")
    assert shorts[1] / shorts[0] > 2 * subscriptions[1] / subscriptions[0]


def test_ranking_experiment_cuts_violative_views_by_the_stated_effect(
    observed: Observed,
) -> None:
    effect = _truth("experiments", RANKING)["effects"][0]["relative_effect"]
    control = _sum_cells(observed.view_cells, ranking_arm="control")
    treatment = _sum_cells(observed.view_cells, ranking_arm="treatment")
    log_ratio = math.log((treatment[1] / treatment[0]) / (control[1] / control[0]))
    se = _log_ratio_se(treatment[1], control[1])
    assert abs(log_ratio - math.log1p(effect)) < 4 * se, (math.exp(log_ratio), se)
    assert log_ratio + 3 * se < 0, "the planted reduction must be detectable"


def test_report_button_raises_reports_per_view_by_the_stated_effect(observed: Observed) -> None:
    effect = _truth("experiments", REPORTS)["effects"][0]["relative_effect"]
    views = {
        arm: _sum_cells(observed.view_cells, reports_arm=arm)[0] for arm in ("control", "treatment")
    }
    reports = observed.reports_by_arm
    rates = {arm: 1000 * reports[arm] / views[arm] for arm in views}
    assert 1.0 < rates["control"] < 10.0, rates  # reports per 1k views
    log_ratio = math.log(rates["treatment"] / rates["control"])
    se = _log_ratio_se(reports["treatment"], reports["control"])
    assert abs(log_ratio - math.log1p(effect)) < 4 * se, (rates, se)
    assert log_ratio > 2 * se, "the planted increase must be detectable"


def test_sample_ratio_mismatch_is_planted_only_where_stated(spark: SparkSession) -> None:
    # Assignments need only the accounts range, so a larger scale stays cheap.
    params = GeneratorParams(scale=3.0)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    log = TABLE_BUILDERS["experiment_assignments"](spark, params)
    for row in log.groupBy("experiment_id", "variant").count().collect():
        counts[row["experiment_id"]][row["variant"]] = row["count"]
    for exp in (RANKING, REPORTS):
        truth = _truth("experiments", exp, params)
        observed = [counts[exp][v] for v in truth["variants"]]
        total = sum(observed)
        intended = [truth["intended_split"][v] * total for v in truth["variants"]]
        p_value = stats.chisquare(observed, intended).pvalue
        assert (p_value < 1e-3) == truth["srm"], (exp, observed, p_value)
        expected_share = truth["observed_split_expected"]["treatment"]
        share = counts[exp]["treatment"] / total
        assert abs(share - expected_share) < 4 * math.sqrt(0.25 / total), (exp, share)


def _day(offset: int, params: GeneratorParams = BIG) -> datetime.date:
    return params.start_date + datetime.timedelta(days=offset)


def test_spike_multiplies_violative_rate_in_its_cell_only(observed: Observed) -> None:
    spike = _truth("incidents", "inc_br_shorts_violative_spike")
    first = datetime.date.fromisoformat(spike["start_date"])
    last = datetime.date.fromisoformat(spike["end_date"])

    def ratio(**cell: str) -> tuple[float, float]:
        rows = [c for c in observed.view_cells if all(c[k] == v for k, v in cell.items())]
        during = [c for c in rows if first <= c["date"] <= last]
        before = [c for c in rows if c["date"] < first]
        d = (sum(c["violative"] for c in during), sum(c["views"] for c in during))
        b = (sum(c["violative"] for c in before), sum(c["views"] for c in before))
        return (d[0] / d[1]) / (b[0] / b[1]), _log_ratio_se(d[0], b[0])

    spiked, se = ratio(**spike["slice"])
    assert spiked > 3.0
    assert abs(math.log(spiked) - math.log(spike["magnitude"])) < 4 * se, (spiked, se)
    calm, calm_se = ratio(country="BR", surface="home_feed")
    assert abs(math.log(calm)) < 4 * calm_se, calm


def test_suspicious_login_level_shift(observed: Observed) -> None:
    shift = _truth("incidents", "inc_in_suspicious_login_shift")
    start = datetime.date.fromisoformat(shift["start_date"])

    def ratio(in_slice: bool) -> tuple[float, float]:
        counts: dict[tuple[bool, str], int] = defaultdict(int)
        for row in observed.security:
            if (row["country"] == shift["slice"]["country"]) == in_slice:
                counts[(row["date"] >= start, row["event_type"])] += row["count"]
        after = counts[(True, "suspicious_login")] / counts[(True, "login")]
        before = counts[(False, "suspicious_login")] / counts[(False, "login")]
        se = _log_ratio_se(counts[(True, "suspicious_login")], counts[(False, "suspicious_login")])
        return after / before, se

    shifted, se = ratio(True)
    assert abs(math.log(shifted) - math.log(shift["magnitude"])) < 4 * se, (shifted, se)
    assert math.log(shifted) > 3 * se
    elsewhere, se_elsewhere = ratio(False)
    assert abs(math.log(elsewhere)) < 4 * se_elsewhere, elsewhere


def test_automated_time_to_action_drifts_upward(observed: Observed) -> None:
    drift = _truth("incidents", "inc_automated_tta_drift")
    start = datetime.date.fromisoformat(drift["start_date"])
    end = datetime.date.fromisoformat(drift["end_date"])
    automated = [a for a in observed.actions if a["source"] == "automated"]
    before = [
        a["time_to_action_seconds"]
        for a in automated
        if a["date"] < start - datetime.timedelta(days=1)
    ]
    tail = [
        a["time_to_action_seconds"]
        for a in automated
        if a["date"] > end - datetime.timedelta(days=3)
    ]
    assert np.median(tail) > 2.0 * np.median(before), (np.median(tail), np.median(before))
    by_day: dict[datetime.date, list[int]] = defaultdict(list)
    for a in automated:
        if start <= a["date"] <= end:
            by_day[a["date"]].append(a["time_to_action_seconds"])
    days = sorted(by_day)
    rho = stats.spearmanr(range(len(days)), [np.median(by_day[d]) for d in days]).statistic
    assert rho > 0.5, rho


def test_moderation_rates_are_realistic(observed: Observed) -> None:
    actions = observed.actions
    n = len(actions)
    assert n > 500
    automated = [a for a in actions if a["source"] == "automated"]
    assert 0.80 <= len(automated) / n <= 0.93
    false_positives = [a for a in actions if not a["is_correct"]]
    assert 0.03 <= len(false_positives) / n <= 0.08
    assert sum(a["views_before_action"] == 0 for a in actions) / n > 0.3
    human = [a["time_to_action_seconds"] for a in actions if a["source"] == "human"]
    assert np.median(human) > 10 * np.median([a["time_to_action_seconds"] for a in automated])

    def reinstated(rows: list[dict[str, Any]]) -> float:
        return sum(bool(a["reinstated"]) for a in rows) / len(rows)

    assert reinstated(false_positives) > 5 * reinstated([a for a in actions if a["is_correct"]])


def test_viewing_is_heavy_tailed_and_weekly(observed: Observed) -> None:
    counts = np.sort(observed.views_per_viewer)[::-1]
    top = counts[: max(1, len(counts) // 100)]
    assert top.sum() / counts.sum() > 0.10
    by_weekday: dict[int, int] = defaultdict(int)
    for cell in observed.view_cells:
        by_weekday[cell["date"].weekday()] += cell["views"]
    weekend = (by_weekday[5] + by_weekday[6]) / 2
    midweek = sum(by_weekday[d] for d in range(4)) / 4
    assert weekend / midweek > 1.08


def test_account_security_upload_and_report_rates(observed: Observed) -> None:
    assert 0.02 <= observed.shares["fake"] <= 0.04
    assert 0.01 <= observed.shares["violating"] <= 0.02
    assert 0.10 <= observed.shares["actionable"] <= 0.25
    by_type: dict[str, int] = defaultdict(int)
    for row in observed.security:
        by_type[row["event_type"]] += row["count"]
    assert 1e-4 <= by_type["confirmed_takeover"] / by_type["login"] <= 1e-3
    assert by_type["fake_account_blocked"] > 0

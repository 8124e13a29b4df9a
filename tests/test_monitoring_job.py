"""The monitoring job on a seeded `metric_values` table with a planted incident: scoring in one
Spark job, the incident found at its slice and explained by it, direction settings from
the metric's good direction and YAML, alerts as text and JSON lines, and `detect` on a
user's own series."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.job import METRIC_VALUES
from jobs.metrics.loader import catalog_from_documents
from jobs.monitoring.job import (
    ANOMALY_ROOT_CAUSES,
    METRIC_ANOMALIES,
    alerts,
    render_alerts,
    run_monitoring,
)
from jobs.monitoring.series import metric_series, score_series

DAYS = 70
FIRST = dt.date(2026, 6, 1)
LAST = FIRST + dt.timedelta(days=DAYS - 1)
CATALOG = """\
dimensions: [country, surface]
sources:
  views: {path: /nowhere, format: parquet, time_column: ts, unit: viewer_id,
          dimensions: [country, surface]}
metrics:
  - {name: vvr, description: d, owner: o, source: views, type: ratio, good_direction: down,
     numerator: {agg: count, filter: bad}, denominator: {agg: count}}
  - {name: watch, description: d, owner: o, source: views, type: mean, value: w,
     good_direction: up}
  - {name: quiet, description: d, owner: o, source: views, type: count,
     monitoring: {enabled: false}}
"""
#: Views per day by (country, surface): BR x shorts is 3% of views.
CELLS = {
    ("BR", "shorts"): 3_000,
    ("BR", "home"): 17_000,
    ("US", "shorts"): 20_000,
    ("US", "home"): 60_000,
}
RATE = 0.004


def _slices(country: str, surface: str) -> list[tuple[str, str]]:
    return [
        ("overall", "all"),
        ("country", f"country={country}"),
        ("surface", f"surface={surface}"),
        ("country+surface", f"country={country}|surface={surface}"),
    ]


def metric_value_rows() -> list[dict[str, Any]]:
    """70 days of vvr and watch cells; on the last day BR x shorts runs at 6x the VVR and
    watch time in US dips by 30% (a rise in watch time would be good news)."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(DAYS):
        day = FIRST + dt.timedelta(days=i)
        weekly = 1.0 + 0.15 * (day.weekday() >= 5)
        sums: dict[tuple[str, str, str], list[float]] = {}
        for (country, surface), views in CELLS.items():
            n = float(rng.poisson(views * weekly))
            rate = RATE * (6.0 if i == DAYS - 1 and (country, surface) == ("BR", "shorts") else 1.0)
            bad = float(rng.binomial(int(n), rate))
            watch = 30.0 * (0.7 if i == DAYS - 1 and country == "US" else 1.0) * n
            watch *= float(rng.normal(1.0, 0.01))
            for slice_set, slice_id in _slices(country, surface):
                for metric, num in (("vvr", bad), ("watch", watch)):
                    acc = sums.setdefault((metric, slice_set, slice_id), [0.0, 0.0])
                    acc[0] += num
                    acc[1] += n
        for (metric, slice_set, slice_id), (num, den) in sums.items():
            start = dt.datetime.combine(day, dt.time())
            rows.append(value_row(start, "day", metric, slice_set, slice_id, num, den))
    return rows


def value_row(
    start: dt.datetime, grain: str, metric: str, slice_set: str, slice_id: str, num: float,
    den: float,
) -> dict[str, Any]:  # fmt: skip
    """One metric_values row of the 1d (day) or 1h (hour) window."""
    return {
        "date": start.date(),
        "period_start": start,
        "grain": grain,
        "window": "1d" if grain == "day" else "1h",
        "metric": metric,
        "slice_set": slice_set,
        "slice_id": slice_id,
        "value": num / den,
        "numerator": num,
        "denominator": den,
        "units": int(den),
        "suppressed": False,
    }


SCHEMA = (
    "date date, period_start timestamp, grain string, window string, metric string, "
    "slice_set string, slice_id string, value double, numerator double, denominator double, "
    "units long, suppressed boolean"
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    found, problems = catalog_from_documents([parse_located(CATALOG, "defs.yaml")])
    assert found is not None, problems
    return found


@pytest.fixture(scope="module")
def warehouse(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("monitoring"))
    sink = DeltaSink.for_session(spark, "delta-rs")
    frame = spark.createDataFrame(metric_value_rows(), SCHEMA)
    sink.write(frame, f"{root}/{METRIC_VALUES}", mode="overwrite", partition_by=("date",))
    return root


@pytest.fixture(scope="module")
def monitored(spark: SparkSession, catalog: Catalog, warehouse: str) -> list[dict[str, Any]]:
    sink = DeltaSink.for_session(spark, "delta-rs")
    summary = run_monitoring(spark, sink, catalog, warehouse, LAST, LAST, "run-1")
    assert summary.scored == 2 * 9  # two monitored metrics x 9 slices
    return alerts(sink, warehouse, LAST)


@pytest.fixture
def job_group(spark: SparkSession) -> Iterator[Any]:
    settings = {"spark.sql.adaptive.enabled": "false", "spark.sql.autoBroadcastJoinThreshold": "-1"}
    before = {k: str(spark.conf.get(k)) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    group = f"count-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(group, "counted")
    yield lambda: len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
    spark.sparkContext.setJobGroup("", "")
    for k, v in before.items():
        spark.conf.set(k, v)


def test_every_series_is_scored_in_one_spark_job(
    spark: SparkSession, catalog: Catalog, warehouse: str, job_group: Any
) -> None:
    values: DataFrame = spark.createDataFrame(metric_value_rows(), SCHEMA)
    scored = score_series(metric_series(values, catalog, "day"), "day").collect()
    assert job_group() == 1
    assert len(scored) == DAYS * 2 * 9
    assert {r["series_id"].split("|")[0] for r in scored} == {"vvr", "watch"}  # not `quiet`


def test_the_planted_spike_is_found_and_explained(monitored: list[dict[str, Any]]) -> None:
    found = {(a["metric"], a["slice_id"]): a for a in monitored}
    spike = found[("vvr", "country=BR|surface=shorts")]
    assert spike["direction"] == "up" and spike["value"] > spike["upper"]
    assert spike["severity"] in ("medium", "high")
    parents = [a for a in monitored if a["metric"] == "vvr" and a["root_causes"]]
    assert parents, "a parent of the spiking slice is flagged too"
    for parent in parents:
        assert parent["root_causes"][0]["slice_id"] == "country=BR|surface=shorts"
        assert parent["root_causes"][0]["explanatory_power"] > 0.5
    clean = [
        a
        for a in monitored
        if a["metric"] == "vvr"
        and "BR" not in a["slice_id"]
        and "shorts" not in a["slice_id"]
        and a["slice_id"] != "all"
    ]
    assert not clean


def test_the_watch_time_dip_is_alerted_because_its_good_direction_is_up(
    monitored: list[dict[str, Any]],
) -> None:
    dips = [a for a in monitored if a["metric"] == "watch" and a["slice_id"] == "country=US"]
    assert len(dips) == 1 and dips[0]["direction"] == "down"
    assert all(a["direction"] == "down" for a in monitored if a["metric"] == "watch")


def test_alerts_render_and_write_json_lines(
    spark: SparkSession, warehouse: str, monitored: list[dict[str, Any]], tmp_path: Path
) -> None:
    text = render_alerts(monitored, LAST)
    assert text.startswith(f"{len(monitored)} anomalies on {LAST}")
    assert "driven by country=BR|surface=shorts" in text
    out = tmp_path / "alerts.jsonl"
    code = main(
        [
            "alerts",
            "--env",
            "test",
            "--warehouse",
            warehouse,
            "--date",
            str(LAST),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(a["metric"], a["slice_id"]) for a in lines] == [
        (a["metric"], a["slice_id"]) for a in monitored
    ]
    sink = DeltaSink.for_session(spark, "delta-rs")
    causes = sink.read(f"{warehouse}/{ANOMALY_ROOT_CAUSES}").collect()
    assert {r["run_id"] for r in causes} == {"run-1"} and all(r["date"] == LAST for r in causes)
    assert sink.read(f"{warehouse}/{METRIC_ANOMALIES}").count() == 18


def test_detect_scores_a_users_own_series(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lines = ["series_id,ts,value,volume"]
    for series in ("a", "b", "c"):
        for i in range(60):
            day = dt.date(2026, 1, 1) + dt.timedelta(days=i)
            value = 100.0 + rng.normal(0, 2) + (80.0 if series == "b" and i == 50 else 0.0)
            lines.append(f"{series},{day},{value:.3f},1000")
    csv = tmp_path / "series.csv"
    csv.write_text("\n".join(lines) + "\n")
    for output in (tmp_path / "scored.csv", tmp_path / "scored_delta"):
        code = main(["detect", "--env", "test", "--input", str(csv), "--output", str(output)])
        assert code == 0
        if output.suffix == ".csv":
            rows = [line.split(",") for line in output.read_text().splitlines()]
            header, body = rows[0], rows[1:]
            assert len(body) == 180 and "is_anomaly" in header
            flagged = [r for r in body if r[header.index("is_anomaly")] == "true"]
        else:
            table = DeltaSink.for_session(spark, "delta-rs").read(str(output))
            flagged = [list(map(str, r)) for r in table.where("is_anomaly").collect()]
            header = table.columns
        assert [(r[header.index("series_id")], r[header.index("ts")][:10]) for r in flagged] == [
            ("b", "2026-02-20")
        ]


def test_monitoring_settings_are_validated() -> None:
    text = CATALOG.replace(
        "monitoring: {enabled: false}", "monitoring: {direction: upp, sensitivty: 3}"
    )
    _, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    messages = [str(p) for p in problems]
    assert any(
        "direction must be up, down or both, got 'upp'" in m and "did you mean 'up'?" in m
        for m in messages
    )
    assert any(
        "unknown key 'sensitivty'" in m and "did you mean 'sensitivity'?" in m for m in messages
    )


def test_a_count_metric_gates_on_units_not_on_its_own_volume() -> None:
    """A count's Poisson floor uses a volume of 1; `min_volume` must apply to its units."""
    import pandas as pd  # type: ignore[import-untyped]

    from udfs.anomaly_detectors import score_group

    rng = np.random.default_rng(5)
    values = rng.poisson(5000, 60).astype(float)
    values[-1] = 9000.0
    frame = pd.DataFrame(
        {
            "series_id": "n",
            "ts": pd.date_range("2026-01-01", periods=60, freq="D"),
            "value": values,
            "volume": [20_000.0] * 59 + [500.0],
            "sensitivity": 4.0,
            "min_volume": 1000.0,
            "direction": "both",
            "counts": True,
            "rate_scale": 1.0,
            "poisson": False,
        }
    )
    out = score_group("day")(frame)
    assert (out["status"].iloc[20:59] == "ok").all()
    assert out["status"].iloc[-1] == "low_volume" and not out["is_anomaly"].iloc[-1]
    frame.loc[59, "volume"] = 20_000.0
    assert bool(score_group("day")(frame)["is_anomaly"].iloc[-1])


OLD_ROOT_CAUSE_SCHEMA = (  # anomaly_root_causes before the hourly grain had root causes
    "date date, metric string, parent_slice_id string, rank int, slice_set string, "
    "slice_id string, explanatory_power double, surprise double, score double, value double, "
    "expected double, run_id string"
)


def hourly_value_rows(days: int, last: dt.date) -> list[dict[str, Any]]:
    """`days` days of hourly vvr cells (all, country=BR, country=US) ending on `last`; at
    10:00 on `last`, BR (2,000 views an hour) runs at 10x the rate."""
    rng = np.random.default_rng(5)
    rows: list[tuple[str, str, dt.datetime, float, float]] = []
    first = last - dt.timedelta(days=days - 1)
    for h in range(days * 24):
        start = dt.datetime.combine(first, dt.time()) + dt.timedelta(hours=h)
        spike = start == dt.datetime.combine(last, dt.time(10))
        totals = [0.0, 0.0]
        for country, views in (("BR", 2_000), ("US", 5_000)):
            n = float(rng.poisson(views))
            bad = float(rng.binomial(int(n), RATE * (10.0 if spike and country == "BR" else 1.0)))
            totals = [totals[0] + bad, totals[1] + n]
            rows.append(("country", f"country={country}", start, bad, n))
        rows.append(("overall", "all", start, totals[0], totals[1]))
    return [
        value_row(start, "hour", "vvr", slice_set, slice_id, num, den)
        for slice_set, slice_id, start, num, den in rows
    ]


def test_hourly_anomalies_get_root_causes_and_an_older_table_gains_the_columns(
    spark: SparkSession, catalog: Catalog, tmp_path: Path
) -> None:
    root = str(tmp_path)
    sink = DeltaSink.for_session(spark, "delta-rs")
    frame = spark.createDataFrame(hourly_value_rows(16, LAST), SCHEMA)
    sink.write(frame, f"{root}/{METRIC_VALUES}", mode="overwrite", partition_by=("date",))
    # A root-cause table as an earlier version wrote it: one daily row, a day before.
    old = [(LAST - dt.timedelta(days=1), "vvr", "all", 1, "country", "country=US",
            0.9, 0.1, 5.0, 0.01, 0.004, "run-0")]  # fmt: skip
    causes_path = f"{root}/{ANOMALY_ROOT_CAUSES}"
    sink.write(spark.createDataFrame(old, OLD_ROOT_CAUSE_SCHEMA), causes_path,
               mode="overwrite", partition_by=("date",))  # fmt: skip

    run_monitoring(spark, sink, catalog, root, LAST, LAST, "run-1")

    rows = {(r["date"], r["run_id"]): r for r in sink.read(causes_path).collect()}
    kept = rows[(LAST - dt.timedelta(days=1), "run-0")]
    assert kept["slice_id"] == "country=US" and kept["grain"] is None  # kept, as daily
    hourly = [r for r in sink.read(causes_path).collect() if r["run_id"] == "run-1"]
    assert hourly and {r["grain"] for r in hourly} == {"hour"}
    ten = dt.datetime.combine(LAST, dt.time(10))
    top = [r for r in hourly if r["parent_slice_id"] == "all" and r["rank"] == 1]
    assert [(r["period_start"], r["slice_id"]) for r in top] == [(ten, "country=BR")]
    assert top[0]["explanatory_power"] > 0.9
    found = alerts(sink, root, LAST)
    spike = [a for a in found if a["slice_id"] == "all" and a["grain"] == "hour"]
    assert [a["period_start"] for a in spike] == [str(ten)]
    assert spike[0]["root_causes"][0]["slice_id"] == "country=BR"
    assert "driven by country=BR" in render_alerts(found, LAST)

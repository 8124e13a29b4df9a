"""`detect` on a user's own series: the input contract (located errors, grains, kinds and
directions), a status for every series, scoring without Spark, and the Spark path's
agreement with it (issue 27)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.metrics.definitions import MetricDef
from jobs.monitoring.detect_command import detect, scoreable
from jobs.monitoring.own_scoring import detector_config
from jobs.monitoring.series_checks import SeriesInputError, check_series_file
from jobs.monitoring.series_file import read_series_file

REPO = Path(__file__).resolve().parents[1]


def daily_lines(
    series: str = "abc", days: int = 60, spike: str = "b", header: str = "series_id,ts,value"
) -> list[str]:
    """Daily series around 100 without a volume column; +80 on day 50 of `spike`."""
    rng = np.random.default_rng(3)
    lines = [header]
    for name in series:
        for i in range(days):
            day = dt.date(2026, 1, 1) + dt.timedelta(days=i)
            value = 100.0 + rng.normal(0, 2) + (80.0 if name == spike and i == 50 else 0.0)
            lines.append(f"{name},{day},{value:.3f}")
    return lines


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def flagged(out: pd.DataFrame) -> list[tuple[str, str]]:
    rows = out[out["is_anomaly"]]
    return [(str(s), str(t)[:10]) for s, t in zip(rows["series_id"], rows["ts"], strict=True)]


def test_a_spike_in_a_daily_series_without_volume_alarms(tmp_path: Path) -> None:
    """Without a volume column every point used to be low_volume: no alarm, exit 0."""
    csv = write(tmp_path / "series.csv", daily_lines())
    output = tmp_path / "scored.csv"
    code = main(["detect", "--env", "test", "--input", csv, "--output", str(output)])
    assert code == 0
    out = pd.read_csv(output)
    assert list(out.loc[out["is_anomaly"], "series_id"]) == ["b"]
    assert (out["status"] == "ok").sum() > 100


def test_kind_and_direction_come_from_columns_or_flags(tmp_path: Path) -> None:
    csv = write(tmp_path / "series.csv", daily_lines())
    assert flagged(detect(csv).scored) == [("b", "2026-02-20")]
    assert flagged(detect(csv, direction="down").scored) == []
    # A column wins over the flag; an empty cell takes the flag.
    lines = daily_lines(header="series_id,ts,value,direction,kind")
    lines = [lines[0]] + [
        line + (",up,count" if line.startswith("b,") else ",,") for line in lines[1:]
    ]
    both = write(tmp_path / "columns.csv", lines)
    checked = check_series_file(read_series_file(both), direction="down", kind="mean")
    settings = checked.frame.groupby("series_id")[["kind", "direction"]].first()
    assert settings.loc["b"].tolist() == ["count", "up"]
    assert settings.loc["a"].tolist() == ["mean", "down"]
    assert flagged(detect(both, direction="down").scored) == [("b", "2026-02-20")]
    assert detector_config("count", "up").counts and not detector_config("mean", "up").counts
    assert detector_config("rate", "down").direction == "down"


def test_a_kind_must_be_known_and_constant_per_series(tmp_path: Path) -> None:
    lines = daily_lines(series="a", days=20, header="series_id,ts,value,kind")
    lines = [lines[0]] + [line + ",count" for line in lines[1:]]
    lines[4] = lines[4].replace(",count", ",gauge")
    lines[6] = lines[6].replace(",count", ",cuont")
    with pytest.raises(SeriesInputError) as caught:
        detect(write(tmp_path / "kinds.csv", lines))
    text = str(caught.value)
    assert "line 7, column 'kind': 'cuont' must be one of" in text
    assert "did you mean 'count'" in text
    assert "line 5, column 'kind': 'gauge' differs from the series' first kind, 'count'" in text


def five_minute_lines(points: int = 3000) -> list[str]:
    rng = np.random.default_rng(5)
    start = dt.datetime(2026, 1, 1)
    lines = ["series_id,ts,value"]
    for i in range(points):
        t = start + dt.timedelta(minutes=5 * i)
        value = 50.0 + rng.normal(0, 1) + (40.0 if i == points - 10 else 0.0)
        lines.append(f"m,{t.isoformat()},{value:.3f}")
    return lines


def test_a_five_minute_series_is_detected_as_5min_not_hour(tmp_path: Path) -> None:
    lines = five_minute_lines(200)
    del lines[50:53]  # a gap of missing points is not another grain
    lines += daily_lines(series="d", days=20)[1:]  # one file, a grain per series
    checked = check_series_file(read_series_file(write(tmp_path / "m.csv", lines)))
    grains = checked.frame.groupby("series_id")["grain"].first()
    assert grains.to_dict() == {"d": "day", "m": "5min"}
    checked.frame = checked.frame[checked.frame["series_id"] == "m"]
    rows, rejected = scoreable(checked)
    assert set(rows["grain"]) == {"5min"} and not rejected


def test_a_spike_in_a_five_minute_series_alarms(tmp_path: Path) -> None:
    result = detect(write(tmp_path / "m.csv", five_minute_lines()))
    assert [s.status for s in result.statuses] == ["judged"]
    assert len(flagged(result.scored)) >= 1


def test_mixed_grains_and_duplicate_timestamps_are_located_errors(tmp_path: Path) -> None:
    lines = daily_lines(series="ab", days=30)
    lines[5] = "a,2026-01-04T06:00:00,100"  # 6 hours after the previous day: mixed grains
    lines[40] = lines[39]  # b's 9th day repeated
    with pytest.raises(SeriesInputError) as caught:
        detect(write(tmp_path / "bad.csv", lines))
    text = str(caught.value)
    assert "2 problem(s) found" in text
    assert (
        "bad.csv: line 6, column 'ts': '2026-01-04 06:00:00' is off the day grid of series 'a' "
        "(it comes 6 hours after the previous point); mixed grains"
    ) in text
    assert "bad.csv: line 41, column 'ts': '2026-01-09 00:00:00' repeats a timestamp of " in text
    assert "series 'b' (line 40)" in text


def test_bad_cells_are_all_reported_with_line_column_and_value_and_no_java_trace(
    tmp_path: Path,
) -> None:
    lines = daily_lines(days=30)
    lines[7] = "a,2026-01-07,twelve"
    lines[33] = "b,07/01/2026,3"
    csv = write(tmp_path / "bad.csv", lines)
    run = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "detect", "--env", "test", "--input", csv,
         "--output", str(tmp_path / "out.csv")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert f"{csv}: line 8, column 'value': 'twelve' is not a finite number" in run.stderr
    assert f"{csv}: line 34, column 'ts': '07/01/2026' is not an ISO 8601 timestamp" in run.stderr
    assert "Traceback" not in run.stderr and "java" not in run.stderr.lower()
    assert not (tmp_path / "out.csv").exists()


def test_parquet_problems_are_located_by_row(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"series_id": ["a", "a", "a"], "ts": ["2026-01-01", "2026-01-02", "x"], "value": [1, 2, 3]}
    )
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(SeriesInputError, match=r"row 3, column 'ts': 'x' is not an ISO 8601"):
        detect(str(tmp_path / "s.parquet"))


def test_every_series_gets_a_status_and_nothing_judged_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = daily_lines(series="ab", days=5) + [f"flat,2026-01-{d:02d},7" for d in range(1, 31)]
    csv = write(tmp_path / "short.csv", lines)
    output = tmp_path / "out.csv"
    code = main(["detect", "--env", "test", "--input", csv, "--output", str(output)])
    printed = capsys.readouterr()
    assert code == 2 and not output.exists()
    assert "series: 3 in all, 2 warming up, 1 constant" in printed.out
    assert "warming up: a (5 points, needs 3 more)" in printed.out  # judged from the 8th
    assert "no series could be judged (2 warming up, 1 constant)" in printed.err
    lines = daily_lines(series="ab", days=60) + lines[1:]
    csv = write(tmp_path / "mixed.csv", lines[:1] + lines[1:121] + lines[121 + 10 :])
    assert main(["detect", "--env", "test", "--input", csv, "--output", str(output)]) == 0
    assert "series: 3 in all, 2 judged, 1 constant" in capsys.readouterr().out


def test_numerator_and_denominator_make_the_value_and_the_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    lines = ["series_id,ts,numerator,denominator"]
    for i in range(60):
        events = rng.poisson(40) + (60 if i == 55 else 0)
        lines.append(f"r,{dt.date(2026, 3, 1) + dt.timedelta(days=i)},{events},10000")
    checked = check_series_file(read_series_file(write(tmp_path / "r.csv", lines)))
    assert checked.frame["kind"].iloc[0] == "proportion"
    assert checked.frame["value"].iloc[0] == pytest.approx(int(lines[1].split(",")[2]) / 10000)
    assert (checked.frame["volume"] == 10000).all()
    assert flagged(detect(str(tmp_path / "r.csv")).scored) == [("r", "2026-04-25")]


def test_the_local_and_spark_paths_agree(spark: SparkSession, tmp_path: Path) -> None:
    lines = daily_lines(series="abcdef") + [
        f"h,{dt.datetime(2026, 1, 1) + dt.timedelta(hours=i):%Y-%m-%dT%H:%M:%S},"
        f"{10 + (i % 24) + (30 if i == 500 else 0)}"
        for i in range(600)
    ]
    csv = write(tmp_path / "series.csv", lines)
    local = detect(csv)
    distributed = detect(csv, local_limit=0, spark_factory=lambda: spark)
    assert local.engine == "local" and distributed.engine == "spark"
    pd.testing.assert_frame_equal(local.scored, distributed.scored)
    assert local.statuses == distributed.statuses
    assert ("b", "2026-02-20") in flagged(local.scored)


def test_monitored_metrics_carry_their_kind() -> None:
    from jobs.monitoring.series import kind_of

    def metric(**fields: object) -> MetricDef:
        base: dict[str, object] = dict(
            name="m", description="d", owner="o", unit="", good_direction="none", slices=(),
            windows=("1d",), grain="day", ci="auto",
        )  # fmt: skip
        return MetricDef(**{**base, **fields})  # type: ignore[arg-type]

    from jobs.metrics.definitions import Part

    count, total = Part("v", "count"), Part("v", "sum", value="w")
    assert kind_of(metric(type="count")) == "count"
    assert kind_of(metric(type="distinct_count")) == "count"
    assert kind_of(metric(type="ratio", numerator=count, denominator=count, proportion=True)) == (
        "proportion"
    )
    assert kind_of(metric(type="rate", numerator=count, denominator=count)) == "rate"
    assert kind_of(metric(type="ratio", numerator=total, denominator=count)) == "mean"
    assert kind_of(metric(type="mean")) == "mean"
    assert kind_of(metric(type="quantile")) == "latency"


def test_a_delta_input_and_output_need_no_spark(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    csv = write(tmp_path / "series.csv", daily_lines())
    frame = pd.read_csv(csv)
    frame.loc[frame.index[3], "value"] = np.nan
    write_deltalake(str(tmp_path / "input"), frame)
    code = main(
        ["detect", "--env", "test", "--input", str(tmp_path / "input"), "--output",
         str(tmp_path / "output")]
    )  # fmt: skip
    assert code == 0
    out = DeltaTable(str(tmp_path / "output")).to_pandas()
    assert len(out) == 180 and out["status"].iloc[3] == "missing"
    assert flagged(out) == [("b", "2026-02-20")]


def test_a_file_of_one_series_needs_no_series_id(tmp_path: Path) -> None:
    """`timestamp,value` (a single series, as most exports are): the series is named after
    the file and scored; a `timestamp` column serves as `ts`."""
    lines = [line.split(",", 1)[1] for line in daily_lines(series="b")]
    lines[0] = "timestamp,value"
    result = detect(write(tmp_path / "checkout_latency.csv", lines))
    assert [(s.series_id, s.status) for s in result.statuses] == [("checkout_latency", "judged")]
    assert flagged(result.scored) == [("checkout_latency", "2026-02-20")]

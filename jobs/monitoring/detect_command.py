"""`safety-metrics detect`: check a user's series file, score it (in this process up to
`LOCAL_SERIES_LIMIT` series, else with Spark), print a status per series, write the points."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from jobs.core.located_yaml import InputError
from jobs.monitoring.detect_output import write_scored
from jobs.monitoring.detect_settings import LOCAL_SERIES_LIMIT, LONE_POINT_GRAIN
from jobs.monitoring.grains import GrainName
from jobs.monitoring.own_scoring import (
    detector_config,
    detector_grains,
    score_locally,
    score_with_spark,
    warmup_points,
)
from jobs.monitoring.series_checks import CheckedSeries, SeriesInputError, check_series_file
from jobs.monitoring.series_file import read_series_file
from jobs.monitoring.series_summary import (
    SeriesStatus,
    nothing_judged_reason,
    render_summary,
    series_statuses,
)

log = logging.getLogger("safety-metrics")


class NothingJudgedError(InputError):
    """No series of the input could be judged (the message says why)."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.problems = ()


@dataclass(frozen=True)
class DetectResult:
    scored: pd.DataFrame
    statuses: list[SeriesStatus]
    engine: str  # "local" or "spark"


def scoreable(checked: CheckedSeries) -> tuple[pd.DataFrame, list[SeriesStatus]]:
    """The rows the detector can score, and the series it cannot (grains it lacks)."""
    rows = checked.frame.copy()
    rows["grain"] = rows["grain"].fillna(LONE_POINT_GRAIN)
    supported = rows["grain"].isin(detector_grains())
    rejected = [
        SeriesStatus(
            str(series_id),
            "rejected",
            f"the detector does not score the {grain} grain yet",
        )
        for series_id, grain in rows[~supported].groupby("series_id")["grain"].first().items()
    ]
    return rows[supported], rejected


def detect(
    path: str,
    *,
    kind: str | None = None,
    direction: str | None = None,
    grain: GrainName | None = None,
    min_volume: float = 0.0,
    local_limit: int = LOCAL_SERIES_LIMIT,
    spark_factory: Any = None,
) -> DetectResult:
    """Check and score a series file (no output written)."""
    source = read_series_file(path)
    checked = check_series_file(source, kind, direction, grain)
    rows, rejected = scoreable(checked)
    series = int(rows["series_id"].nunique())
    engine = "local" if series <= local_limit else "spark"
    started = time.perf_counter()
    if engine == "local":
        scored = score_locally(rows, min_volume)
    else:
        spark = spark_factory()
        scored = score_with_spark(spark, rows, min_volume)
    log.info("scored %d series (%s) in %.2f s", series, engine, time.perf_counter() - started)
    settings = rows.groupby("series_id")[["kind", "direction", "grain"]].first()
    warmups = {
        str(s): warmup_points(r.grain, detector_config(r.kind, r.direction, min_volume))
        for s, r in settings.iterrows()
    }
    statuses = series_statuses(scored, warmups) + rejected
    return DetectResult(scored, sorted(statuses, key=lambda s: s.series_id), engine)


def run_detect(args: argparse.Namespace, config: Any) -> int:
    """The command: print the summary; write the points unless nothing could be judged."""

    def spark_session() -> Any:
        from jobs.core.session import build_session

        return build_session(config)

    try:
        result = detect(
            args.input,
            kind=args.kind,
            direction=args.direction,
            grain=args.grain,
            min_volume=args.min_volume,
            local_limit=args.max_local_series,
            spark_factory=spark_session,
        )
    except pd.errors.ParserError as exc:
        raise SeriesInputError(args.input, [f"not a readable CSV file: {exc}".strip()]) from None
    print(render_summary(result.statuses))
    reason = nothing_judged_reason(result.statuses)
    if reason is not None:
        raise NothingJudgedError(f"{args.input}: {reason}; nothing written to {args.output}")
    write_scored(result.scored, args.output)
    anomalies = int(result.scored["is_anomaly"].sum())
    print(f"wrote {len(result.scored):,} scored points ({anomalies:,} anomalies) to {args.output}")
    return 0

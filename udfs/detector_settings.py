"""The anomaly detector's vocabulary and settings: grains, kinds, directions, the output
schema, `DetectorConfig` and its windows resolved for a grain (`plan`). NumPy only, so
argument parsing and input checks can import it without pandas or Spark; the model itself
is described in `udfs.anomaly_detectors`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

Ints = NDArray[np.int64]

Bools = NDArray[np.bool_]

Grain = Literal["1min", "5min", "10min", "15min", "30min", "hour", "day"]

Kind = Literal["count", "rate", "proportion", "mean", "gauge", "latency"]

Direction = Literal["both", "up", "down"]

#: Seconds per grain, finest first.
GRAIN_SECONDS: dict[Grain, int] = {
    "1min": 60,
    "5min": 300,
    "10min": 600,
    "15min": 900,
    "30min": 1800,
    "hour": 3600,
    "day": 86_400,
}

KINDS: tuple[Kind, ...] = get_args(Kind)

DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

#: Spark DDL of `detect_frame`'s output.
OUTPUT_SCHEMA = (
    "series_id string, ts timestamp, value double, expected double, lower double, "
    "upper double, score double, is_anomaly boolean, direction string, severity string, "
    "detector string, history int, status string"
)

OUTPUT_COLUMNS = tuple(part.split()[0] for part in OUTPUT_SCHEMA.split(", "))

SERIES_COLUMNS = OUTPUT_COLUMNS[1:]  # `detect_series` output: all but series_id

OUTPUT_DTYPES = (
    "object",
    "datetime64[ns]",
    "float64",
    "float64",
    "float64",
    "float64",
    "float64",
    "bool",
    "object",
    "object",
    "object",
    "int32",
    "object",
)

DETECTOR = "seasonal_median"

MAD_TO_SD = 1.4826  # a normal distribution's standard deviation over its MAD

WINSOR = 2.5  # errors are winsorised at WINSOR robust standard deviations

WINSOR_MEAN_SQUARE = 0.97756  # E[min(Z^2, WINSOR^2)] for a standard normal Z

DISPERSION_CAP = 16.0  # squared count errors (in Poisson sds) are capped here

SMALL_COUNT = 50  # a series of unknown kind with integer values up to this is counted

TAIL = 0.995  # hours and minutes: the band covers this quantile of past |errors| ...

TAIL_WEIGHT = 1.25  # ... times this (bursty series' normal extremes stay inside it)

SUB_HOURLY_WIDEN = 1.75  # 5-30 minute points are 2-12 times as many a day as hours

COMPARABLE_DAYS = 3  # days: errors made with the weekly index, once 3 exist, set the scale


@dataclass(frozen=True)
class DetectorConfig:
    """Detector settings; windows left at None take the grain's default (in points)."""

    sensitivity: float = 4.0  # alarm outside expected -/+ sensitivity x scale
    min_history: int | None = None  # observed points before the first judged one
    min_volume: float = 0.0  # points with a smaller (or NaN) volume are never alerted
    direction: Direction = "both"  # which changes are alerted ("up": rises only)
    kind: Kind | None = None  # None: unknown (non-negative integers behave as counts)
    season_weeks: int = 6  # seasonal periods behind the index
    season_offset: float = 0.1  # c / mean |y| in the model y + c = (level + c) x index
    level_window: int | None = None  # normal points behind the level: 7 days; 1 day
    scale_window: int | None = None  # one-step errors behind the scale: 6 weeks; 2 weeks
    rebaseline: int = 2  # points after an alarm that, near its value, make it the new level
    rel_floor: float = 0.02  # scale >= rel_floor x |expected|
    abs_floor: float = 1e-9  # scale >= abs_floor
    counts: bool = False  # values are event counts (kind "count")
    rate_scale: float = 1.0  # with a volume, value = rate_scale x events / volume
    severity_steps: tuple[float, float] = (1.5, 2.5)  # |score| / threshold: medium, high

    def __post_init__(self) -> None:
        if self.direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be both, up or down, not {self.direction!r}")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, not {self.kind!r}")
        if self.sensitivity <= 0:
            raise ValueError("sensitivity must be positive")
        if self.season_weeks < 1 or self.rebaseline < 1:
            raise ValueError("season_weeks and rebaseline must be at least 1")
        if self.rel_floor < 0 or self.abs_floor <= 0 or self.rate_scale <= 0:
            raise ValueError("rel_floor must be >= 0, abs_floor and rate_scale > 0")
        windows = (self.level_window, self.scale_window, self.min_history)
        if any(w is not None and w < 1 for w in windows):
            raise ValueError("windows must hold at least one point")


@dataclass(frozen=True)
class Plan:
    """A config's windows resolved for a grain, in points."""

    period: int  # seasonal period: a week of days, a day of hours (of minutes)
    season_blocks: int  # past periods needed before the index is used
    comparable: int  # errors made with the current index needed before only they count
    warmup: int
    level: int
    scale: int
    tail: float  # weight of the past errors' TAIL quantile in the band (0: not used)
    widen: float  # the band is sensitivity x widen scales wide


def period_of(grain: Grain) -> int:
    """Points in a seasonal period: 7 days, or one day of the grain's points."""
    if grain not in GRAIN_SECONDS:
        raise ValueError(f"grain must be one of {', '.join(GRAIN_SECONDS)}, not {grain!r}")
    return 7 if grain == "day" else 86_400 // GRAIN_SECONDS[grain]


def plan(config: DetectorConfig, grain: Grain) -> Plan:
    """Resolve the config's windows for the grain (None: the grain's default)."""
    period = period_of(grain)
    daily = grain == "day"
    return Plan(
        period=period,
        season_blocks=2,
        comparable=COMPARABLE_DAYS if daily else warmup_points(grain, config),
        warmup=warmup_points(grain, config),
        level=config.level_window or period,
        scale=config.scale_window or (6 if daily else 14) * period,
        tail=0.0 if daily else TAIL_WEIGHT,
        widen=SUB_HOURLY_WIDEN if period > 24 else 1.0,
    )


def warmup_points(grain: Grain, config: DetectorConfig | None = None) -> int:
    """Observed points a series needs before its first judged point: a week of days (the
    8th day is judged), one day of hours or minutes (the 2nd day is judged)."""
    config = config or DetectorConfig()
    return config.min_history or period_of(grain)

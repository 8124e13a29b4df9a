"""Score checked series (`series_checks.CHECKED_COLUMNS`) with the detector: in this process
(pandas) or with Spark (`applyInPandas`), by the same function `score_checked`.

Each row carries its series' kind, direction and grain. A count is judged with the Poisson
floor of its own value; a rate or proportion with a volume (its denominator) with the Poisson
floor of one event over that volume; the other kinds without one. Points whose volume is
below `min_volume` are never alerted (status low_volume); a point without a volume is not
gated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from udfs import anomaly_detectors as detectors
from udfs import detector_settings
from udfs.anomaly_detectors import empty_frame
from udfs.detector_settings import OUTPUT_COLUMNS, OUTPUT_SCHEMA, DetectorConfig

#: Spark DDL of the checked rows.
CHECKED_SCHEMA = (
    "series_id string, ts timestamp, value double, volume double, kind string, "
    "direction string, grain string"
)
#: Kinds whose volume is the denominator of a rate of events (a Poisson floor).
VOLUME_KINDS = ("rate", "proportion")
#: Spark groups of series per pandas call (each series is still scored on its own).
SERIES_BUCKETS = 256


def detector_grains() -> tuple[str, ...]:
    """The grains the detector scores."""
    return tuple(detector_settings.GRAIN_SECONDS)


def detector_config(kind: str, direction: str, min_volume: float = 0.0) -> DetectorConfig:
    """The detector's settings for a series of a kind."""
    return DetectorConfig(
        direction=direction,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        counts=kind == "count",
        min_volume=min_volume if kind in VOLUME_KINDS else 0.0,
    )


def warmup_points(grain: str, config: DetectorConfig) -> int:
    """Observed points a series needs before its first judged point."""
    return detector_settings.warmup_points(grain, config)  # type: ignore[arg-type]


def score_one(rows: pd.DataFrame, min_volume: float = 0.0) -> pd.DataFrame:
    """One series (rows sorted by time) scored: OUTPUT_COLUMNS."""
    first = rows.iloc[0]
    kind, grain = str(first["kind"]), str(first["grain"])
    config = detector_config(kind, str(first["direction"]), min_volume)
    volume = rows["volume"].to_numpy(dtype=np.float64)
    has_volume = bool(np.isfinite(volume).any())
    out = detectors.detect_series(
        rows["ts"],
        rows["value"].to_numpy(dtype=np.float64),
        volume if kind in VOLUME_KINDS and has_volume else None,
        grain=grain,  # type: ignore[arg-type]
        config=config,
    )
    if min_volume > 0 and kind not in VOLUME_KINDS:  # the gate still applies to the volume
        low = (volume < min_volume) & (out["status"].to_numpy() == "ok")
        out.loc[low, ["is_anomaly", "status"]] = [False, "low_volume"]
        out.loc[low, ["direction", "severity"]] = None
    out.insert(0, "series_id", str(first["series_id"]))
    return out


def score_checked(rows: pd.DataFrame, min_volume: float = 0.0) -> pd.DataFrame:
    """Every series of `rows` (checked rows, any number of series) scored: OUTPUT_COLUMNS."""
    if rows.empty:
        return empty_frame(OUTPUT_COLUMNS)
    rows = rows.sort_values(["series_id", "ts"], kind="stable")
    parts = [score_one(group, min_volume) for _, group in rows.groupby("series_id", sort=False)]
    return pd.concat(parts, ignore_index=True)[list(OUTPUT_COLUMNS)]


def in_order(scored: pd.DataFrame) -> pd.DataFrame:
    """Output rows by series id, then time (the same order from either path)."""
    ordered = scored.sort_values(["series_id", "ts"], kind="stable").reset_index(drop=True)
    ordered["history"] = ordered["history"].astype(np.int32)
    ordered["is_anomaly"] = ordered["is_anomaly"].astype(bool)
    return ordered


def score_locally(rows: pd.DataFrame, min_volume: float = 0.0) -> pd.DataFrame:
    """Score in this process."""
    return in_order(score_checked(rows, min_volume))


def score_with_spark(spark: Any, rows: pd.DataFrame, min_volume: float = 0.0) -> pd.DataFrame:
    """Score with one Spark job: series grouped in hash buckets, one pandas call per bucket."""
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(rows, schema=CHECKED_SCHEMA)
    bucket = F.pmod(F.xxhash64("series_id"), F.lit(SERIES_BUCKETS))

    def score(pdf: pd.DataFrame) -> pd.DataFrame:
        return score_checked(pdf, min_volume)

    scored = frame.groupBy(bucket.alias("bucket")).applyInPandas(score, schema=OUTPUT_SCHEMA)
    return in_order(scored.toPandas())

"""Series for detection: from `metric_values`, or from a user's table, scored in one Spark job.

A series is one (metric, slice) at one grain: daily values of the 1d window, or hourly values
of the 1h window. Each row carries its metric's detector settings (from the metric's
`monitoring:` YAML and its type, with the detector's `kind`) and its grain, so that one
`applyInPandas` grouped by series scores tens of thousands of series in a single job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.located_yaml import InputError
from jobs.metrics.definitions import Catalog, MetricDef
from jobs.metrics.types import traits
from udfs.anomaly_detectors import score_group
from udfs.detector_settings import OUTPUT_SCHEMA, DetectorConfig, Grain

#: Per-series settings carried on every input row (constant within a series).
SETTING_COLUMNS = (
    "sensitivity",
    "min_volume",
    "direction",
    "counts",
    "rate_scale",
    "poisson",
    "kind",
)
INPUT_SCHEMA = (
    "series_id string, ts timestamp, value double, volume double, sensitivity double, "
    "min_volume double, direction string, counts boolean, rate_scale double, poisson boolean, "
    "kind string, grain string"
)
WINDOW_OF_GRAIN = {"day": "1d", "hour": "1h"}
#: Groups of series handed to one pandas call (each series is still scored on its own).
SERIES_BUCKETS = 256


@dataclass(frozen=True)
class SeriesSettings:
    """A metric's detector settings."""

    sensitivity: float
    min_volume: float
    direction: str
    counts: bool  # values are event counts: Poisson floor on the scale
    rate_scale: float  # value = rate_scale x events / volume (ratios and rates of counts)
    poisson: bool  # the volume is the denominator of a rate of counts: Poisson floor
    kind: str = "gauge"  # the detector's kind: count, rate, proportion, mean, gauge, latency

    def row(self) -> tuple[Any, ...]:
        return (
            self.sensitivity,
            self.min_volume,
            self.direction,
            self.counts,
            self.rate_scale,
            self.poisson,
            self.kind,
        )


def settings_for(metric: MetricDef, default: DetectorConfig | None = None) -> SeriesSettings:
    """Detector settings of a metric: its YAML overrides, else defaults by type and by good
    direction (a metric whose good direction is down alerts on rises only)."""
    base = default or DetectorConfig()
    mon = metric.monitoring
    harmful = {"down": "up", "up": "down"}.get(metric.good_direction, "both")
    counts_ratio = (
        traits(metric.type).finish == "ratio"
        and traits(metric.type).series_kind is None
        and metric.numerator is not None
        and metric.numerator.agg == "count"
        and metric.denominator is not None
        and metric.denominator.agg == "count"
    )
    return SeriesSettings(
        sensitivity=mon.sensitivity or base.sensitivity,
        min_volume=mon.min_volume if mon.min_volume is not None else base.min_volume,
        direction=mon.direction or harmful,
        counts=kind_of(metric) == "count",
        rate_scale=metric.per if counts_ratio else 1.0,
        poisson=counts_ratio,
        kind=kind_of(metric),
    )


def kind_of(metric: MetricDef) -> str:
    """The detector's kind of a metric: its type's (`Traits.series_kind`: counts, distinct
    ones too, are counts; means are means; quantiles latencies; sums and derived metrics
    gauges), else read off its parts: a ratio or rate of counts is a proportion when its
    numerator counts a subset of its denominator's rows, else a rate; a ratio of a sum over
    a count is a mean; any other ratio a gauge."""
    fixed = traits(metric.type).series_kind
    if fixed is not None:
        return fixed
    if metric.numerator and metric.denominator:
        if metric.numerator.agg == "count" and metric.denominator.agg == "count":
            return "proportion" if metric.proportion else "rate"
        if metric.denominator.agg == "count":
            return "mean"
    return "gauge"


def metric_series(
    values: DataFrame, catalog: Catalog, grain: str = "day", default: DetectorConfig | None = None
) -> DataFrame:
    """Detection input (INPUT_SCHEMA plus metric, slice_set, slice_id) from `metric_values`
    rows: every monitored metric's series at `grain`; suppressed cells are missing points."""
    monitored = {
        m.name: settings_for(m, default).row()
        for m in catalog.metrics.values()
        if m.monitoring.enabled
    }
    # Settings as literal lookups by metric, not a join: the scoring stays one Spark job.
    settings = [
        F.create_map(*[x for name, row in monitored.items() for x in (F.lit(name), F.lit(row[i]))])[
            F.col("metric")
        ].alias(column)
        for i, column in enumerate(SETTING_COLUMNS)
    ]
    rows = values.where(
        (F.col("grain") == grain)
        & (F.col("window") == WINDOW_OF_GRAIN[grain])
        & F.col("metric").isin(list(monitored))
    ).select("*", *settings)
    value = F.when(~F.col("suppressed"), F.col("value"))
    volume = F.coalesce(F.col("denominator"), F.col("units").cast("double"))
    return rows.select(
        F.concat_ws("|", "metric", "slice_id", F.lit(grain)).alias("series_id"),
        F.col("period_start").alias("ts"),
        value.cast("double").alias("value"),
        F.when(~F.col("suppressed"), volume).alias("volume"),
        *SETTING_COLUMNS,
        F.lit(grain).alias("grain"),
        "metric",
        "slice_set",
        "slice_id",
    )


def score_series(series: DataFrame, grain: Grain = "day") -> DataFrame:
    """Every point of every series scored against its own past (OUTPUT_SCHEMA), in one job:
    the rows are grouped by series and each group is scored by `detect_series`."""
    inputs = series.select(*[c.split()[0] for c in INPUT_SCHEMA.split(", ")])
    # Grouped by a hash bucket of the series id, not by the id: one pandas call scores many
    # series, which saves the per-group Arrow and pandas overhead (7x at 90-day series).
    bucket = F.pmod(F.xxhash64("series_id"), F.lit(SERIES_BUCKETS))
    return inputs.groupBy(bucket.alias("bucket")).applyInPandas(
        score_group(grain), schema=OUTPUT_SCHEMA
    )


def user_series(table: DataFrame, path: str) -> DataFrame:
    """A user's series table (series_id, ts, value, optional volume) as detection input with
    the default settings."""
    from jobs.core.located_yaml import did_you_mean

    present = {c.lower(): c for c in table.columns}
    for needed in ("series_id", "ts", "value"):
        if needed not in present:
            hint = did_you_mean(needed, table.columns)
            raise SeriesTableError(
                f"{path}: column '{needed}' is missing (columns: {', '.join(table.columns)})"
                + (f"; {hint}" if hint else "")
            )
    base = DetectorConfig()
    volume = F.col(present["volume"]).cast("double") if "volume" in present else F.lit(None)
    return table.select(
        F.col(present["series_id"]).cast("string").alias("series_id"),
        F.col(present["ts"]).cast("timestamp").alias("ts"),
        F.col(present["value"]).cast("double").alias("value"),
        volume.cast("double").alias("volume"),
        F.lit(base.sensitivity).alias("sensitivity"),
        F.lit(base.min_volume).alias("min_volume"),
        F.lit("both").alias("direction"),
        F.lit(False).alias("counts"),
        F.lit(1.0).alias("rate_scale"),
        F.lit(False).alias("poisson"),
        F.lit("gauge").alias("kind"),
        F.lit(None).cast("string").alias("grain"),
    )


class SeriesTableError(InputError):
    """A user's series table lacks a needed column."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.problems = ()

"""What `safety-metrics detect` accepts (its input contract, printed by `detect --help`)
and its defaults: importable without pandas or Spark, so that `--help` needs neither."""

#: Inputs of up to this many series are scored in this process, without starting Spark.
LOCAL_SERIES_LIMIT = 1_000
#: The grain a series of one timestamp is scored at (it is warming up at any grain).
LONE_POINT_GRAIN = "day"

DETECT_CONTRACT = """\
input columns (names case-insensitive; CSV, Parquet file or folder, or a Delta folder):
  series_id   the series a row belongs to (without it: one series, named after the file)
  ts          ISO 8601 time (YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], an offset is converted
              to UTC; none means UTC); unique within a series. Also read from a column
              timestamp, time, date or datetime where there is no ts
  value       a number (empty: a missing point); or, instead, numerator and denominator:
              value = numerator / denominator, and the denominator is the volume
  volume      optional: the denominator of a rate or proportion (a Poisson floor on its
              noise); points under --min-volume are never alerted
  kind        optional, constant per series: count, rate, proportion, mean, gauge, latency
  direction   optional, constant per series: up (alert rises only), down, both
  A kind or direction column wins over the flag; the flag fills series whose cells are
  empty. Default kind: gauge; with numerator and denominator, proportion (rate where the
  numerator exceeds the denominator).

grains: 1min, 5min, 10min, 15min, 30min, hour, day, detected per series from the spacing
  of its timestamps: the largest grain dividing the most common spacing. Every timestamp
  must lie on that grain's grid (a longer spacing is missing points; a point off the grid
  is an error: mixed grains). --grain sets the grain of every series.

scoring: up to --max-local-series series in this process (no Spark), more in one Spark
  job; the checks and the output are the same either way.

every series gets a status: judged, warming up (needs N more points), too sparse,
  constant, low volume, or rejected (with why).

exit status: 0 some series were judged and the points were written; 2 the input breaks the
  contract (every problem listed with file, line (CSV, header = line 1) or row (Parquet,
  Delta), column and value; nothing written) or no series could be judged (nothing
  written); 1 any other failure.
"""

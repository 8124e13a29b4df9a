"""Detection over many series in one Spark job: `score_series` on N series x D days.

    .venv/bin/python -m tests.benchmarks.bench_detect_spark --series 20000 --days 90

Writes a seeded Parquet table of daily series (weekly seasonality, Poisson-like noise, a
few spikes), then times, in the same run:
- baseline: the same detector in one Python process over a sample of the series, scaled
  to all of them (what a driver-side loop would cost);
- spark: every series scored by one `applyInPandas` job (the job count is checked), with
  the result written to Parquet so that every point is computed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.core.config import load_config
from jobs.core.session import build_session
from jobs.monitoring.series import score_series, user_series
from udfs.anomaly_detectors import detect_series
from udfs.detector_settings import DetectorConfig


def write_series(path: str, series: int, days: int, seed: int) -> None:
    """Seeded daily series as Parquet, written in chunks (series_id, ts, value, volume)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01")
    ts = start + np.arange(days).astype("timedelta64[D]")
    weekly = 1.0 + 0.2 * (((np.arange(days) + 3) % 7) >= 5)
    writer = None
    for first in range(0, series, 5000):
        ids = np.arange(first, min(series, first + 5000))
        level = rng.lognormal(4, 1.5, len(ids))[:, None]
        values = rng.poisson(level * weekly[None, :]).astype(float)
        spikes = rng.random(len(ids)) < 0.05
        values[spikes, -5] *= 3
        table = pa.table(
            {
                "series_id": np.repeat([f"s{i}" for i in ids], days),
                "ts": np.tile(ts, len(ids)).astype("datetime64[us]"),
                "value": values.ravel(),
                "volume": np.repeat(level.ravel(), days),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=int, default=500, help="series in the baseline sample")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-detect-")
    try:
        data = os.path.join(folder, "series.parquet")
        t0 = time.perf_counter()
        write_series(data, args.series, args.days, args.seed)
        print(
            f"wrote {args.series:,} series x {args.days} days in {time.perf_counter() - t0:.1f} s"
        )

        frame = pq.read_table(data).to_pandas()
        sample = frame[frame["series_id"].isin([f"s{i}" for i in range(args.sample)])]
        t0 = time.perf_counter()
        for _, group in sample.groupby("series_id", sort=False):
            detect_series(group["ts"], group["value"].to_numpy(), config=DetectorConfig())
        per_series = (time.perf_counter() - t0) / args.sample
        baseline = per_series * args.series
        print(
            f"baseline (one process): {per_series * 1e3:.2f} ms per series, "
            f"{baseline:.1f} s for all {args.series:,}"
        )

        spark = build_session(load_config("local"))
        spark.conf.set("spark.sql.adaptive.enabled", "false")
        group = f"bench-{uuid.uuid4().hex}"
        series = user_series(spark.read.parquet(data), data)
        spark.read.parquet(data).count()  # warm-up: JVM and file listing
        spark.sparkContext.setJobGroup(group, "scoring")
        t0 = time.perf_counter()
        score_series(series, "day").write.mode("overwrite").parquet(os.path.join(folder, "out"))
        seconds = time.perf_counter() - t0
        jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
        spark.sparkContext.setJobGroup("", "")
        flagged = spark.read.parquet(os.path.join(folder, "out")).where("is_anomaly").count()
        points = args.series * args.days
        print(
            f"spark ({spark.conf.get('spark.master')}): {seconds:.1f} s for {points:,} points "
            f"in {jobs} Spark job(s); {flagged:,} anomalies; baseline / spark = "
            f"{baseline / seconds:.2f}x"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`detect` on a small file, end to end (the CLI process included): without Spark against the
Spark path, in the same run.

    .venv/bin/python -m tests.benchmarks.bench_detect_small --series 100 --days 90

Writes a seeded CSV of daily series (weekly seasonality, Poisson noise, a few spikes, no
volume column), then runs `python -m jobs.cli detect` on it twice as a fresh process:
- local: scored in the process, no Spark (the default up to 1,000 series);
- spark: `--max-local-series 0`, scored by one `applyInPandas` job in a local session.
Both outputs must be identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def write_series(path: str, series: int, days: int, seed: int) -> None:
    """Seeded daily series as CSV: series_id, ts, value."""
    rng = np.random.default_rng(seed)
    weekly = 1.0 + 0.2 * (((np.arange(days) + 3) % 7) >= 5)
    first = dt.date(2026, 1, 1)
    stamps = [str(first + dt.timedelta(days=i)) for i in range(days)]
    with open(path, "w") as f:
        f.write("series_id,ts,value\n")
        for s in range(series):
            values = rng.poisson(rng.lognormal(4, 1.5) * weekly).astype(float)
            if rng.random() < 0.1:
                values[-5] *= 3
            f.writelines(f"s{s},{t},{v:g}\n" for t, v in zip(stamps, values, strict=True))


def timed_detect(data: str, output: str, *extra: str) -> float:
    """Seconds of one `detect` process, start to exit."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jobs.cli", "detect", "--input", data, "--output", output, *extra],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-detect-small-")
    try:
        data = os.path.join(folder, "series.csv")
        write_series(data, args.series, args.days, args.seed)
        local_out, spark_out = (os.path.join(folder, f"{n}.csv") for n in ("local", "spark"))
        local = timed_detect(data, local_out)
        spark = timed_detect(data, spark_out, "--max-local-series", "0")
        same = filecmp.cmp(local_out, spark_out, shallow=False)
        print(f"{args.series} series x {args.days} days, detect end to end (process included):")
        print(f"  local (no Spark): {local:.2f} s")
        print(f"  spark (local session, one applyInPandas job): {spark:.2f} s")
        print(f"  spark / local: {spark / local:.1f}x; outputs identical: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

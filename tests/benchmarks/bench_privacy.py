"""The privacy audit on a written `metric_values`: how long reading and each stage take.

    .venv/bin/safety-metrics run --start 2026-09-01 --end 2026-10-26     # the 56-day run
    .venv/bin/python -m tests.benchmarks.bench_privacy --warehouse warehouse [--repeat 3]

Reads the table's keys, flags and units once (timed), then runs the whole audit (all five
stages) and the publish gate's audit (the last stage alone) `--repeat` times each and prints
the median seconds. Target: the gate's audit well under the run's own time (a few seconds
on the 56-day default run; see docs/privacy.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.session import build_session
from jobs.metrics.job import METRIC_VALUES
from jobs.metrics.loader import load_catalog
from jobs.privacy.audit import audit
from jobs.privacy.gate import published_rows
from jobs.privacy.publication import FULL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default="warehouse")
    parser.add_argument("--defs", default="metric_defs")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = build_session(load_config(None))
    sink = DeltaSink.for_session(spark, "auto")
    catalog = load_catalog(Path(args.defs))
    table = os.path.join(args.warehouse, METRIC_VALUES)
    began = time.perf_counter()
    rows = published_rows(spark, sink, catalog, table, None, None)
    read = time.perf_counter() - began
    whole, gate = [], []
    for _ in range(args.repeat):
        report = audit(rows, catalog)
        whole.append(report.seconds)
        gate.append(audit(rows, catalog, stages=(FULL,)).seconds)
    print(f"{len(rows):,} rows, {report.suppressed:,} suppressed, "
          f"{len(report.findings):,} recoverable")  # fmt: skip
    print(f"read: {read:.1f} s; audit, all stages: {statistics.median(whole):.1f} s; "
          f"last stage (the gate's): {statistics.median(gate):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()

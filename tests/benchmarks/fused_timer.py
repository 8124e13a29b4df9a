"""Time the fused metrics job of whatever code is first on sys.path (one process).

    python tests/benchmarks/fused_timer.py --data WAREHOUSE --scale S --repeats N

Prints one JSON line: {"seconds": [...], "cells": n}. `bench_metrics --compare-ref REF`
runs it alternately in this checkout and in a worktree of REF, so that the code of another
commit (today's baseline) is timed on the same data, on the same machine, in the same run.
Only APIs that have existed since the fused job was built are used here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the checkout to time, before any installed copy

from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.logs import configure_logging
from jobs.core.session import build_session
from jobs.generate.params import GeneratorParams
from jobs.metrics.definitions import Catalog
from jobs.metrics.job import compute_metric_rows
from jobs.metrics.loader import load_catalog
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import compile_plan


def daily_only(catalog: Catalog) -> Catalog:
    metrics = {
        n: m if m.grain == "hour" else replace(m, windows=("1d",))
        for n, m in catalog.metrics.items()
    }
    return replace(catalog, metrics=metrics)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--env", default="local")
    args = parser.parse_args()
    configure_logging("WARNING")
    spark = build_session(load_config(args.env))
    sink = DeltaSink.for_session(spark, "delta-rs")
    params = GeneratorParams(scale=args.scale)
    start = params.start_date
    end = start + dt.timedelta(days=params.days - 1)
    catalog = daily_only(load_catalog(Path.cwd() / "metric_defs"))

    def fused(first: dt.date, last: dt.date) -> int:
        plan = compile_plan(catalog)
        results = compute_passes(spark, sink, catalog, plan, args.data, first, last)
        return compute_metric_rows(catalog, plan, results).localCheckpoint().count()

    fused(start, start)  # warm-up
    seconds, cells = [], 0
    for _ in range(args.repeats):
        began = time.perf_counter()
        cells = fused(start, end)
        seconds.append(time.perf_counter() - began)
    print(json.dumps({"seconds": seconds, "cells": cells}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()

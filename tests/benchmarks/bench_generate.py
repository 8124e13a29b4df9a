"""Benchmark: `generate` at several scales, with driver memory, against a count-only baseline.

    .venv/bin/python -m tests.benchmarks.bench_generate --scales 1 10 50

For each scale it times (a) building and counting the views table (the baseline: pure Spark
work, no writes) and (b) the full `generate` job (all nine tables written to Delta), and
prints rows, seconds and the ratio of the two. Wrap it in `/usr/bin/time -v` for the peak
memory of the largest process (the Spark driver JVM, capped by `spark.driver_memory`).
Results belong in docs/benchmarks.md together with the command.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.logs import configure_logging
from jobs.core.session import build_session
from jobs.generate.job import generate
from jobs.generate.params import GeneratorParams
from jobs.generate.tables import build_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--env", default="local")
    args = parser.parse_args()
    config = load_config(args.env)
    configure_logging("WARNING")
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    print(f"backend={sink.backend.name} master={config.spark.master}")
    print(f"{'scale':>6} {'views':>12} {'count_s':>8} {'generate_s':>10} {'ratio':>6}")
    for scale in args.scales:
        params = GeneratorParams(scale=scale)
        started = time.perf_counter()
        views = build_tables(spark, params)["views"].count()
        count_s = time.perf_counter() - started
        out = tempfile.mkdtemp(prefix="bench-generate-")
        try:
            summary = generate(spark, sink, params, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"{scale:>6g} {views:>12,} {count_s:>8.1f} {summary.seconds:>10.1f} "
            f"{summary.seconds / count_s:>6.1f}",
            flush=True,
        )
    spark.stop()


if __name__ == "__main__":
    main()

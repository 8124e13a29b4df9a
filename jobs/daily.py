"""`safety-metrics daily`: the main job on a laptop (data if absent, metrics, monitoring)."""

from __future__ import annotations

import argparse

from jobs.core.config import AppConfig


def run_daily_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Generate the default dataset when it is absent, compute the metrics for the date,
    then score that date for anomalies (and analyse experiments with --with-experiments)."""
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.generate.job import generate, raw_dir
    from jobs.generate.params import GeneratorParams
    from jobs.metrics.cli import metrics_run
    from jobs.metrics.loader import default_defs_dir, load_catalog
    from jobs.monitoring.cli import monitor

    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    summary = generate(
        spark, sink, GeneratorParams(), raw_dir(config.warehouse), only_if_missing=True
    )
    if not summary.skipped:
        print(
            f"Generated the default dataset in {summary.seconds:.1f}s "
            f"under {raw_dir(config.warehouse)}"
        )
    day = metrics_run(args, config).dates[-1]
    print()
    catalog = load_catalog(args.defs or default_defs_dir())
    code = monitor(spark, sink, config, catalog, day, day, args.run_id)
    if code == 0 and args.with_experiments:
        from jobs.experiments.cli import run_defined_experiments

        print()
        code = run_defined_experiments(spark, sink, config, args.defs, None, day, args.run_id)
    return code

"""`safety-metrics generate`: the synthetic dataset as Delta tables."""

from __future__ import annotations

import argparse

from jobs.core.config import AppConfig


def run_generate_command(args: argparse.Namespace, config: AppConfig) -> int:
    from jobs.core.delta import DeltaSink
    from jobs.core.session import build_session
    from jobs.generate.job import generate, raw_dir

    params = args.params  # checked with the other arguments (`jobs.cli._generator_params`)
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, config.delta_backend)
    output = args.output or raw_dir(config.warehouse)
    summary = generate(spark, sink, params, output, only_if_missing=args.if_missing)
    if summary.skipped:
        print(f"Dataset already present at {output} (same parameters); nothing written.")
        return 0
    print(f"\nWrote {len(summary.rows)} Delta tables to {output} in {summary.seconds:.1f}s:")
    for name, rows in summary.rows.items():
        print(f"  raw.{name:<24} {rows:>14,} rows" if rows >= 0 else f"  raw.{name}")
    print(f"  ground truth: {output}/_ground_truth.json")
    return 0

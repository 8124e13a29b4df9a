"""Benchmark: the daily metrics job at growing data sizes, on local[2] and on a standalone
cluster, as a scheduler runs it.

    .venv/bin/python -m tests.benchmarks.bench_scaling --scales 1 4 16

For each scale (about 1M view events per unit, 56 days) the script generates the dataset
once (kept under --data), then times the daily job for the last date, all windows (1d, 7d,
28d) and every metric of the default catalog:
  - local: `safety-metrics run` in its own process on local[2] (conf/local.yaml);
  - cluster: the packaged `entrypoints/daily_metrics.py` spark-submitted to a standalone
    master with two workers of one core each on loopback (conf/cluster.yaml).
Both are whole processes (JVM start, validation, passes, gates, write). It prints seconds,
seconds per million view events, growth against the smallest scale (the baseline measured in
the same run) and cluster / local, and checks that both wrote the same rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
from deltalake import DeltaTable

from jobs.metrics.job import METRIC_VALUES
from jobs.submit.package import build_package
from tests.conftest import REPO_ROOT
from tests.standalone_cluster import StandaloneCluster

DAYS = 56


def generated(data: Path, scale: float) -> Path:
    """The warehouse with the scale's raw tables (generated on first use)."""
    warehouse = data / f"scale-{scale:g}"
    if not (warehouse / "raw" / "_ground_truth.json").exists():
        print(f"generating scale {scale:g} into {warehouse} ...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jobs.cli", "generate", "--scale", str(scale),
             "--days", str(DAYS), "--warehouse", str(warehouse)],
            check=True, capture_output=True,
        )  # fmt: skip
        print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
    return warehouse


def view_events(warehouse: Path) -> int:
    adds = DeltaTable(str(warehouse / "raw" / "views")).get_add_actions(flatten=True)
    return int(sum(adds.column("num_records").to_pylist()))


def output_over(raw_warehouse: Path, root: Path) -> Path:
    """A fresh warehouse for one contender's outputs, reading the generated raw tables."""
    root.mkdir(parents=True)
    os.symlink(raw_warehouse / "raw", root / "raw")
    return root


def last_day(warehouse: Path) -> str:
    adds = DeltaTable(str(warehouse / "raw" / "views")).get_add_actions(flatten=True)
    return str(max(adds.column("partition.date").to_pylist()))


def time_local(warehouse: Path, day: str, log: Path) -> float:
    started = time.perf_counter()
    with open(log, "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "run", "--env", "local",
             "--warehouse", str(warehouse), "--date", day],
            stdout=out, stderr=subprocess.STDOUT, check=False, cwd=REPO_ROOT,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"local run failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def rows_of(warehouse: Path) -> pd.DataFrame:
    frame = DeltaTable(str(warehouse / METRIC_VALUES)).to_pandas()
    frame = frame.drop(columns=["run_id", "computed_at"])
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns, na_position="first").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0, 16.0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/safety-metrics-scaling"))
    parser.add_argument("--worker-memory", default="4g")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    package = build_package(work / "dist", REPO_ROOT / "metric_defs").folder
    results = []
    with StandaloneCluster(
        work / "cluster", workers=2, cores=1, memory=args.worker_memory
    ) as cluster:
        print(f"standalone cluster {cluster.url}: 2 workers x 1 core, {args.worker_memory} each")
        for scale in args.scales:
            raw = generated(args.data, scale)
            views, day = view_events(raw), last_day(raw)
            print(f"scale {scale:g}: {views:,} view events; daily job for {day}", flush=True)
            local = output_over(raw, work / f"local-{scale:g}")
            t_local = time_local(local, day, work / f"local-{scale:g}.log")
            print(f"  local[2]: {t_local:7.1f} s", flush=True)
            remote = output_over(raw, work / f"cluster-{scale:g}")
            submitted = cluster.submit(
                package,
                "daily_metrics",
                ["--warehouse", str(remote), "--date", day],
                log_name=f"cluster-{scale:g}",
                executor_memory="3g",
            ).wait(timeout_s=3600)
            if submitted.returncode != 0:
                raise RuntimeError(f"cluster run failed; see {submitted.log}")
            print(f"  cluster:  {submitted.seconds:7.1f} s", flush=True)
            same = rows_of(local).equals(rows_of(remote))
            results.append((scale, views, t_local, submitted.seconds, len(rows_of(local)), same))
    base = results[0]
    print()
    print(
        f"{'scale':>6} {'view events':>12} {'cells':>7} {'local s':>8} {'cluster s':>9} "
        f"{'local s/M':>9} {'cluster s/M':>11} {'local x':>8} {'cluster x':>9} "
        f"{'cluster/local':>13} {'same rows':>9}"
    )
    for scale, views, t_local, t_cluster, cells, same in results:
        print(
            f"{scale:>6g} {views:>12,} {cells:>7,} {t_local:>8.1f} {t_cluster:>9.1f} "
            f"{t_local / views * 1e6:>9.2f} {t_cluster / views * 1e6:>11.2f} "
            f"{t_local / base[2]:>7.2f}x {t_cluster / base[3]:>8.2f}x "
            f"{t_cluster / t_local:>12.2f}x {'yes' if same else 'NO':>9}"
        )
    print(f"(x: time against scale {base[0]:g}, whose data is {results[-1][1] / base[1]:.1f}x "
          "smaller than the largest)")  # fmt: skip


if __name__ == "__main__":
    main()

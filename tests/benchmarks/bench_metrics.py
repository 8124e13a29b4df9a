"""Benchmark: the fused metrics job against one-query-per-metric Spark and against DuckDB.

    .venv/bin/python -m tests.benchmarks.bench_metrics --scale 20

Generates (once, kept under --data) the synthetic dataset at `--scale` (about 1M view events
per unit), then computes the default catalog for every day of the data (a backfill, so all
view events are aggregated; daily windows only, so that every contender computes the same
cells) in several ways, timed in the same run after a warm-up (the fused job over one day); each
fused contender is the median of --repeats runs:
  - fused: the compiled plan, one pass per source, all slices as grouping sets;
  - single: the same job for one metric (violative_view_rate) over the largest source;
  - views catalog: 22 metrics over that same source alone (views_catalog/views.yaml);
  - naive: one Spark query per metric and slice set computing the same outputs (values,
    units, interval statistics): the same engine with fusion switched off;
  - hand-written: one plain groupBy per metric and slice set computing values only (no units,
    no intervals, no suppression inputs), as a quick notebook would;
  - duckdb: the same metrics as SQL (GROUPING SETS per metric) in DuckDB over the same
    Parquet files (the tables' live files).
It prints seconds and ratios, and checks that fused and DuckDB agree on overall values.

    .venv/bin/python -m tests.benchmarks.bench_metrics --scale 21 --compare-ref ab6e3eb

times only the fused job, alternately this checkout's and another commit's (in a temporary
git worktree; `fused_timer.py` in a process of its own each time), --repeats rounds, and
prints both medians and their ratio: what a change costs against the code before it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.logs import configure_logging
from jobs.core.session import build_session
from jobs.generate.job import existing_truth, generate, raw_dir
from jobs.generate.params import GeneratorParams
from jobs.metrics.definitions import Catalog, MetricDef, Part, SourceDef
from jobs.metrics.job import compute_metric_rows
from jobs.metrics.loader import load_catalog
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import compile_plan
from jobs.metrics.sources import dim_column, prepare, table_reader
from tests.conftest import REPO_ROOT


def daily_only(catalog: Catalog) -> Catalog:
    """The catalog with every daily metric's windows reduced to 1d."""
    metrics = {
        n: m if m.grain == "hour" else replace(m, windows=("1d",))
        for n, m in catalog.metrics.items()
    }
    return replace(catalog, metrics=metrics)


def load_views_catalog() -> Catalog:
    """The default catalog's settings and sources with views_catalog/views.yaml's metrics."""
    folder = Path(tempfile.mkdtemp(prefix="views-catalog-"))
    for name in ("catalog.yaml", "sources.yaml"):
        shutil.copy(REPO_ROOT / "metric_defs" / name, folder / name)
    shutil.copy(Path(__file__).parent / "views_catalog" / "views.yaml", folder / "views.yaml")
    return load_catalog(folder)


def timed(label: str, work: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:8.1f} s", flush=True)
    return seconds, result


def timed_median(label: str, work: Any, repeats: int) -> tuple[float, Any]:
    """The median of `repeats` timed runs (a first run of a plan pays for code generation
    and JIT warm-up that the naive baseline's 70 similar queries amortize)."""
    runs = [timed(f"{label} [{i}/{repeats}]", work) for i in range(1, repeats + 1)]
    seconds = statistics.median(s for s, _ in runs)
    print(f"  {label + ', median':<44} {seconds:8.1f} s", flush=True)
    return seconds, runs[-1][1]


# --- naive: one Spark query per metric and slice set ----------------------------------------


def _cond(part_filter: str | None) -> Any:
    return F.expr(part_filter) if part_filter else F.lit(True)


def _part_agg(part: Part) -> Any:
    on = _cond(part.filter)
    if part.agg == "count":
        return F.count_if(on)
    value = F.when(on, F.expr(part.value or "null"))
    if part.agg == "sum":
        return F.sum(value)
    if part.agg == "distinct_count":
        return F.count_distinct(value)
    return F.approx_count_distinct(value)


def naive_metric(prepared: dict[str, DataFrame], catalog: Catalog, metric: MetricDef) -> int:
    """Run one query per slice set for `metric`; return the number of result rows."""
    rows = 0
    for slice_set in metric.slices:
        # The period comes from the source whose rows are grouped: the denominator's for a
        # ratio (the numerator side of a cross-source one is keyed below).
        time_of = catalog.sources[metric.sources()[-1]].time_column
        period = F.date_trunc("hour", time_of) if metric.grain == "hour" else F.to_date(time_of)
        keys = [period.alias("period"), *[F.col(dim_column(d)).alias(d) for d in slice_set]]
        if metric.quantile_part is not None:
            q = metric.quantile_part
            df = (
                prepared[q.source]
                .groupBy(*keys)
                .agg(F.percentile(F.when(_cond(q.filter), F.expr(q.value)), metric.quantile or 0.5))
            )
        elif metric.denominator is not None and metric.numerator is not None:
            num, den = metric.numerator, metric.denominator
            if num.source == den.source:
                df = (
                    prepared[num.source]
                    .groupBy(*keys)
                    .agg(_part_agg(num).alias("n"), _part_agg(den).alias("d"))
                )
            else:
                time_num = catalog.sources[num.source].time_column
                keys_num = [
                    F.to_date(time_num).alias("period"),
                    *[F.col(dim_column(d)).alias(d) for d in slice_set],
                ]
                left = prepared[num.source].groupBy(*keys_num).agg(_part_agg(num).alias("n"))
                right = prepared[den.source].groupBy(*keys).agg(_part_agg(den).alias("d"))
                df = right.join(left, on=["period", *slice_set], how="left")
            df = df.select("*", F.try_divide(F.col("n"), F.col("d")).alias("value"))
        else:
            assert metric.numerator is not None
            df = prepared[metric.numerator.source].groupBy(*keys).agg(_part_agg(metric.numerator))
        rows += len(df.collect())
    return rows


# --- DuckDB: the same metrics as SQL --------------------------------------------------------


def duck_sources(con: duckdb.DuckDBPyConnection, catalog: Catalog, warehouse: str) -> None:
    """A view per source over its live Parquet files, with joins, derived columns and dims."""
    for name, source in catalog.sources.items():
        path = os.path.join(warehouse, source.location)
        table = DeltaTable(path)
        files = ", ".join(f"'{f}'" for f in table.file_uris())
        con.execute(
            f"CREATE OR REPLACE VIEW raw_{name} AS "
            f"SELECT * FROM read_parquet([{files}], hive_partitioning = true)"
        )
    for name, source in catalog.sources.items():
        select = [f"raw_{name}.*"]
        joins = ""
        for i, join in enumerate(source.joins):
            cols = ", ".join(join.columns)
            on = " AND ".join(f"raw_{name}.{c} = j{i}.{c}" for c in join.on)
            keys = ", ".join(join.on)
            lookup = f"SELECT DISTINCT ON ({keys}) {keys}, {cols} FROM raw_{join.source}"
            joins += f" LEFT JOIN ({lookup}) j{i} ON {on}"
            select += [f"j{i}.{c}" for c in join.columns]
        inner = f"SELECT {', '.join(select)} FROM raw_{name}{joins}"
        derived = ", ".join(f"{expr} AS {col}" for col, expr in source.columns)
        step = f"SELECT *{', ' + derived if derived else ''} FROM ({inner})"
        dims = ", ".join(
            f"coalesce(CAST({expr} AS VARCHAR), '(none)') AS d_{d}" for d, expr in source.dimensions
        )
        con.execute(f"CREATE OR REPLACE VIEW src_{name} AS SELECT *, {dims} FROM ({step})")


def _duck_part(part: Part) -> str:
    cond = part.filter or "TRUE"
    if part.agg == "count":
        return f"count_if({cond})"
    if part.agg == "sum":
        return f"sum(CASE WHEN {cond} THEN {part.value} END)"
    if part.agg == "distinct_count":
        return f"count(DISTINCT CASE WHEN {cond} THEN {part.value} END)"
    return f"approx_count_distinct(CASE WHEN {cond} THEN {part.value} END)"


def duck_metric(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, metric: MetricDef
) -> dict[Any, float | None]:
    """One GROUPING SETS query (two, joined, across sources); overall values by period."""

    def query(source: SourceDef, aggs: str) -> str:
        period = (
            f"date_trunc('hour', {source.time_column})"
            if metric.grain == "hour"
            else f"CAST({source.time_column} AS DATE)"
        )
        dims = sorted({d for s in metric.slices for d in s})
        sets = ", ".join(
            "(" + ", ".join(["period", *[f"d_{d}" for d in s]]) + ")" for s in metric.slices
        )
        cols = ", ".join(["period", *[f"d_{d}" for d in dims]])
        return (
            f"SELECT {cols}, grouping({cols}) AS gid, {aggs} FROM (SELECT *, {period} AS period "
            f"FROM src_{source.name}) GROUP BY GROUPING SETS ({sets})"
        )

    if metric.quantile_part is not None:
        q = metric.quantile_part
        sql = query(
            catalog.sources[q.source],
            f"quantile_cont(CASE WHEN {q.filter or 'TRUE'} THEN {q.value} END, "
            f"{metric.quantile}) AS value",
        )
    elif metric.denominator is not None and metric.numerator is not None:
        num, den = metric.numerator, metric.denominator
        if num.source == den.source:
            sql = query(
                catalog.sources[num.source],
                f"{_duck_part(num)} / {_duck_part(den)} * {metric.per} AS value",
            )
        else:
            sql = query(catalog.sources[den.source], f"{_duck_part(den)} AS d")
            other = query(catalog.sources[num.source], f"{_duck_part(num)} AS n")
            dims = sorted({d for s in metric.slices for d in s})
            on = " AND ".join(
                f"a.{c} IS NOT DISTINCT FROM b.{c}"
                for c in ["period", "gid", *[f"d_{d}" for d in dims]]
            )
            value = f"coalesce(b.n, 0) / a.d * {metric.per} AS value"
            sql = f"SELECT a.*, {value} FROM ({sql}) a LEFT JOIN ({other}) b ON {on}"
    else:
        assert metric.numerator is not None
        sql = query(
            catalog.sources[metric.numerator.source], f"{_duck_part(metric.numerator)} AS value"
        )
    rows = con.execute(sql).fetchall()
    names = [d[0] for d in con.description]
    result: dict[Any, float | None] = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        if all(v is None for k, v in record.items() if k.startswith("d_")):
            result[record["period"]] = record["value"]
    return result


def _timer(root: Path, warehouse: str, scale: float, env: str) -> list[float]:
    """Seconds of one timed fused run of the checkout at `root`, in a process of its own."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("fused_timer.py")),
            *("--data", warehouse, "--scale", str(scale), "--env", env),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return [float(x) for x in result["seconds"]]


def compare_with_ref(ref: str, warehouse: str, scale: float, rounds: int, env: str) -> None:
    """The fused job of this checkout against that of commit `ref`, alternately."""
    tree = Path(tempfile.mkdtemp(prefix="bench-ref-")) / "tree"
    git = ["git", "-C", str(REPO_ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(tree), ref], check=True)
    here: list[float] = []
    there: list[float] = []
    try:
        for i in range(1, rounds + 1):
            for label, root, out in (("this checkout", REPO_ROOT, here), (ref, tree, there)):
                seconds = _timer(root, warehouse, scale, env)
                out.extend(seconds)
                print(f"  round {i}/{rounds}: fused, {label:<16} {seconds[0]:8.1f} s", flush=True)
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)
    mine, theirs = statistics.median(here), statistics.median(there)
    print(f"\n{'contender':<40} {'median s':>8} {'runs':>12}")
    print(f"{'fused, this checkout':<40} {mine:>8.1f} {' '.join(f'{x:.1f}' for x in here):>12}")
    print(f"{'fused, ' + ref:<40} {theirs:>8.1f} {' '.join(f'{x:.1f}' for x in there):>12}")
    print(f"\nthis checkout / {ref} = {mine / theirs:.3f}x")


def contracts_overhead(fused: Any, repeats: int) -> None:
    """The fused job with and without the sources' contract checks, alternating (so that
    a busy machine's drift hits both), `repeats` runs each; prints the medians."""
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for i in range(1, repeats + 1):
        for contracts in (False, True):
            label = f"fused, contracts {'on' if contracts else 'off'} [{i}/{repeats}]"
            took, _ = timed(label, lambda c=contracts: fused(None, contracts=c))
            seconds[contracts].append(took)
    on, off = (statistics.median(seconds[c]) for c in (True, False))
    print(
        f"fused with contracts: median {on:.1f} s; without: median {off:.1f} s; "
        f"overhead {100 * (on / off - 1):+.1f}% (on: {[round(x, 1) for x in seconds[True]]}, "
        f"off: {[round(x, 1) for x in seconds[False]]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument(
        "--data", default="/tmp/safety-metrics-bench", help="warehouse for the data"
    )
    parser.add_argument("--env", default="local")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each fused contender (median)"
    )
    parser.add_argument(
        "--contracts-overhead",
        action="store_true",
        help="only time the fused job with and without the sources' contract checks, "
        "alternating, --repeats times each, and print the medians",
    )
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=0,
        help="time only this many naive queries per source and estimate the rest (0: all)",
    )
    parser.add_argument(
        "--compare-ref",
        default=None,
        help="only time the fused job against that of this git commit (see the docstring)",
    )
    args = parser.parse_args()
    config = load_config(args.env)
    configure_logging("WARNING")
    spark = build_session(config)
    sink = DeltaSink.for_session(spark, "delta-rs")
    params = GeneratorParams(scale=args.scale)
    warehouse = args.data
    truth = existing_truth(raw_dir(warehouse))
    if truth is None or truth.get("params", {}).get("scale") != args.scale:
        print(f"generating scale {args.scale} into {warehouse} ...", flush=True)
        generate(spark, sink, params, raw_dir(warehouse))
    if args.compare_ref:
        spark.stop()
        compare_with_ref(args.compare_ref, warehouse, args.scale, args.repeats, args.env)
        return
    catalog = daily_only(load_catalog(REPO_ROOT / "metric_defs"))
    start = params.start_date
    end = start + dt.timedelta(days=params.days - 1)
    views = DeltaTable(os.path.join(warehouse, "raw/views")).get_add_actions(flatten=True)
    n_views = sum(views.column("num_records").to_pylist())
    print(
        f"scale {args.scale}: {n_views:,} view events, {start}..{end} ({params.days} days), "
        f"{len(catalog.metrics)} metrics, master {config.spark.master}"
    )

    kept: dict[str, DataFrame] = {}

    def fused(names: list[str] | None, contracts: bool = True) -> int:
        plan = compile_plan(catalog, names)
        passes = compute_passes(
            spark, sink, catalog, plan, warehouse, start, end, contracts=contracts
        )
        rows = compute_metric_rows(catalog, plan, passes).localCheckpoint()
        kept["last"] = rows
        return rows.count()

    full_plan = compile_plan(catalog)
    print(
        f"fused plan: {len(full_plan.passes)} passes; "
        f"{sum(len(p.slice_sets) for p in full_plan.passes)} grouping sets in all"
    )
    warm_plan = compile_plan(catalog)
    timed(
        "warm-up: fused, first day only",
        lambda: compute_metric_rows(
            catalog,
            warm_plan,
            compute_passes(spark, sink, catalog, warm_plan, warehouse, start, start),
        ).count(),
    )
    if args.contracts_overhead:
        contracts_overhead(fused, args.repeats)
        spark.stop()
        return
    t_fused, cells = timed_median(
        f"fused, all {len(catalog.metrics)} metrics", lambda: fused(None), args.repeats
    )
    ours = kept["last"]
    print(f"    -> {cells:,} metric cells")
    t_single, _ = timed_median(
        "fused, 1 metric (violative_view_rate)",
        lambda: fused(["violative_view_rate"]),
        args.repeats,
    )
    views_catalog = daily_only(load_views_catalog())
    views_plan = compile_plan(views_catalog)
    t_views, _ = timed_median(
        f"views catalog, {len(views_catalog.metrics)} metrics over views alone",
        lambda: (
            compute_metric_rows(
                views_catalog,
                views_plan,
                compute_passes(spark, sink, views_catalog, views_plan, warehouse, start, end),
            )
            .localCheckpoint()
            .count()
        ),
        args.repeats,
    )

    t_naive = t_hand = float("nan")
    if not args.skip_naive:
        singles = [
            (n, s) for n, m in catalog.metrics.items() if m.type != "derived" for s in m.slices
        ]
        # Every query is timed by default; --naive-sample N times only the first N queries of
        # each source and scales each source's mean up to its number of queries (a quick
        # estimate, biased low: each source's first queries have the fewest dimensions).
        by_source: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for name, slice_set in singles:
            by_source.setdefault(catalog.metrics[name].sources()[-1], []).append((name, slice_set))
        sampled = args.naive_sample > 0
        sample = [
            q for qs in by_source.values() for q in (qs[: args.naive_sample] if sampled else qs)
        ]

        def one_by_one() -> dict[str, list[float]]:
            seconds: dict[str, list[float]] = {}
            for i, (name, slice_set) in enumerate(sample, start=1):
                began = time.perf_counter()
                metric = replace(catalog.metrics[name], slices=(slice_set,))
                alone = replace(catalog, metrics={name: metric})
                plan = compile_plan(alone, [name])
                results = compute_passes(spark, sink, alone, plan, warehouse, start, end)
                compute_metric_rows(alone, plan, results).localCheckpoint().count()
                source = catalog.metrics[name].sources()[-1]
                took = time.perf_counter() - began
                seconds.setdefault(source, []).append(took)
                print(
                    f"    naive {i}/{len(sample)}: {name} [{', '.join(slice_set)}] "
                    f"({source}) {took:.1f} s",
                    flush=True,
                )
            return seconds

        what = f"{len(sample)} of {len(singles)}" if sampled else f"all {len(singles)}"
        t_measured, measured = timed(f"naive, same outputs, {what} queries", one_by_one)
        for source, queries in sorted(by_source.items()):
            mean = sum(measured[source]) / len(measured[source])
            print(
                f"    {source}: {len(measured[source])} of {len(queries)} queries timed, "
                f"mean {mean:.1f} s, total {mean * len(queries):.0f} s"
            )
        t_naive = t_measured
        if sampled:
            t_naive = sum(
                sum(measured[source]) / len(measured[source]) * len(queries)
                for source, queries in by_source.items()
            )
            print(f"    -> estimated total for all {len(singles)} queries: {t_naive:.0f} s")
        read = table_reader(spark, sink, warehouse)
        prepared = {
            name: prepare(source, catalog.sources, read, (start.isoformat(), end.isoformat()))
            for name, source in catalog.sources.items()
        }
        n_queries = sum(len(m.slices) for m in catalog.metrics.values() if m.type != "derived")
        t_hand, _ = timed(
            f"hand-written values only, {n_queries} queries",
            lambda: sum(
                naive_metric(prepared, catalog, m)
                for m in catalog.metrics.values()
                if m.type != "derived"
            ),
        )

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 2}")
    duck_sources(con, catalog, warehouse)
    duck: dict[str, dict[Any, float | None]] = {}
    t_duck, _ = timed(
        "duckdb, one GROUPING SETS query per metric",
        lambda: duck.update(
            {
                n: duck_metric(con, catalog, m)
                for n, m in catalog.metrics.items()
                if m.type != "derived"
            }
        ),
    )

    # Agreement of overall values, fused vs DuckDB (approximate distincts excluded).
    overall = ours.where(F.col("slice_id") == "all").select("metric", "period", "value").collect()
    worst = 0.0
    compared = 0
    for row in overall:
        if (
            row["metric"] not in duck
            or catalog.metrics[row["metric"]].type == "approx_distinct_count"
        ):
            continue
        key = (
            row["period"]
            if catalog.metrics[row["metric"]].grain == "hour"
            else row["period"].date()
        )
        theirs = duck[row["metric"]].get(key)
        if theirs is None or row["value"] is None:
            continue
        compared += 1
        worst = max(worst, abs(row["value"] - theirs) / max(abs(theirs), 1e-12))
    print(
        f"fused vs duckdb overall values: {compared} compared, max relative difference {worst:.2e}"
    )
    print()
    print(f"{'contender':<40} {'seconds':>8} {'vs fused':>9}")
    for label, seconds in [
        ("fused (all metrics)", t_fused),
        ("fused (1 metric)", t_single),
        (f"views catalog ({len(views_catalog.metrics)} metrics, 1 source)", t_views),
        (f"naive Spark, same outputs{' (estimated)' if args.naive_sample else ''}", t_naive),
        ("hand-written Spark, values only", t_hand),
        ("duckdb, values only", t_duck),
    ]:
        print(f"{label:<40} {seconds:>8.1f} {seconds / t_fused:>8.2f}x")
    print(
        f"\nnaive / fused = {t_naive / t_fused:.1f}x (target >= 5); "
        f"{len(views_catalog.metrics)} metrics over views / one metric over views = "
        f"{t_views / t_single:.2f}x (target <= 2); "
        f"whole catalog (7 sources) / one metric = {t_fused / t_single:.2f}x"
    )
    spark.stop()


if __name__ == "__main__":
    main()

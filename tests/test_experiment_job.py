"""The experiment job on small seeded tables, against an independent computation of the same
numbers: the unit table against plain Python over the event rows; delta-method intervals,
CUPED (as ANCOVA), the SRM test and BH adjustments against NumPy/SciPy formulas; the
bootstrap against a single-machine Poisson bootstrap with the same weights, for ratios and
for clustered quantiles; and the written tables, re-runs and the `--units` command."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import stats

from jobs.cli import main
from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.experiments.analysis import Analysis, AnalysisSpec, MetricSpec, analyse
from jobs.experiments.definitions import ExperimentDef
from jobs.experiments.job import (
    EXPERIMENT_REPLICATES,
    EXPERIMENT_RESULTS,
    EXPERIMENT_UNITS,
    RESULT_SCHEMA,
    run_experiment,
    spec_for,
    write_results,
)
from jobs.experiments.loader import experiments_from_documents
from jobs.experiments.quantiles import quantile_arms
from jobs.experiments.stats import CupedMode
from jobs.experiments.units import quantile_events, unit_frame
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.sources import table_reader
from udfs.poisson_bootstrap import numpy_weights

DAY0 = dt.datetime(2026, 5, 1)
START, END = DAY0.date(), (DAY0 + dt.timedelta(days=9)).date()
COVARIATE_DAYS = 5
UNITS = 600

CATALOG = """\
sources:
  views:
    path: {views}
    format: parquet
    time_column: ts
    unit: viewer_id
  reports:
    path: {reports}
    format: parquet
    time_column: ts
    unit: reporter_id
metrics:
  - {{name: vvr, description: d, owner: o, source: views, type: ratio, good_direction: down,
     numerator: {{agg: count, filter: bad}}, denominator: {{agg: count}}}}
  - {{name: watch, description: d, owner: o, source: views, type: mean, value: watch,
     good_direction: up}}
  - {{name: n_views, description: d, owner: o, source: views, type: count}}
  - {{name: reports_per_1k, description: d, owner: o, type: rate, per: 1000,
     numerator: {{agg: count, source: reports}}, denominator: {{agg: count, source: views}}}}
  - {{name: watch_p90, description: d, owner: o, source: views, type: quantile, value: watch,
     quantile: 0.9}}
assignment_sources:
  log: {{path: {assignments}, format: parquet, unit_column: unit}}
experiments:
  - id: exp_t
    assignments: log
    variants: {{control: 0.5, treatment: 0.5}}
    control: control
    start: {start}
    end: {end}
    metrics: [vvr, watch, n_views, reports_per_1k, watch_p90]
    covariate: {{days: {covariate}}}
    replicates: 200
    seed: 77
"""


@dataclass
class World:
    """The seeded rows (as Python lists) and the catalog, experiment and Spark reader."""

    assignments: list[dict[str, Any]]
    views: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    catalog: Catalog
    exp: ExperimentDef
    warehouse: str


def _make_rows(rng: np.random.Generator) -> tuple[list[dict[str, Any]], ...]:
    assignments, views, reports = [], [], []
    for unit in range(UNITS):
        variant = "treatment" if rng.random() < 0.5 else "control"
        at = DAY0 + dt.timedelta(hours=float(rng.uniform(0, 96)))
        if unit % 50 == 7:
            at = DAY0 + dt.timedelta(days=12)  # assigned after the analysis window: excluded
        assignments.append(
            {"experiment_id": "exp_t", "unit": unit, "variant": variant, "assigned_at": at}
        )
        if unit % 60 == 11:  # logged in both arms: excluded
            other = "control" if variant == "treatment" else "treatment"
            assignments.append(
                {
                    "experiment_id": "exp_t",
                    "unit": unit,
                    "variant": other,
                    "assigned_at": at + dt.timedelta(hours=1),
                }
            )
        activity = rng.gamma(2.0, 1.5)  # per-unit level: events cluster by unit
        bad_rate = 0.1 * (0.7 if variant == "treatment" else 1.0)
        for _ in range(rng.poisson(activity * 4)):
            ts = DAY0 + dt.timedelta(hours=float(rng.uniform(-8 * 24, 11 * 24)))
            watch = None if rng.random() < 0.05 else round(float(rng.lognormal(3, 1)), 2)
            views.append(
                {"viewer_id": unit, "ts": ts, "bad": bool(rng.random() < bad_rate), "watch": watch}
            )
        for _ in range(rng.poisson(activity * 0.3)):
            ts = DAY0 + dt.timedelta(hours=float(rng.uniform(-8 * 24, 11 * 24)))
            reports.append({"reporter_id": unit, "ts": ts})
    assignments.append({"experiment_id": "other", "unit": 1, "variant": "x", "assigned_at": DAY0})
    return assignments, views, reports


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("experiment")
    assignments, views, reports = _make_rows(np.random.default_rng(2026))
    paths = {}
    for name, rows in (("assignments", assignments), ("views", views), ("reports", reports)):
        paths[name] = str(root / f"{name}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), paths[name])
    text = CATALOG.format(start=START, end=END, covariate=COVARIATE_DAYS, **paths)
    doc = parse_located(text, "defs.yaml")
    catalog, problems = catalog_from_documents([doc])
    assert not problems and catalog is not None, problems
    exp = experiments_from_documents([doc], catalog)["exp_t"]
    return World(assignments, views, reports, catalog, exp, str(root / "warehouse"))


def _spark_inputs(spark: SparkSession, w: World) -> tuple[Any, DataFrame]:
    sink = DeltaSink.for_session(spark, "delta-rs")
    read = table_reader(spark, sink, w.warehouse)
    return read, spark.read.parquet(w.exp.assignments.location)


# --- the independent computation --------------------------------------------------------------


def expected_units(w: World) -> dict[tuple[str, str], tuple[str, float, float, float, float]]:
    """(metric, unit_id) -> (variant, y, x, cy, cx), from the rows in plain Python."""
    by_unit: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in w.assignments:
        if a["experiment_id"] == "exp_t" and a["assigned_at"].date() <= END:
            by_unit[a["unit"]].append(a)
    assigned = {
        u: (rows[0]["variant"], min(r["assigned_at"] for r in rows))
        for u, rows in by_unit.items()
        if len({r["variant"] for r in rows}) == 1
    }
    sums: dict[tuple[int, str], float] = defaultdict(float)
    for source, rows, unit_col in (("v", w.views, "viewer_id"), ("r", w.reports, "reporter_id")):
        for row in rows:
            unit = row[unit_col]
            if unit not in assigned:
                continue
            at = assigned[unit][1]
            post = row["ts"] >= at and START <= row["ts"].date() <= END
            pre = at - dt.timedelta(days=COVARIATE_DAYS) <= row["ts"] < at
            for period, inside in (("post", post), ("pre", pre)):
                if not inside:
                    continue
                sums[(unit, f"{period}:{source}:n")] += 1
                if source == "v":
                    sums[(unit, f"{period}:v:bad")] += row["bad"]
                    if row["watch"] is not None:
                        sums[(unit, f"{period}:v:watch")] += row["watch"]
                        sums[(unit, f"{period}:v:watched")] += 1
    parts = {
        "vvr": ("v:bad", "v:n"),
        "watch": ("v:watch", "v:watched"),
        "n_views": ("v:n", None),
        "reports_per_1k": ("r:n", "v:n"),
        "watch_p90": ("v:watch", "v:watched"),
    }
    out = {}
    for unit, (variant, _) in assigned.items():
        for metric, (num, den) in parts.items():

            def total(period: str, key: str | None, u: int = unit) -> float:
                return 1.0 if key is None else sums[(u, f"{period}:{key}")]

            out[(metric, str(unit))] = (
                variant,
                total("post", num),
                total("post", den),
                total("pre", num),
                total("pre", den),
            )
    return out


def weighted_lower_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    return float(v[np.searchsorted(cw, q * cw[-1], side="left")])


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def units(spark: SparkSession, world: World) -> DataFrame:
    read, assignments = _spark_inputs(spark, world)
    return unit_frame(world.catalog, world.exp, read, assignments, END).cache()


@pytest.fixture(scope="module")
def analysis(spark: SparkSession, world: World, units: DataFrame) -> Analysis:
    read, assignments = _spark_inputs(spark, world)
    events = quantile_events(world.catalog, world.exp, read, assignments, END)
    return analyse(units, spec_for(world.catalog, world.exp), events)


def test_unit_table_matches_plain_python(world: World, units: DataFrame) -> None:
    expected = expected_units(world)
    got = {
        (r["metric"], r["unit_id"]): (r["variant"], r["y"], r["x"], r["cy"], r["cx"])
        for r in units.collect()
    }
    assert set(got) == set(expected)
    assert len({u for _, u in got}) == UNITS - 12 - 10  # late and conflicting units left out
    for key, (variant, *values) in expected.items():
        assert got[key][0] == variant
        assert got[key][1:] == pytest.approx(tuple(values), rel=1e-12, abs=1e-9), key


def _arms(
    world: World, metric: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    rows = [(k[1], *v) for k, v in expected_units(world).items() if k[0] == metric]
    out = {}
    for variant in ("control", "treatment"):
        mine = sorted(r for r in rows if r[1] == variant)
        out[variant] = tuple(np.array([r[i] for r in mine]) for i in (2, 3, 4, 5))
    return out  # type: ignore[return-value]


def _row(analysis: Analysis, metric: str, method: str) -> dict[str, Any]:
    found = [r for r in analysis.results if r["metric"] == metric and r["method"] == method]
    assert len(found) == 1, (metric, method)
    return found[0]


def pseudo_values(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """R + (y - R x) / mean(x): per-unit values whose mean is R and whose variance over n
    is the ratio's delta-method variance (for a mean, y itself)."""
    r = y.sum() / x.sum()
    return np.asarray(r + (y - r * x) / x.mean())


@pytest.mark.parametrize(
    ("metric", "per"), [("vvr", 1), ("watch", 1), ("n_views", 1), ("reports_per_1k", 1000)]
)
def test_delta_method_is_welchs_t_test_on_linearised_values(
    analysis: Analysis, world: World, metric: str, per: int
) -> None:
    """scipy's Welch test on the units' linearised values (computed here from the raw
    rows): statistic, p-value, df and interval."""
    arms = _arms(world, metric)
    control, treatment = (pseudo_values(arms[v][0], arms[v][1]) for v in arms)
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    ci = welch.confidence_interval(0.95)
    rc, rt = control.mean(), treatment.mean()
    row = _row(analysis, metric, "delta")
    assert row["control_value"] == pytest.approx(rc * per, rel=1e-12)
    assert row["treatment_value"] == pytest.approx(rt * per, rel=1e-12)
    assert row["lift"] == pytest.approx((rt - rc) * per, rel=1e-10)
    assert row["lift_lower"] == pytest.approx(ci.low * per, rel=1e-9)
    assert row["lift_upper"] == pytest.approx(ci.high * per, rel=1e-9)
    assert row["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert row["df"] == pytest.approx(welch.df, rel=1e-9)
    assert row["relative_lift"] == pytest.approx(rt / rc - 1, rel=1e-10)
    assert (row["units_control"], row["units_treatment"]) == (len(control), len(treatment))


def test_adjusted_intervals_use_the_benjamini_yekutieli_level(analysis: Analysis) -> None:
    """Per method, the rows' adjusted level is 1 - R alpha / m (R: BH rejections among its
    m rows), and the adjusted delta interval is Welch's at that level."""
    for method in ("delta", "cuped", "bootstrap"):
        family = [r for r in analysis.results if r["method"] == method]
        rejected = sum(r["significant"] for r in family)
        expected = 1 - max(rejected, 1) * 0.05 / len(family)
        for r in family:
            assert r["adjusted_level"] == pytest.approx(expected, rel=1e-12)
            adjusted = (r["lift_lower_adjusted"], r["lift_upper_adjusted"])
            assert r["significant"] == (adjusted[0] > 0 or adjusted[1] < 0), r
            assert adjusted[0] <= r["lift_lower"] and r["lift_upper"] <= adjusted[1]
    row = _row(analysis, "watch", "delta")
    level = row["adjusted_level"]
    half = (row["lift_upper"] - row["lift_lower"]) / 2
    wide = (row["lift_upper_adjusted"] - row["lift_lower_adjusted"]) / 2
    ratio = stats.t.isf((1 - level) / 2, row["df"]) / stats.t.isf(0.025, row["df"])
    assert wide / half == pytest.approx(ratio, rel=1e-9)


def test_cuped_on_a_mean_equals_ancova(analysis: Analysis, world: World) -> None:
    """For a per-unit mean (x = 1) the CUPED lift is the arm coefficient of y ~ 1 + arm + cy."""
    arms = _arms(world, "n_views")
    y = np.concatenate([arms["control"][0], arms["treatment"][0]])
    cy = np.concatenate([arms["control"][2], arms["treatment"][2]])
    arm = np.concatenate([np.zeros(len(arms["control"][0])), np.ones(len(arms["treatment"][0]))])
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(y), arm, cy]), y, rcond=None)
    cuped, delta = _row(analysis, "n_views", "cuped"), _row(analysis, "n_views", "delta")
    assert cuped["lift"] == pytest.approx(coef[1], rel=1e-9)
    assert cuped["lift_upper"] - cuped["lift_lower"] < delta["lift_upper"] - delta["lift_lower"]


def test_srm_and_benjamini_hochberg(analysis: Analysis, world: World) -> None:
    arms = _arms(world, "vvr")
    counts = [len(arms["control"][0]), len(arms["treatment"][0])]
    assert analysis.srm.p_value == pytest.approx(stats.chisquare(counts).pvalue, rel=1e-12)
    delta = [r for r in analysis.results if r["method"] == "delta"]
    p = np.array([r["p_value"] for r in delta])
    m, order = len(p), np.argsort(p)
    bh = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):  # step-up, written out
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        bh[i] = running
    assert [r["p_value_adjusted"] for r in delta] == pytest.approx(list(bh), rel=1e-12)
    for r in delta:
        assert r["significant"] == (r["p_value_adjusted"] < 0.05)


def test_bootstrap_equals_a_single_machine_poisson_bootstrap(
    analysis: Analysis, world: World, units: DataFrame
) -> None:
    keys = {r["unit_id"]: r["unit_key"] for r in units.select("unit_id", "unit_key").collect()}
    rows = [(k[1], *v) for k, v in expected_units(world).items() if k[0] == "vvr"]
    replicates = {}
    for variant in ("control", "treatment"):
        mine = [r for r in rows if r[1] == variant]
        w = numpy_weights(world.exp.seed, [keys[r[0]] for r in mine], world.exp.replicates)
        y, x = np.array([r[2] for r in mine]), np.array([r[3] for r in mine])
        replicates[variant] = (w.T @ y) / (w.T @ x)
        got = [
            r["value"]
            for r in analysis.replicates
            if r["metric"] == "vvr" and r["variant"] == variant
        ]
        np.testing.assert_allclose(got, replicates[variant], rtol=1e-12)
    lift = replicates["treatment"] - replicates["control"]
    row = _row(analysis, "vvr", "bootstrap")
    # 200 replicates: p = 2 (1 + c) / 201 is below 0.05 for c <= 4 replicates on the far
    # side, so the 95% interval runs from the 5th smallest to the 5th largest replicate.
    ordered = np.sort(lift)
    assert row["lift_lower"] == pytest.approx(ordered[4], rel=1e-12)
    assert row["lift_upper"] == pytest.approx(ordered[-5], rel=1e-12)
    far = min(int(np.sum(lift <= 0)), int(np.sum(lift >= 0)))
    assert row["p_value"] == pytest.approx(2 * (1 + far) / 201, rel=1e-12)


def test_quantile_bootstrap_equals_weighted_quantiles_on_the_grid(
    spark: SparkSession, world: World, units: DataFrame
) -> None:
    read, assignments = _spark_inputs(spark, world)
    events = quantile_events(world.catalog, world.exp, read, assignments, END)
    assert events is not None
    counts = {("watch_p90", v): n for v, n in (("control", 300), ("treatment", 300))}
    arms = quantile_arms(events, {"watch_p90": 0.9}, counts, 100, seed=5)
    rows = events.collect()
    for variant in ("control", "treatment"):
        mine = [r for r in rows if r["variant"] == variant]
        values = np.array([r["value"] for r in mine])
        keys = np.array([r["unit_key"] for r in mine])
        weights = numpy_weights(5, keys, 100)
        arm = arms[("watch_p90", variant)]
        assert arm.point == pytest.approx(float(np.percentile(values, 90)), rel=1e-12)
        for b in range(100):
            exact = weighted_lower_quantile(values, weights[:, b].astype(float), 0.9)
            above = arm.grid[arm.grid >= exact]
            expected = above[0] if len(above) else arm.grid[-1]
            assert arm.replicates[b] == expected, b
        assert arm.clipped == 0
    again = quantile_arms(events.repartition(7), {"watch_p90": 0.9}, counts, 100, seed=5)
    for arm_key, arm in arms.items():
        np.testing.assert_array_equal(again[arm_key].replicates, arm.replicates)


def test_the_job_writes_three_tables_and_reruns_replace(spark: SparkSession, world: World) -> None:
    sink = DeltaSink.for_session(spark, "delta-rs")
    read, assignments = _spark_inputs(spark, world)
    exp = replace(world.exp, replicates=50)
    first = run_experiment(
        spark, sink, world.catalog, exp, read, assignments, world.warehouse, END, run_id="r1"
    )
    again = run_experiment(
        spark, sink, world.catalog, exp, read, assignments, world.warehouse, END, run_id="r2"
    )
    tables = {
        name: sink.read(f"{world.warehouse}/{name}")
        for name in (EXPERIMENT_UNITS, EXPERIMENT_RESULTS, EXPERIMENT_REPLICATES)
    }
    assert tables[EXPERIMENT_UNITS].count() == first.unit_rows == again.unit_rows
    results = tables[EXPERIMENT_RESULTS]
    assert results.count() == len(again.analysis.results)
    assert {r[0] for r in results.select("run_id").distinct().collect()} == {"r2"}
    methods = {(r["metric"], r["method"]) for r in results.collect()}
    assert ("watch_p90", "bootstrap") in methods and ("watch_p90", "delta") not in methods
    assert ("vvr", "cuped") in methods
    assert tables[EXPERIMENT_REPLICATES].count() == 5 * 2 * 50
    row = results.where((F.col("metric") == "vvr") & (F.col("method") == "delta")).first()
    assert row is not None and row["verdict"] in ("improvement", "no significant change")
    assert row["window_end"] == END and row["definition_version"]


def test_units_command_on_a_csv(
    spark: SparkSession, world: World, analysis: Analysis, tmp_path: Path
) -> None:
    lines = ["unit,variant,metric,numerator,denominator,covariate,covariate_denominator"]
    for (metric, unit), (variant, y, x, cy, cx) in sorted(expected_units(world).items()):
        if metric == "vvr":
            lines.append(f"{unit},{variant},{metric},{y!r},{x!r},{cy!r},{cx!r}")
    csv = tmp_path / "my_units.csv"
    csv.write_text("\n".join(lines) + "\n")
    warehouse = str(tmp_path / "wh")
    code = main(
        [
            "experiment",
            "--env",
            "test",
            "--warehouse",
            warehouse,
            "--units",
            str(csv),
            "--control",
            "control",
            "--replicates",
            "50",
        ]
    )
    assert code == 0
    sink = DeltaSink.for_session(spark, "delta-rs")
    rows = sink.read(f"{warehouse}/{EXPERIMENT_RESULTS}").collect()
    delta = next(r for r in rows if r["method"] == "delta")
    assert delta["experiment_id"] == "my_units"
    expected = _row(analysis, "vvr", "delta")
    for column in ("control_value", "lift", "lift_lower", "lift_upper", "p_value"):
        assert delta[column] == pytest.approx(expected[column], rel=1e-12)


def test_units_command_refuses_repeated_units_and_uses_the_split(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["unit,variant,metric,numerator"] + [f"{u},control,m,{u % 3}" for u in range(900)]
    rows += [f"{u},treatment,m,{u % 4}" for u in range(900, 1000)]
    csv = tmp_path / "split.csv"
    csv.write_text("\n".join(rows) + "\n")
    warehouse = str(tmp_path / "wh")
    args = ["experiment", "--env", "test", "--warehouse", warehouse, "--units", str(csv),
            "--control", "control", "--replicates", "50"]  # fmt: skip
    assert main([*args, "--split", "control=0.9,treatment=0.1"]) == 0
    assert "SAMPLE RATIO MISMATCH" not in capsys.readouterr().out
    assert main(args) == 0  # an even split is assumed without --split
    assert "SAMPLE RATIO MISMATCH" in capsys.readouterr().out
    csv.write_text("\n".join([*rows, "5,control,m,1"]) + "\n")
    assert main(args) != 0
    assert "(unit, metric) must be unique; repeated: (5, m)" in capsys.readouterr().err


def test_units_command_names_a_missing_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("unit,variant,metrc,numerator\n1,control,m,1\n")
    code = main(
        [
            "experiment",
            "--env",
            "test",
            "--warehouse",
            str(tmp_path / "wh"),
            "--units",
            str(csv),
            "--control",
            "control",
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert f"{csv}: column 'metric' is missing" in err and "did you mean 'metrc'?" in err


def test_analysis_is_identical_for_1_3_and_16_partitions(
    spark: SparkSession, world: World, units: DataFrame
) -> None:
    """Every number of every method, and every replicate, for any partitioning."""
    read, assignments = _spark_inputs(spark, world)
    events = quantile_events(world.catalog, world.exp, read, assignments, END)
    assert events is not None
    spec = replace(spec_for(world.catalog, world.exp), replicates=60)

    def run(partitions: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        result = analyse(units.repartition(partitions), spec, events.repartition(partitions))
        return result.results, result.replicates

    one = run(1)
    assert run(3) == one
    assert run(16) == one


def three_arm_units(spark: SparkSession, arms: tuple[str, ...]) -> DataFrame:
    """A mean metric with a pre-period covariate; the third arm's outcome has another slope
    on the covariate (so a pooled slope moves)."""
    rng = np.random.default_rng(31)
    slopes = {"control": 0.8, "treatment": 0.8, "third": -0.4}
    rows = []
    for variant in arms:
        for unit in range(300):
            pre = float(rng.normal(10, 3))
            post = 2 + slopes[variant] * pre + float(rng.normal(0, 1))
            rows.append(("e", "m", variant, f"{variant}{unit}", round(post, 6), 1.0, pre, 1.0))
    frame = spark.createDataFrame(
        rows,
        "experiment_id string, metric string, variant string, unit_id string, y double, "
        "x double, cy double, cx double",
    )
    return frame.select("*", F.xxhash64("unit_id").alias("unit_key"))


def test_a_third_arm_leaves_control_vs_treatment_alone(spark: SparkSession) -> None:
    """CUPED per comparison (the default): adding an arm changes no number of control vs
    treatment but the adjusted p-value and level (one more comparison to correct for); the
    pooled variant's estimate moves."""
    unadjusted = ("control_value", "treatment_value", "lift", "lift_lower", "lift_upper",
                  "relative_lift", "relative_lower", "relative_upper", "p_value", "df")  # fmt: skip

    def cuped_row(arms: tuple[str, ...], mode: CupedMode) -> dict[str, Any]:
        spec = AnalysisSpec("e", "control", (MetricSpec("m"),), replicates=50, cuped=mode)
        rows = analyse(three_arm_units(spark, arms), spec).results
        return next(r for r in rows if r["method"] == "cuped" and r["treatment"] == "treatment")

    two = cuped_row(("control", "treatment"), "per_comparison")
    three = cuped_row(("control", "treatment", "third"), "per_comparison")
    assert {k: two[k] for k in unadjusted} == {k: three[k] for k in unadjusted}
    assert three["adjusted_level"] != two["adjusted_level"]
    pooled = cuped_row(("control", "treatment", "third"), "pooled")
    width = two["lift_upper"] - two["lift_lower"]
    assert abs(pooled["lift"] - two["lift"]) > 0.01 * width


def test_a_results_table_written_before_the_adjusted_columns_gains_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The new columns are added to an existing table (older rows read them as null)."""
    sink = DeltaSink.for_session(spark, "delta-rs")
    warehouse = str(tmp_path)
    table = f"{warehouse}/{EXPERIMENT_RESULTS}"
    new = ("df", "lift_lower_adjusted", "lift_upper_adjusted", "relative_lower_adjusted",
           "relative_upper_adjusted", "adjusted_level", "cuped")  # fmt: skip
    old_schema = ", ".join(f for f in RESULT_SCHEMA.split(", ") if f.split()[0] not in new)
    old_row = spark.createDataFrame([], old_schema).unionByName(
        spark.createDataFrame([("old_exp", "m")], "experiment_id string, metric string"),
        allowMissingColumns=True,
    )
    sink.write(old_row, table, mode="append", partition_by=("experiment_id",))
    units = three_arm_units(spark, ("control", "treatment"))
    analysis = analyse(units, AnalysisSpec("e", "control", (MetricSpec("m"),), replicates=50))
    write_results(spark, sink, warehouse, "e", analysis, "r1", {"cuped": "per_comparison"})
    rows = {r["experiment_id"]: r for r in sink.read(table).collect()}
    assert rows["old_exp"]["adjusted_level"] is None and rows["old_exp"]["metric"] == "m"
    assert rows["e"]["adjusted_level"] == pytest.approx(0.95)  # one comparison per method
    assert rows["e"]["cuped"] == "per_comparison" and rows["e"]["df"] is not None

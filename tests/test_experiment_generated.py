"""The shipped experiment definitions on generated data (scale 1, 28 days): the planted
effects lie inside every method's interval, the ranking experiment's effect is significant,
and the planted sample-ratio mismatch is flagged while the clean experiment is not."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.delta import DeltaSink
from jobs.experiments.job import ExperimentSummary, read_assignments, run_experiment
from jobs.experiments.loader import load_experiments
from jobs.metrics.loader import load_catalog
from jobs.metrics.sources import table_reader

DEFS = Path(__file__).resolve().parent.parent / "metric_defs"


@pytest.fixture(scope="module")
def runs(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, ExperimentSummary], dict[str, object]]:
    from jobs.generate.job import generate, raw_dir
    from jobs.generate.params import GeneratorParams

    warehouse = str(tmp_path_factory.mktemp("experiment-warehouse"))
    sink = DeltaSink.for_session(spark, "delta-rs")
    params = GeneratorParams(scale=1.0, days=28)
    generate(spark, sink, params, raw_dir(warehouse))
    catalog = load_catalog(DEFS)
    read = table_reader(spark, sink, warehouse)
    end = params.start_date + dt.timedelta(days=params.days - 1)
    out = {}
    for exp in load_experiments(DEFS, catalog).values():
        assignments = read_assignments(spark, sink, warehouse, exp.assignments)
        quick = replace(exp, replicates=200)
        out[exp.id] = run_experiment(spark, sink, catalog, quick, read, assignments, warehouse, end)
    truth = json.loads(Path(os.path.join(raw_dir(warehouse), "_ground_truth.json")).read_text())
    return out, truth


def test_planted_effects_are_inside_every_interval(
    runs: tuple[dict[str, ExperimentSummary], dict[str, object]],
) -> None:
    summaries, truth = runs
    experiments = truth["experiments"]
    assert isinstance(experiments, list)
    for planted in experiments:
        summary = summaries[planted["experiment_id"]]
        for effect in planted["effects"]:
            rows = [r for r in summary.analysis.results if r["metric"] == effect["metric"]]
            assert {r["method"] for r in rows} == {"delta", "cuped", "bootstrap"}
            for r in rows:
                assert r["relative_lower"] <= effect["relative_effect"] <= r["relative_upper"], r
    ranking = summaries["exp_ranking_safety_v2"].analysis.results
    vvr = [r for r in ranking if r["metric"] == "violative_view_rate" and r["primary"]]
    assert vvr[0]["significant"] and vvr[0]["verdict"] == "improvement"


def test_the_planted_sample_ratio_mismatch_is_flagged(
    runs: tuple[dict[str, ExperimentSummary], dict[str, object]],
) -> None:
    summaries, truth = runs
    experiments = truth["experiments"]
    assert isinstance(experiments, list)
    for planted in experiments:
        summary = summaries[planted["experiment_id"]]
        assert summary.analysis.srm.mismatch == planted["srm"], summary.render()
        assert ("SAMPLE RATIO MISMATCH" in summary.render()) == planted["srm"], summary.render()
    assert {p["srm"] for p in experiments} == {True, False}  # both branches are exercised

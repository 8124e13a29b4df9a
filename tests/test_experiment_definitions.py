"""Experiment definitions: the shipped ones load; every kind of mistake gets a located error
(file, line, key), all at once, with a did-you-mean where a name is close."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from jobs.core.located_yaml import InputError, parse_located
from jobs.experiments.loader import experiments_from_documents, load_experiments
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import load_catalog

DEFS = Path(__file__).resolve().parent.parent / "metric_defs"

SOURCES = """\
assignment_sources:
  exposures:
    table: raw/experiment_assignments
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFS)


def with_distinct_ratio(catalog: Catalog) -> Catalog:
    """The catalog plus a ratio of distinct counts (valid in the catalog, not in experiments)."""
    from dataclasses import replace

    from jobs.metrics.definitions import Part

    base = catalog.metrics["violative_view_rate"]
    part = Part("views", "distinct_count", "viewer_id", None)
    metric = replace(base, name="distinct_share", numerator=part, denominator=part)
    return replace(catalog, metrics={**catalog.metrics, "distinct_share": metric})


def problems(catalog: Catalog, text: str) -> list[str]:
    doc = parse_located(textwrap.dedent(text), "exp.yaml")
    with pytest.raises(InputError) as exc:
        experiments_from_documents([doc], catalog)
    return [str(p) for p in exc.value.problems]


def test_shipped_experiments_load(catalog: Catalog) -> None:
    experiments = load_experiments(DEFS, catalog)
    assert set(experiments) == {"exp_ranking_safety_v2", "exp_report_button_v3"}
    ranking = experiments["exp_ranking_safety_v2"]
    assert ranking.control == "control" and ranking.treatments == ("treatment",)
    assert dict(ranking.variants) == {"control": 0.5, "treatment": 0.5}
    assert ranking.start == dt.date(2026, 9, 1) and ranking.end is None
    assert "violative_view_rate" in ranking.metrics
    assert ranking.covariate_days == 7 and ranking.correction == "bh"
    assert ranking.assignments.unit_column == "unit_id"
    assert ranking.version() != experiments["exp_report_button_v3"].version()


def doc_text_with(extra: str = "") -> str:
    """A minimal experiment, with one more key line."""
    return SOURCES + textwrap.dedent(f"""\
        experiments:
          - id: exp_a
            assignments: exposures
            variants: [control, b, c]
            control: control
            start: 2026-09-01
            metrics: [views]
            {extra}
        """)


def test_a_minimal_experiment_gets_defaults(catalog: Catalog) -> None:
    doc = parse_located(doc_text_with(), "exp.yaml")
    exp = experiments_from_documents([doc], catalog)["exp_a"]
    assert exp.treatments == ("b", "c")
    assert [s for _, s in exp.variants] == pytest.approx([1 / 3] * 3)
    assert (exp.alpha, exp.replicates, exp.covariate_days, exp.active) == (0.05, 500, 0, True)
    assert exp.cuped == "per_comparison"
    pooled = parse_located(doc_text_with("cuped: pooled"), "exp.yaml")
    assert experiments_from_documents([pooled], catalog)["exp_a"].cuped == "pooled"


def test_every_mistake_is_located_and_reported_at_once(catalog: Catalog) -> None:
    found = problems(
        with_distinct_ratio(catalog),
        SOURCES
        + """\
experiments:
  - id: exp_bad
    assignments: exposure
    variants: {control: 0.5, treatment: 0.6}
    control: contrl
    start: 2026-13-01
    metrics: [violative_view_rat, active_viewers, distinct_share]
    alpah: 0.05
    correction: bh2
    replicates: 10
    cuped: per_comparisn
  - id: exp_missing
    assignments: exposures
""",
    )
    text = "\n".join(found)
    expected = [
        ("exp.yaml:6:", "E021 unknown assignment source 'exposure'", "did you mean 'exposures'?"),
        ("exp.yaml:7:", "variant shares must sum to 1, got 1.1", ""),
        ("exp.yaml:8:", "control 'contrl' is not one of the variants", "did you mean 'control'?"),
        ("exp.yaml:9:", "start must be a date YYYY-MM-DD", ""),
        (
            "exp.yaml:10:",
            "unknown metric 'violative_view_rat'",
            "did you mean 'violative_view_rate'?",
        ),
        ("exp.yaml:10:", "'active_viewers' is a distinct_count metric", ""),
        ("exp.yaml:10:", "'distinct_share' has a distinct-count part", ""),
        ("exp.yaml:11:", "unknown key 'alpah'", "did you mean 'alpha'?"),
        ("exp.yaml:12:", "correction must be one of bh, bonferroni, none", ""),
        ("exp.yaml:13:", "replicates must be an integer >= 50", ""),
        (
            "exp.yaml:14:",
            "cuped must be one of per_comparison, pooled",
            "did you mean 'per_comparison'?",
        ),
        ("exp.yaml:15:", "experiment needs 'variants'", ""),
    ]
    for where, message, hint in expected:
        assert any(p.startswith(where) and message in p and hint in p for p in found), (
            f"no problem {where} {message} {hint} in:\n{text}"
        )


def test_duplicate_ids_and_bad_assignment_sources(catalog: Catalog) -> None:
    found = problems(
        catalog,
        """\
assignment_sources:
  log_a: {table: a, path: b}
  log_b: {table: t, unit_colum: u}
experiments:
  - {id: e1, assignments: log_b, variants: [a, b], control: a, start: 2026-09-01, metrics: [views]}
  - {id: e1, assignments: log_b, variants: [a, b], control: a, start: 2026-09-01, metrics: [views]}
""",
    )
    text = "\n".join(found)
    assert "exp.yaml:2:" in text and "needs exactly one of table, path, catalog_table" in text
    assert "unknown key 'unit_colum'" in text and "did you mean 'unit_column'?" in text
    assert "exp.yaml:6:" in text and "experiment 'e1' is already defined at exp.yaml:5" in text


def test_the_metric_catalog_accepts_experiment_sections(tmp_path: Path) -> None:
    for path in DEFS.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    catalog = load_catalog(tmp_path)  # experiments.yaml is there: no unknown-key error
    assert "violative_view_rate" in catalog.metrics

"""Verdicts and published intervals agree: every result row is significant exactly when its
interval at the adjusted level excludes 0 (Bonferroni: 1 - alpha/m; Benjamini-Hochberg:
Benjamini-Yekutieli's 1 - R alpha/m; none: 1 - alpha), for t-based and bootstrap rows,
at ties and edges included. Pure Python: the rows come from `analysis._adjust_and_judge`."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from jobs.experiments.analysis import (
    Analysis,
    AnalysisSpec,
    Candidate,
    MetricSpec,
    _adjust_and_judge,
)
from jobs.experiments.bootstrap_stats import bootstrap_comparison, bootstrap_intervals
from jobs.experiments.decisions import Correction, adjust_p_values, adjusted_level
from jobs.experiments.stats import ArmEstimate, SampleRatio, t_comparison, t_intervals

METRIC = MetricSpec("m", "up")


def t_candidate(name: str, c: ArmEstimate, t: ArmEstimate, alpha: float) -> Candidate:
    metric = MetricSpec(name, "up")
    return Candidate(
        metric,
        "treatment",
        "delta",
        t_comparison(c, t, alpha),
        (10, 10),
        partial(t_intervals, c, t),
    )


def boot_candidate(name: str, lifts: np.ndarray, alpha: float) -> Candidate:
    control = np.full(len(lifts), 2.0)
    treatment = control + lifts
    metric = MetricSpec(name, "up")
    comparison = bootstrap_comparison(control, treatment, alpha, 2.0, 2.0 + float(np.mean(lifts)))
    at_level = partial(bootstrap_intervals, control, treatment)
    return Candidate(metric, "treatment", "bootstrap", comparison, (10, 10), at_level)


def judged(
    candidates: list[Candidate], alpha: float, correction: Correction
) -> list[dict[str, Any]]:
    spec = AnalysisSpec("e", "control", (METRIC,), alpha=alpha, correction=correction)
    analysis = Analysis(SampleRatio((1, 1), (0.5, 0.5), 1.0, False), {"control": 1})
    _adjust_and_judge(spec, candidates, analysis)
    return analysis.results


def excludes_zero(lower: float | None, upper: float | None) -> bool:
    """None is an unbounded end."""
    return (lower is not None and lower > 0) or (upper is not None and upper < 0)


def check_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        adjusted = excludes_zero(row["lift_lower_adjusted"], row["lift_upper_adjusted"])
        assert row["significant"] == adjusted, row
        relative = (row["relative_lower_adjusted"], row["relative_upper_adjusted"])
        if None not in relative:
            assert row["significant"] == excludes_zero(*relative), row


arm = st.builds(
    ArmEstimate,
    value=st.floats(0.5, 2.0),
    variance=st.floats(1e-6, 0.05),
    df=st.sampled_from([1.0, 4.0, 29.0, 499.0]),
)


@settings(max_examples=150, deadline=None)
@given(
    arms=st.lists(st.tuples(arm, arm), min_size=1, max_size=12),
    boots=st.lists(
        st.tuples(st.sampled_from([39, 99, 200, 501]), st.floats(-0.3, 0.3), st.booleans()),
        min_size=0,
        max_size=8,
    ),
    alpha=st.sampled_from([0.05, 0.1, 0.01]),
    correction=st.sampled_from(["bh", "bonferroni", "none"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_significant_exactly_when_the_adjusted_interval_excludes_zero(
    arms: list[tuple[ArmEstimate, ArmEstimate]],
    boots: list[tuple[int, float, bool]],
    alpha: float,
    correction: Correction,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    candidates = [t_candidate(f"t{i}", c, t, alpha) for i, (c, t) in enumerate(arms)]
    for i, (b, shift, rounded) in enumerate(boots):
        lifts = rng.normal(shift, 0.1, b)
        if rounded:
            lifts = np.round(lifts, 1)  # ties, some at exactly 0
        candidates.append(boot_candidate(f"b{i}", lifts, alpha))
    rows = judged(candidates, alpha, correction)
    check_rows(rows)
    for method in ("delta", "bootstrap"):
        family = [r for r in rows if r["method"] == method]
        if family:
            levels = {r["adjusted_level"] for r in family}
            assert len(levels) == 1  # one level per family


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_bootstrap_rows_at_the_exact_boundary(correction: Correction) -> None:
    """Replicate counts that put p exactly at, just below and just above each family's
    threshold: 2 (1 + c) / (B + 1) with B = 199 gives every multiple of 0.01."""
    b, alpha = 199, 0.05
    candidates = []
    for c in range(0, 12):
        lifts = np.array([-1.0] * c + [1.0] * (b - c))
        candidates.append(boot_candidate(f"c{c}", lifts, alpha))
    rows = judged(candidates, alpha, correction)
    check_rows(rows)
    if correction == "none":  # p = 0.05 exactly (c = 4) is not significant
        assert [r["significant"] for r in rows[3:6]] == [True, False, False]


def test_a_family_whose_bh_threshold_is_a_floating_point_tie() -> None:
    """B = 189, alpha = 0.2, 19 comparisons: the second smallest p-value, 2 (1 + 1) / 190,
    equals 2 alpha / 19 exactly, but BH's p m / rank rounds to 0.19999999999999998 < alpha
    (significant) while the level R alpha / m equals p (the interval alone would include
    0): the interval is made to agree with the verdict."""
    counts = [0, 1, 4, 6, 14, 17, 20, 27, 28, 29, 37, 39, 40, 40, 41, 42, 43, 46, 58]
    candidates = [
        boot_candidate(f"c{i}", np.array([-1.0] * c + [1.0] * (189 - c)), 0.2)
        for i, c in enumerate(counts)
    ]
    rows = judged(candidates, 0.2, "bh")
    assert rows[1]["significant"] and rows[1]["p_value"] == 4 / 190
    check_rows(rows)


def test_t_rows_with_a_lift_exactly_at_the_critical_value() -> None:
    """A lift of exactly q se (p = alpha up to rounding) and its neighbours: the interval
    agrees with the verdict whichever way rounding goes."""
    alpha, df = 0.05, 29.0
    control = ArmEstimate(1.0, 0.01, df)
    q = float(stats.t.isf(alpha / 2, 58.0))
    se = np.sqrt(0.02)
    candidates = [
        t_candidate(f"k{k}", control, ArmEstimate(1.0 + float(q * se + k * 1e-16), 0.01, df), alpha)
        for k in range(-3, 4)
    ]
    check_rows(judged(candidates, alpha, "none"))


def test_the_adjusted_levels_are_bonferroni_and_benjamini_yekutieli() -> None:
    """Bonferroni: alpha / m. BH: R alpha / m with R scipy's number of BH rejections, and
    then the BH-significant comparisons are exactly those with p below it."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        m = int(rng.integers(1, 30))
        p = np.concatenate([rng.uniform(0, 0.02, m // 3), rng.uniform(0, 1, m - m // 3)])
        bh = adjust_p_values(list(p), "bh")
        rejected = int(np.sum(stats.false_discovery_control(p, method="bh") < 0.05))
        level = adjusted_level(bh, 0.05, "bh")
        assert level == pytest.approx(max(rejected, 1) * 0.05 / m)
        assert [q < 0.05 for q in bh] == [float(v) < level for v in p]
        assert adjusted_level(adjust_p_values(list(p), "bonferroni"), 0.05, "bonferroni") == (
            pytest.approx(0.05 / m)
        )
    assert adjusted_level([0.2, 0.3], 0.05, "none") == 0.05


def test_rows_carry_unadjusted_and_adjusted_intervals() -> None:
    """Ten comparisons, Bonferroni: the adjusted interval is the 99.5% one, wider than the
    95% one, which is kept."""
    control = ArmEstimate(1.0, 0.0001, 999.0)
    candidates = [
        t_candidate(f"m{i}", control, ArmEstimate(1.0 + 0.01 * i, 0.0001, 999.0), 0.05)
        for i in range(10)
    ]
    rows = judged(candidates, 0.05, "bonferroni")
    for row in rows:
        assert row["adjusted_level"] == pytest.approx(0.995)
        assert row["lift_lower_adjusted"] < row["lift_lower"] < row["lift"]
        q95, q995 = stats.t.isf(0.025, row["df"]), stats.t.isf(0.0025, row["df"])
        ratio = (row["lift_upper_adjusted"] - row["lift"]) / (row["lift_upper"] - row["lift"])
        assert ratio == pytest.approx(q995 / q95, rel=1e-9)
    # Unadjusted 95% intervals exclude 0 for some rows that Bonferroni does not call.
    assert any(
        excludes_zero(r["lift_lower"], r["lift_upper"]) and not r["significant"] for r in rows
    )

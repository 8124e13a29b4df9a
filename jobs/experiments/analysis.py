"""From an experiment's unit table to its result rows: every method, every comparison.

Spark computes the sufficient statistics (per-arm moments, per-replicate weighted sums,
quantile replicates); only those small aggregates reach the driver, where `stats` turns
them into estimates, intervals and p-values. Rows come out per (metric, treatment, method):
`delta` (ratio of means, delta method), `cuped` (regression adjustment on the pre-period
covariate, when the unit table has one) and `bootstrap` (distributed Poisson bootstrap,
percentile intervals; the only method for quantile metrics). p-values are adjusted across
the experiment's metrics and treatments per method, and the verdict reads the metric's
good direction. The sample-ratio test runs once per experiment on units per variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.experiments.aggregates import (
    collect_moments,
    collect_replicates,
    moment_frame,
    replicate_frame,
)
from jobs.experiments.quantiles import QuantileArm, quantile_arms
from jobs.experiments.stats import (
    Comparison,
    Correction,
    Moments,
    SampleRatio,
    adjust_p_values,
    bootstrap_comparison,
    cuped_estimate,
    cuped_theta,
    delta_estimate,
    normal_comparison,
    pooled_covariate_ratio,
    replicate_ratios,
    sample_ratio_test,
    verdict,
)


class AnalysisError(RuntimeError):
    """The unit table cannot be analysed as asked (e.g. the control has no units)."""


@dataclass(frozen=True)
class MetricSpec:
    """What the analysis needs to know of a metric beyond its unit rows."""

    name: str
    good_direction: str = "none"
    per: float = 1.0  # a rate's scale (per 1k views: 1000)
    quantile: float | None = None  # a quantile metric's level


@dataclass(frozen=True)
class AnalysisSpec:
    experiment_id: str
    control: str
    metrics: tuple[MetricSpec, ...]
    expected_shares: dict[str, float] | None = None  # None: an even split
    alpha: float = 0.05
    replicates: int = 500
    seed: int = 0
    correction: Correction = "bh"
    srm_threshold: float = 0.001


@dataclass
class Analysis:
    """Result rows (one per metric, treatment and method), replicate rows and the SRM test."""

    srm: SampleRatio
    units: dict[str, int]
    results: list[dict[str, Any]] = field(default_factory=list)
    replicates: list[dict[str, Any]] = field(default_factory=list)


def units_per_variant(units: DataFrame) -> dict[str, int]:
    rows = units.groupBy("variant").agg(F.count_distinct("unit_key").alias("n")).collect()
    return {str(r["variant"]): int(r["n"]) for r in rows}


def srm_test(spec: AnalysisSpec, counts: dict[str, int]) -> SampleRatio:
    names = sorted(set(counts) | set(spec.expected_shares or {}))
    shares = spec.expected_shares or {}
    expected = [shares.get(v, 0.0) if shares else 1.0 for v in names]
    return sample_ratio_test([counts.get(v, 0) for v in names], expected, spec.srm_threshold)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def analyse(units: DataFrame, spec: AnalysisSpec, events: DataFrame | None = None) -> Analysis:
    """Every comparison of `spec` over the unit table `units` (and quantile `events`)."""
    counts = units_per_variant(units)
    if spec.control not in counts:
        raise AnalysisError(
            f"experiment {spec.experiment_id}: control '{spec.control}' has no units; "
            f"variants found: {', '.join(sorted(counts)) or 'none'}"
        )
    treatments = sorted(v for v in counts if v != spec.control)
    analysis = Analysis(srm_test(spec, counts), counts)
    ratio_metrics = [m for m in spec.metrics if m.quantile is None]
    quantile_metrics = [m for m in spec.metrics if m.quantile is not None]
    comparisons: list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]] = []
    if ratio_metrics:
        wanted = units.where(F.col("metric").isin([m.name for m in ratio_metrics]))
        moments = collect_moments(moment_frame(wanted))
        sums = collect_replicates(
            replicate_frame(wanted, spec.replicates, spec.seed), spec.replicates
        )
        for metric in ratio_metrics:
            comparisons += _ratio_comparisons(spec, metric, treatments, moments, sums, analysis)
    if quantile_metrics:
        if events is None:
            raise AnalysisError(f"experiment {spec.experiment_id}: quantile metrics need events")
        arm_units = {(m.name, v): n for m in quantile_metrics for v, n in counts.items()}
        levels = {m.name: float(m.quantile or 0.5) for m in quantile_metrics}
        arms = quantile_arms(events, levels, arm_units, spec.replicates, spec.seed)
        for metric in quantile_metrics:
            comparisons += _quantile_comparisons(spec, metric, treatments, arms, counts, analysis)
    _adjust_and_judge(spec, comparisons, analysis)
    return analysis


def _scaled(c: Comparison, per: float) -> Comparison:
    if per == 1.0:
        return c
    return Comparison(
        c.control * per,
        c.treatment * per,
        c.lift * per,
        c.lift_lower * per,
        c.lift_upper * per,
        c.relative_lift,
        c.relative_lower,
        c.relative_upper,
        c.p_value,
    )


def _ratio_comparisons(
    spec: AnalysisSpec,
    metric: MetricSpec,
    treatments: Sequence[str],
    moments: dict[tuple[str, str], Moments],
    sums: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    analysis: Analysis,
) -> list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]]:
    out: list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]] = []
    control = moments.get((metric.name, spec.control))
    if control is None:
        return out
    rep = {
        v: replicate_ratios(*sums[(metric.name, v)])
        for v in (spec.control, *treatments)
        if (metric.name, v) in sums
    }
    for variant, values in rep.items():
        analysis.replicates += [
            {
                "metric": metric.name,
                "variant": variant,
                "replicate": b,
                "value": _finite(v * metric.per),
            }
            for b, v in enumerate(values.tolist())
        ]
    arms = [
        control,
        *[moments[(metric.name, t)] for t in treatments if (metric.name, t) in moments],
    ]
    has_covariate = any(float(a.sums[3]) != 0.0 for a in arms)
    theta = cuped_theta(arms) if has_covariate else 0.0
    pooled = pooled_covariate_ratio(arms)
    for t in treatments:
        treated = moments.get((metric.name, t))
        if treated is None or t not in rep:
            continue  # the metric has no units in this arm
        n = {"control": control.n, "treatment": treated.n}
        delta = normal_comparison(delta_estimate(control), delta_estimate(treated), spec.alpha)
        out.append((metric, t, "delta", _scaled(delta, metric.per), n))
        if has_covariate:
            cuped = normal_comparison(
                cuped_estimate(control, theta, pooled),
                cuped_estimate(treated, theta, pooled),
                spec.alpha,
            )
            out.append((metric, t, "cuped", _scaled(cuped, metric.per), n))
        boot = bootstrap_comparison(
            rep[spec.control], rep[t], spec.alpha, control.ratio, treated.ratio
        )
        out.append((metric, t, "bootstrap", _scaled(boot, metric.per), n))
    return out


def _quantile_comparisons(
    spec: AnalysisSpec,
    metric: MetricSpec,
    treatments: Sequence[str],
    arms: dict[tuple[str, str], QuantileArm],
    counts: dict[str, int],
    analysis: Analysis,
) -> list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]]:
    out: list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]] = []
    control = arms.get((metric.name, spec.control))
    if control is None:
        return out
    for variant in (spec.control, *treatments):
        arm = arms.get((metric.name, variant))
        if arm is not None:
            analysis.replicates += [
                {"metric": metric.name, "variant": variant, "replicate": b, "value": _finite(v)}
                for b, v in enumerate(arm.replicates.tolist())
            ]
    for t in treatments:
        treated = arms.get((metric.name, t))
        if treated is None:
            continue
        boot = bootstrap_comparison(
            control.replicates, treated.replicates, spec.alpha, control.point, treated.point
        )
        n = {"control": counts[spec.control], "treatment": counts[t]}
        out.append((metric, t, "bootstrap", boot, n))
    return out


def _adjust_and_judge(
    spec: AnalysisSpec,
    comparisons: list[tuple[MetricSpec, str, str, Comparison, dict[str, int]]],
    analysis: Analysis,
) -> None:
    """Adjusted p-values per method across metrics and treatments; verdicts; result rows."""
    by_method: dict[str, list[int]] = {}
    for i, (_, _, method, _, _) in enumerate(comparisons):
        by_method.setdefault(method, []).append(i)
    adjusted = [math.nan] * len(comparisons)
    for indices in by_method.values():
        ps = [comparisons[i][3].p_value for i in indices]
        finite = [p if math.isfinite(p) else 1.0 for p in ps]
        for i, p in zip(indices, adjust_p_values(finite, spec.correction), strict=True):
            adjusted[i] = p
    methods_of = {
        (m.name, t): {c[2] for c in comparisons if c[0] == m and c[1] == t}
        for m, t, _, _, _ in comparisons
    }
    for (metric, treatment, method, c, n), p_adj in zip(comparisons, adjusted, strict=True):
        primary = _primary_method(methods_of[(metric.name, treatment)])
        significant = p_adj < spec.alpha
        analysis.results.append(
            {
                "metric": metric.name,
                "control": spec.control,
                "treatment": treatment,
                "method": method,
                "primary": method == primary,
                "units_control": n["control"],
                "units_treatment": n["treatment"],
                "control_value": _finite(c.control),
                "treatment_value": _finite(c.treatment),
                "lift": _finite(c.lift),
                "lift_lower": _finite(c.lift_lower),
                "lift_upper": _finite(c.lift_upper),
                "relative_lift": _finite(c.relative_lift),
                "relative_lower": _finite(c.relative_lower),
                "relative_upper": _finite(c.relative_upper),
                "p_value": _finite(c.p_value),
                "p_value_adjusted": _finite(p_adj),
                "significant": bool(significant),
                "verdict": verdict(significant, c.lift, metric.good_direction),
                "good_direction": metric.good_direction,
            }
        )


def _primary_method(methods: set[str]) -> str:
    """The method a reader should look at first: CUPED when there is a covariate (tighter,
    same estimand), else the delta method; the bootstrap for quantiles."""
    for method in ("cuped", "delta", "bootstrap"):
        if method in methods:
            return method
    return "bootstrap"

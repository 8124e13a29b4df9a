"""From an experiment's unit table to its result rows: every method, every comparison.

Spark computes the sufficient statistics (per-arm moments, per-replicate weighted sums,
quantile replicates); only those small aggregates reach the driver, where `stats` turns
them into estimates, intervals and p-values. Rows come out per (metric, treatment, method):
`delta` (ratio of means, delta method, Welch t), `cuped` (regression adjustment on the
pre-period covariate, when the unit table has one; its slope estimated per comparison by
default) and `bootstrap` (distributed Poisson bootstrap, percentile intervals; the only
method for quantile metrics). p-values are adjusted across the experiment's metrics and
treatments per method; the verdict uses the adjusted p-value and reads the metric's good
direction, and every row also carries intervals at the adjusted level, which exclude 0
exactly when the verdict is significant. The sample-ratio test runs once per experiment on
units per variant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
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
from jobs.experiments.bootstrap_stats import (
    bootstrap_comparison,
    bootstrap_intervals,
    replicate_ratios,
)
from jobs.experiments.decisions import (
    Correction,
    adjust_p_values,
    adjusted_level,
    agreeing,
    verdict,
)
from jobs.experiments.quantiles import QuantileArm, quantile_arms
from jobs.experiments.stats import (
    CUPED_DF,
    Comparison,
    CupedMode,
    Intervals,
    Moments,
    SampleRatio,
    cuped_arms,
    delta_estimate,
    sample_ratio_test,
    t_comparison,
    t_intervals,
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
    cuped: CupedMode = "per_comparison"  # theta from the two arms compared, or every arm


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
    if not treatments:
        raise AnalysisError(
            f"experiment {spec.experiment_id}: no treatment variant has units (only the "
            f"control '{spec.control}'); variants found: {', '.join(sorted(counts))}"
        )
    analysis = Analysis(srm_test(spec, counts), counts)
    ratio_metrics = [m for m in spec.metrics if m.quantile is None]
    quantile_metrics = [m for m in spec.metrics if m.quantile is not None]
    comparisons: list[Candidate] = []
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


@dataclass(frozen=True)
class Candidate:
    """One comparison before multiplicity adjustment: its unadjusted result, and how to
    compute its intervals at another level (for the adjusted intervals)."""

    metric: MetricSpec
    treatment: str
    method: str
    comparison: Comparison
    units: tuple[int, int]  # control, treatment
    at_level: Callable[[float], Intervals]
    scale: float = 1.0  # a rate's `per`: applied to values and absolute lifts


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
        c.df,
    )


def _ratio_comparisons(
    spec: AnalysisSpec,
    metric: MetricSpec,
    treatments: Sequence[str],
    moments: dict[tuple[str, str], Moments],
    sums: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    analysis: Analysis,
) -> list[Candidate]:
    out: list[Candidate] = []
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
    for t in treatments:
        treated = moments.get((metric.name, t))
        if treated is None or t not in rep:
            continue  # the metric has no units in this arm
        n = (control.n, treated.n)
        c, tr = delta_estimate(control), delta_estimate(treated)
        out.append(
            Candidate(
                metric, t, "delta", t_comparison(c, tr, spec.alpha), n,
                partial(t_intervals, c, tr), metric.per,
            )
        )  # fmt: skip
        if has_covariate:
            cc, ct = cuped_arms(control, treated, arms, spec.cuped)
            out.append(
                Candidate(
                    metric, t, "cuped", t_comparison(cc, ct, spec.alpha, CUPED_DF), n,
                    partial(t_intervals, cc, ct, df_reduction=CUPED_DF), metric.per,
                )
            )  # fmt: skip
        boot = bootstrap_comparison(
            rep[spec.control], rep[t], spec.alpha, control.ratio, treated.ratio
        )
        at_level = partial(bootstrap_intervals, rep[spec.control], rep[t])
        out.append(Candidate(metric, t, "bootstrap", boot, n, at_level, metric.per))
    return out


def _quantile_comparisons(
    spec: AnalysisSpec,
    metric: MetricSpec,
    treatments: Sequence[str],
    arms: dict[tuple[str, str], QuantileArm],
    counts: dict[str, int],
    analysis: Analysis,
) -> list[Candidate]:
    out: list[Candidate] = []
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
        at_level = partial(bootstrap_intervals, control.replicates, treated.replicates)
        n = (counts[spec.control], counts[t])
        out.append(Candidate(metric, t, "bootstrap", boot, n, at_level))
    return out


def _adjust_and_judge(spec: AnalysisSpec, candidates: list[Candidate], analysis: Analysis) -> None:
    """Adjusted p-values per method across metrics and treatments; the level of intervals
    that agree with them; verdicts; result rows."""
    by_method: dict[str, list[int]] = {}
    for i, candidate in enumerate(candidates):
        by_method.setdefault(candidate.method, []).append(i)
    adjusted = [math.nan] * len(candidates)
    level = [spec.alpha] * len(candidates)
    for indices in by_method.values():
        ps = [candidates[i].comparison.p_value for i in indices]
        finite = [p if math.isfinite(p) else 1.0 for p in ps]
        family = adjust_p_values(finite, spec.correction)
        a = adjusted_level(family, spec.alpha, spec.correction)
        for i, p in zip(indices, family, strict=True):
            adjusted[i], level[i] = p, a
    methods_of: dict[tuple[str, str], set[str]] = {}
    for candidate in candidates:
        methods_of.setdefault((candidate.metric.name, candidate.treatment), set()).add(
            candidate.method
        )
    for candidate, p_adj, a in zip(candidates, adjusted, level, strict=True):
        metric, c = candidate.metric, _scaled(candidate.comparison, candidate.scale)
        primary = _primary_method(methods_of[(metric.name, candidate.treatment)])
        significant = bool(p_adj < spec.alpha)
        wide, scale = candidate.at_level(a), candidate.scale
        lift_lower, lift_upper = agreeing(
            wide.lift_lower * scale, wide.lift_upper * scale, c.lift, significant
        )
        rel_lower, rel_upper = agreeing(
            wide.relative_lower, wide.relative_upper, c.relative_lift, significant
        )
        analysis.results.append(
            {
                "metric": metric.name,
                "control": spec.control,
                "treatment": candidate.treatment,
                "method": candidate.method,
                "primary": candidate.method == primary,
                "units_control": candidate.units[0],
                "units_treatment": candidate.units[1],
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
                "significant": significant,
                "verdict": verdict(significant, c.lift, metric.good_direction),
                "good_direction": metric.good_direction,
                "df": _finite(c.df),
                "lift_lower_adjusted": _finite(lift_lower),
                "lift_upper_adjusted": _finite(lift_upper),
                "relative_lower_adjusted": _finite(rel_lower),
                "relative_upper_adjusted": _finite(rel_upper),
                "adjusted_level": 1.0 - a,
            }
        )


def _primary_method(methods: set[str]) -> str:
    """The method a reader should look at first: CUPED when there is a covariate (tighter,
    same estimand), else the delta method; the bootstrap for quantiles."""
    for method in ("cuped", "delta", "bootstrap"):
        if method in methods:
            return method
    return "bootstrap"

"""Bootstrap statistics of a comparison from its replicates: p-values floored at 1/(B+1),
percentile intervals, and replicate ratios (the replicates come from Poisson weights,
`udfs.poisson_bootstrap`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from jobs.experiments.stats import NAN, Array, Comparison, Intervals


def bootstrap_p_value(replicates: Array) -> float:
    """Two-sided p-value of the replicate lifts against 0: 2 (1 + c) / (B + 1), c the
    replicates at or beyond 0 on the far side (ties count on both), at most 1. Never 0:
    the smallest is 2 / (B + 1)."""
    b = len(replicates)
    if b == 0:
        return NAN
    far = min(int(np.sum(replicates <= 0)), int(np.sum(replicates >= 0)))
    return float(_floored_p(np.array([far]), b)[0])


def _floored_p(far: NDArray[np.int64], b: int) -> Array:
    """2 (1 + far) / (B + 1), at most 1, per far-side count (one expression for the p-value
    and for the interval's order statistic, so the two agree to the last bit)."""
    return np.minimum(1.0, 2.0 * (1.0 + far.astype(np.float64)) / float(b + 1))


def bootstrap_interval(replicates: Array, level: float) -> tuple[float, float]:
    """Percentile interval at confidence 1 - level: the k-th smallest and k-th largest
    replicates, k the number of far-side counts c for which `bootstrap_p_value` would be
    below `level` (about (B + 1) level / 2 - 1). So the interval excludes 0 exactly when
    the p-value is below `level`; (-inf, inf) when no count could be (too few replicates
    for the level)."""
    b = len(replicates)
    if b == 0:
        return NAN, NAN
    k = int(np.sum(_floored_p(np.arange(b + 1), b) < level))
    if k == 0:
        return -math.inf, math.inf
    ordered = np.sort(replicates)
    return float(ordered[k - 1]), float(ordered[b - k])


def _usable(control: Array, treatment: Array) -> tuple[Array, Array]:
    """Replicate lifts and relative lifts (finite ones) of replicates with both arms."""
    usable = np.isfinite(treatment) & np.isfinite(control)  # a replicate with x = 0 has none
    treatment, control = treatment[usable], control[usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_b = treatment / control - 1
    return treatment - control, rel_b[np.isfinite(rel_b)]


def bootstrap_comparison(
    control: Array, treatment: Array, alpha: float, control_value: float, treatment_value: float
) -> Comparison:
    """Percentile intervals from replicate estimates of each arm (same replicate count):
    the lift and relative lift per replicate, and the floored two-sided p-value."""
    lift_b, _ = _usable(control, treatment)
    rel = treatment_value / control_value - 1 if control_value else NAN
    lift = treatment_value - control_value
    if len(lift_b) == 0:
        return Comparison(control_value, treatment_value, lift, NAN, NAN, rel, NAN, NAN, NAN)
    intervals = bootstrap_intervals(control, treatment, alpha)
    return Comparison(
        control=control_value,
        treatment=treatment_value,
        lift=lift,
        lift_lower=intervals.lift_lower,
        lift_upper=intervals.lift_upper,
        relative_lift=rel,
        relative_lower=intervals.relative_lower,
        relative_upper=intervals.relative_upper,
        p_value=bootstrap_p_value(lift_b),
    )


def bootstrap_intervals(control: Array, treatment: Array, level: float) -> Intervals:
    """Percentile intervals of the replicate lift and relative lift at confidence 1 - level."""
    lift_b, rel_b = _usable(control, treatment)
    low, high = bootstrap_interval(lift_b, level)
    rel_low, rel_high = bootstrap_interval(rel_b, level) if len(rel_b) else (NAN, NAN)
    return Intervals(low, high, rel_low, rel_high)


def replicate_ratios(y_sums: Array, x_sums: Array) -> Array:
    """R per replicate from the arm's weighted sums per replicate (nan where x is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x_sums != 0, y_sums / x_sums, np.nan)

"""Experiment statistics from sufficient statistics: no rows, only sums per arm.

Every metric is a ratio of per-unit sums, R = sum(y) / sum(x): a mean or a proportion has
x = 1 per unit. An arm is summarised by its `Moments`: the number of units and the sums and
cross products of the per-unit vector v = (y, x, cy, cx), where (cy, cx) is the same metric
over the unit's pre-period (the CUPED covariate; zeros when there is none). From those:

- delta method: Var(R) = g' S g / n with g the gradient of y/x at the means and S the
  covariance matrix of v (Deng, Knoblich & Lu 2018);
- CUPED / regression adjustment: R_adj = R - theta (Rc - Rc_pooled), theta the pooled
  within-arm slope of the linearised metric on the linearised covariate (for a mean metric
  this is exactly ANCOVA with an arm indicator);
- absolute lift (independent arms) and relative lift (delta method on R_t / R_c);
- Poisson bootstrap replicates: per replicate the arms' weighted sums give R_b, and the
  lift's percentile interval and two-sided p-value;
- sample ratio mismatch (chi-square goodness of fit), Benjamini-Hochberg and Bonferroni.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Array = NDArray[np.float64]
Correction = Literal["bh", "bonferroni", "none"]
Y, X, CY, CX = range(4)


@dataclass(frozen=True)
class Moments:
    """One arm's sufficient statistics for one metric."""

    n: int
    sums: Array  # (4,): sum of y, x, cy, cx over units
    cross: Array  # (4, 4): sum of v v' over units
    #: (4, 4): sum of (v - mean)(v - mean)' over units, computed without cancellation
    #: (`cross - n mu mu'` in floats loses the variance of values like 1e8 + N(0, 1)).
    #: None: derived from `cross` in floats.
    centered: Array | None = None

    @staticmethod
    def of_units(
        y: ArrayLike,
        x: ArrayLike | None = None,
        cy: ArrayLike | None = None,
        cx: ArrayLike | None = None,
    ) -> Moments:
        """Moments of per-unit values (a reference for tests and small inputs)."""
        # Without a covariate, cy = cx = 0; with cy alone, cx = 1 (a mean's covariate).
        ys = np.asarray(y, dtype=float)
        ones, zeros = np.ones_like(ys), np.zeros_like(ys)
        v = np.column_stack(
            [
                ys,
                ones if x is None else np.asarray(x, dtype=float),
                zeros if cy is None else np.asarray(cy, dtype=float),
                (ones if cy is not None else zeros) if cx is None else np.asarray(cx, float),
            ]
        )
        deviations = v - v.mean(axis=0)
        return Moments(len(ys), v.sum(axis=0), v.T @ v, deviations.T @ deviations)

    def __add__(self, other: Moments) -> Moments:
        """The moments of two disjoint sets of units together (partial sums combine;
        centered ones by Chan et al.'s pairwise update)."""
        n = self.n + other.n
        centered = None
        if self.centered is not None and other.centered is not None and n:
            d = self.means - other.means if self.n and other.n else np.zeros(4)
            centered = self.centered + other.centered + np.outer(d, d) * self.n * other.n / n
        return Moments(n, self.sums + other.sums, self.cross + other.cross, centered)

    @property
    def means(self) -> Array:
        return self.sums / self.n

    @property
    def covariance(self) -> Array:
        """Sample covariance matrix of v (n - 1 in the denominator)."""
        if self.centered is not None:
            return self.centered / (self.n - 1)
        mu = self.means
        return (self.cross - self.n * np.outer(mu, mu)) / (self.n - 1)

    @property
    def ratio(self) -> float:
        return float(self.sums[Y] / self.sums[X])

    @property
    def covariate_ratio(self) -> float:
        return float(self.sums[CY] / self.sums[CX]) if self.sums[CX] else 0.0

    def gradients(self) -> tuple[Array, Array]:
        """Gradients of y/x and cy/cx with respect to the means of v."""
        mu = self.means
        g = np.array([1 / mu[X], -mu[Y] / mu[X] ** 2, 0.0, 0.0])
        h = np.zeros(4)
        if mu[CX]:
            h = np.array([0.0, 0.0, 1 / mu[CX], -mu[CY] / mu[CX] ** 2])
        return g, h


@dataclass(frozen=True)
class ArmEstimate:
    value: float  # R, or R_adj with a covariate
    variance: float  # of the estimate


def delta_estimate(arm: Moments) -> ArmEstimate:
    """R and its delta-method variance."""
    g, _ = arm.gradients()
    return ArmEstimate(arm.ratio, float(g @ arm.covariance @ g) / arm.n)


def cuped_theta(arms: Sequence[Moments]) -> float:
    """Pooled within-arm slope of the linearised metric on the linearised covariate."""
    num = den = 0.0
    for arm in arms:
        g, h = arm.gradients()
        s = arm.covariance * (arm.n - 1)
        num += float(g @ s @ h)
        den += float(h @ s @ h)
    return num / den if den > 0 else 0.0


def cuped_estimate(arm: Moments, theta: float, pooled_covariate: float) -> ArmEstimate:
    """R - theta (Rc - Rc_pooled) and its delta-method variance (theta and the pooled
    covariate ratio taken as fixed: both cancel in a difference of arms)."""
    g, h = arm.gradients()
    c = g - theta * h
    value = arm.ratio - theta * (arm.covariate_ratio - pooled_covariate)
    return ArmEstimate(value, float(c @ arm.covariance @ c) / arm.n)


def pooled_covariate_ratio(arms: Sequence[Moments]) -> float:
    cy = sum(float(a.sums[CY]) for a in arms)
    cx = sum(float(a.sums[CX]) for a in arms)
    return cy / cx if cx else 0.0


@dataclass(frozen=True)
class Comparison:
    """Treatment against control for one metric by one method."""

    control: float
    treatment: float
    lift: float
    lift_lower: float
    lift_upper: float
    relative_lift: float
    relative_lower: float
    relative_upper: float
    p_value: float


def normal_comparison(control: ArmEstimate, treatment: ArmEstimate, alpha: float) -> Comparison:
    """Absolute and relative lift with normal (delta-method) intervals and a z-test."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    lift = treatment.value - control.value
    se = float(np.sqrt(control.variance + treatment.variance))
    p = float(2 * stats.norm.sf(abs(lift) / se)) if se > 0 else float("nan")
    rel = treatment.value / control.value - 1 if control.value else float("nan")
    # Var(t/c) ~ Var(t)/c^2 + t^2 Var(c)/c^4 for independent arms.
    rel_se = (
        float(
            np.sqrt(
                treatment.variance / control.value**2
                + treatment.value**2 * control.variance / control.value**4
            )
        )
        if control.value
        else float("nan")
    )
    return Comparison(
        control=control.value,
        treatment=treatment.value,
        lift=lift,
        lift_lower=lift - z * se,
        lift_upper=lift + z * se,
        relative_lift=rel,
        relative_lower=rel - z * rel_se,
        relative_upper=rel + z * rel_se,
        p_value=p,
    )


def bootstrap_comparison(
    control: Array, treatment: Array, alpha: float, control_value: float, treatment_value: float
) -> Comparison:
    """Percentile intervals from replicate estimates of each arm (same replicate count):
    the lift and relative lift per replicate, and a two-sided p-value from the share of
    replicates on either side of zero."""
    usable = np.isfinite(treatment) & np.isfinite(control)  # a replicate with x = 0 has none
    treatment, control = treatment[usable], control[usable]
    lift_b = treatment - control
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_b = treatment / control - 1
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    b = len(lift_b)
    if b == 0:
        nan = float("nan")
        return Comparison(
            control_value,
            treatment_value,
            treatment_value - control_value,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
        )
    below = (np.sum(lift_b < 0) + 0.5 * np.sum(lift_b == 0)) / b
    p = float(min(1.0, 2 * min(below, 1 - below)))
    finite = rel_b[np.isfinite(rel_b)]
    rel = treatment_value / control_value - 1 if control_value else float("nan")
    return Comparison(
        control=control_value,
        treatment=treatment_value,
        lift=treatment_value - control_value,
        lift_lower=_percentile(lift_b, lo),
        lift_upper=_percentile(lift_b, hi),
        relative_lift=rel,
        relative_lower=_percentile(finite, lo) if len(finite) else float("nan"),
        relative_upper=_percentile(finite, hi) if len(finite) else float("nan"),
        p_value=p,
    )


def _percentile(values: Array, q: float) -> float:
    """The replicate at the q-th percentile, by the inverse CDF (no interpolation), so that
    an interval excludes 0 exactly when the bootstrap p-value is below alpha."""
    return float(np.percentile(values, q, method="inverted_cdf"))


def replicate_ratios(y_sums: Array, x_sums: Array) -> Array:
    """R per replicate from the arm's weighted sums per replicate (nan where x is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x_sums != 0, y_sums / x_sums, np.nan)


@dataclass(frozen=True)
class SampleRatio:
    observed: tuple[int, ...]
    expected_shares: tuple[float, ...]
    p_value: float
    mismatch: bool


def sample_ratio_test(
    observed: Sequence[int], expected_shares: Sequence[float], threshold: float = 0.001
) -> SampleRatio:
    """Chi-square goodness of fit of units per arm against the intended split."""
    counts = np.asarray(observed, dtype=float)
    shares = np.asarray(expected_shares, dtype=float) / float(np.sum(expected_shares))
    p = float(stats.chisquare(counts, counts.sum() * shares).pvalue)
    return SampleRatio(tuple(int(c) for c in observed), tuple(shares), p, p < threshold)


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """Multiple-testing adjusted p-values (Benjamini-Hochberg step-up, or Bonferroni)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(p * m, 1.0)]
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(v) for v in adjusted]


Verdict = Literal["improvement", "harm", "changed", "no significant change"]


def verdict(significant: bool, lift: float, good_direction: str) -> Verdict:
    """What a significant lift means, given the metric's good direction (up, down, none)."""
    if not significant:
        return "no significant change"
    if good_direction not in ("up", "down"):
        return "changed"
    return "improvement" if (lift > 0) == (good_direction == "up") else "harm"

"""Experiment statistics from sufficient statistics: no rows, only sums per arm.

Every metric is a ratio of per-unit sums, R = sum(y) / sum(x): a mean or a proportion has
x = 1 per unit. An arm is summarised by its `Moments`: the number of units and the sums and
cross products of the per-unit vector v = (y, x, cy, cx), where (cy, cx) is the same metric
over the unit's pre-period (the CUPED covariate; zeros when there is none). From those:

- delta method: Var(R) = g' S g / n with g the gradient of y/x at the means and S the
  covariance matrix of v (Deng, Knoblich & Lu 2018), with n - 1 degrees of freedom;
- CUPED / regression adjustment: R_adj = R - theta (Rc - Rc_pooled), theta the pooled
  within-arm slope of the linearised metric on the linearised covariate, estimated on the
  arms being compared (for a mean metric: exactly ANCOVA with an arm indicator);
- absolute lift (independent arms) with a Welch t test and interval (Welch-Satterthwaite
  degrees of freedom; one fewer for CUPED's estimated slope), relative lift by the delta
  method on R_t / R_c, and Fieller's interval for the relative lift at an adjusted level
  (it excludes 0 exactly when the absolute test rejects);
- Poisson bootstrap replicates: per replicate the arms' weighted sums give R_b; the lift's
  two-sided p-value 2 (1 + replicates on the far side of 0) / (B + 1), never below
  2 / (B + 1), and percentile intervals whose ends are the order statistics that make
  "the interval excludes 0" and "p < level" the same statement;
- sample ratio mismatch (chi-square goodness of fit), Benjamini-Hochberg and Bonferroni,
  and the confidence level of intervals that agree with the adjusted p-values
  (Benjamini-Yekutieli's FCR-adjusted level for BH).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from udfs.exact_moments import delta_ratio_variance

log = logging.getLogger(__name__)

Array = NDArray[np.float64]

CupedMode = Literal["per_comparison", "pooled"]

CUPED_MODES: tuple[CupedMode, ...] = ("per_comparison", "pooled")

Y, X, CY, CX = range(4)

NAN = float("nan")

#: Degrees of freedom a CUPED comparison gives up for its estimated slope.
CUPED_DF = 1.0


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
    df: float  # degrees of freedom of the variance estimate (n - 1)


def delta_estimate(arm: Moments) -> ArmEstimate:
    """R and its delta-method variance."""
    if arm.n < 2:
        return ArmEstimate(arm.ratio if arm.n else NAN, NAN, 0.0)
    if arm.sums[X] == 0:
        return ArmEstimate(arm.ratio, NAN, float(arm.n - 1))
    c = arm.centered if arm.centered is not None else arm.covariance * (arm.n - 1)
    variance = delta_ratio_variance(
        arm.n, float(arm.sums[Y]), float(arm.sums[X]), c[Y, Y], c[Y, X], c[X, X]
    )
    return ArmEstimate(arm.ratio, float(variance), float(arm.n - 1))


def cuped_theta(arms: Sequence[Moments]) -> float:
    """Pooled within-arm slope of the linearised metric on the linearised covariate, over
    `arms` (the two arms of a comparison by default; every arm for the pooled variant)."""
    num = den = 0.0
    for arm in arms:
        if arm.n < 2:
            continue
        g, h = arm.gradients()
        s = arm.covariance * (arm.n - 1)
        num += float(g @ s @ h)
        den += float(h @ s @ h)
    return num / den if den > 0 else 0.0


def cuped_estimate(arm: Moments, theta: float, pooled_covariate: float) -> ArmEstimate:
    """R - theta (Rc - Rc_pooled) and its delta-method variance (theta and the pooled
    covariate ratio taken as fixed: both cancel in a difference of arms; the comparison
    takes one degree of freedom off for theta)."""
    if arm.n < 2:
        return ArmEstimate(arm.ratio if arm.n else NAN, NAN, 0.0)
    g, h = arm.gradients()
    c = g - theta * h
    value = arm.ratio - theta * (arm.covariate_ratio - pooled_covariate)
    return ArmEstimate(value, float(c @ arm.covariance @ c) / arm.n, float(arm.n - 1))


def pooled_covariate_ratio(arms: Sequence[Moments]) -> float:
    cy = sum(float(a.sums[CY]) for a in arms)
    cx = sum(float(a.sums[CX]) for a in arms)
    return cy / cx if cx else 0.0


def cuped_arms(
    control: Moments, treatment: Moments, every_arm: Sequence[Moments], mode: CupedMode
) -> tuple[ArmEstimate, ArmEstimate]:
    """Both arms' CUPED estimates for one comparison: theta and the pooled covariate ratio
    from these two arms (`per_comparison`, as gbstats) or from `every_arm` (`pooled`: then
    adding an arm changes every comparison)."""
    basis = [control, treatment] if mode == "per_comparison" else list(every_arm)
    theta, pooled = cuped_theta(basis), pooled_covariate_ratio(basis)
    return cuped_estimate(control, theta, pooled), cuped_estimate(treatment, theta, pooled)


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
    df: float = NAN  # the t test's degrees of freedom (nan for the bootstrap)


@dataclass(frozen=True)
class Intervals:
    """Absolute and relative lift intervals at one confidence level (+-inf: unbounded)."""

    lift_lower: float
    lift_upper: float
    relative_lower: float
    relative_upper: float


def welch_df(parts: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates,
    given as (variance, its degrees of freedom); nan when the sum is 0 or not finite."""
    total = sum(v for v, _ in parts)
    if not (total > 0 and math.isfinite(total)):
        return NAN
    spread = sum(v * v / df for v, df in parts if v > 0)
    return total * total / spread


def _t_quantile(level: float, df: float) -> float:
    """The two-sided critical value of a (1 - level) interval: t_{1 - level/2, df}."""
    return float(stats.t.isf(level / 2, df))


def t_comparison(
    control: ArmEstimate, treatment: ArmEstimate, alpha: float, df_reduction: float = 0.0
) -> Comparison:
    """Absolute lift with a Welch t test and interval (Welch-Satterthwaite df, less
    `df_reduction` for estimated adjustment slopes); relative lift t/c - 1 with the delta
    method's variance and its own Satterthwaite df. For a mean metric this is
    `scipy.stats.ttest_ind(equal_var=False)`."""
    lift = treatment.value - control.value
    variance = control.variance + treatment.variance
    df = welch_df([(control.variance, control.df), (treatment.variance, treatment.df)])
    df -= df_reduction
    se = math.sqrt(variance) if variance >= 0 else NAN
    usable = math.isfinite(lift) and se > 0 and df > 0
    p = float(2 * stats.t.sf(abs(lift) / se, df)) if usable else NAN
    q = _t_quantile(alpha, df) if usable else NAN
    c, t = control.value, treatment.value
    rel = t / c - 1 if c else NAN
    # Var(t/c) ~ Var(t)/c^2 + t^2 Var(c)/c^4 for independent arms.
    rel_lower = rel_upper = NAN
    if c and usable:
        a, b = treatment.variance / c**2, t**2 * control.variance / c**4
        rel_df = welch_df([(a, treatment.df), (b, control.df)]) - df_reduction
        if rel_df > 0:
            half = _t_quantile(alpha, rel_df) * math.sqrt(a + b)
            rel_lower, rel_upper = rel - half, rel + half
    return Comparison(
        control=c,
        treatment=t,
        lift=lift,
        lift_lower=lift - q * se,
        lift_upper=lift + q * se,
        relative_lift=rel,
        relative_lower=rel_lower,
        relative_upper=rel_upper,
        p_value=p,
        df=df if usable else NAN,
    )


def fieller_interval(control: ArmEstimate, treatment: ArmEstimate, q: float) -> tuple[float, float]:
    """Fieller's interval for t/c - 1 with critical value q: every rho with
    (t - rho c)^2 <= q^2 (Var t + rho^2 Var c). It contains 0 exactly when
    |t - c| <= q sqrt(Var t + Var c), i.e. when the absolute test does not reject.
    (-inf, inf) when the control's value is not clearly away from 0 (the set is unbounded)."""
    t, c, vt, vc = treatment.value, control.value, treatment.variance, control.variance
    a = c * c - q * q * vc
    if not (a > 0 and math.isfinite(a)):
        return -math.inf, math.inf
    root = q * math.sqrt(max(vt * a + vc * t * t, 0.0))
    return (t * c - root) / a - 1, (t * c + root) / a - 1


def t_intervals(
    control: ArmEstimate, treatment: ArmEstimate, level: float, df_reduction: float = 0.0
) -> Intervals:
    """Intervals at confidence 1 - level that agree with the Welch t test at `level`: the
    absolute lift's t interval and Fieller's interval for the relative lift, both with the
    absolute lift's degrees of freedom."""
    lift = treatment.value - control.value
    se = math.sqrt(control.variance + treatment.variance)
    df = welch_df([(control.variance, control.df), (treatment.variance, treatment.df)])
    df -= df_reduction
    if not (se > 0 and df > 0 and math.isfinite(lift)):
        return Intervals(NAN, NAN, NAN, NAN)
    q = _t_quantile(level, df)
    low, high = fieller_interval(control, treatment, q) if control.value else (NAN, NAN)
    return Intervals(lift - q * se, lift + q * se, low, high)


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

"""The experiment statistics core against direct NumPy/SciPy computations on unit rows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from jobs.experiments.bootstrap_stats import (
    bootstrap_comparison,
    bootstrap_intervals,
    replicate_ratios,
)
from jobs.experiments.decisions import adjust_p_values, verdict
from jobs.experiments.stats import (
    Moments,
    cuped_arms,
    cuped_estimate,
    cuped_theta,
    delta_estimate,
    pooled_covariate_ratio,
    sample_ratio_test,
    t_comparison,
    t_intervals,
)

RNG = np.random.default_rng(20261124)


def ratio_units(n: int, lift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Views per unit (x) and violative views among them (y): clustered events."""
    x = RNG.poisson(5, n) + 1.0
    y = RNG.binomial(x.astype(int), 0.02 * (1 + lift)).astype(float)
    return y, x


def test_moments_add_up_and_match_their_rows() -> None:
    y, x = ratio_units(200)
    whole = Moments.of_units(y, x)
    assert whole.n == 200
    assert whole.sums[0] == pytest.approx(y.sum())
    assert whole.cross[0, 1] == pytest.approx((x * y).sum())
    a, b = Moments.of_units(y[:70], x[:70]), Moments.of_units(y[70:], x[70:])
    combined = a + b
    assert combined.n == whole.n
    np.testing.assert_allclose(combined.sums, whole.sums, rtol=1e-12)
    np.testing.assert_allclose(combined.cross, whole.cross, rtol=1e-12)


def test_covariance_keeps_the_variance_of_values_far_from_zero() -> None:
    """1e8 + N(0, 1): cross - n mu mu' in floats cancels to noise (13x too large a variance)."""
    y = 1e8 + RNG.normal(0, 1, 400)
    x = 5e7 + RNG.normal(0, 2, 400)
    expected = np.cov(np.vstack([y, x]), ddof=1)
    whole = Moments.of_units(y, x)
    np.testing.assert_allclose(whole.covariance[:2, :2], expected, rtol=1e-6)
    combined = Moments.of_units(y[:150], x[:150]) + Moments.of_units(y[150:], x[150:])
    np.testing.assert_allclose(combined.covariance[:2, :2], expected, rtol=1e-6)


def test_delta_method_variance_of_a_ratio_equals_the_linearisation() -> None:
    y, x = ratio_units(500)
    est = delta_estimate(Moments.of_units(y, x))
    r = y.sum() / x.sum()
    linear = (y - r * x) / x.mean()
    assert est.value == pytest.approx(r, rel=1e-12)
    assert est.variance == pytest.approx(np.var(linear, ddof=1) / len(y), rel=1e-9)


def test_mean_and_proportion_variances_are_the_sample_variance_over_n() -> None:
    values = RNG.lognormal(1, 1, 300)
    est = delta_estimate(Moments.of_units(values))
    assert est.value == pytest.approx(values.mean(), rel=1e-12)
    assert est.variance == pytest.approx(np.var(values, ddof=1) / 300, rel=1e-9)
    hits = (RNG.random(400) < 0.3).astype(float)
    est = delta_estimate(Moments.of_units(hits))
    assert est.variance == pytest.approx(np.var(hits, ddof=1) / 400, rel=1e-9)


def test_cuped_on_a_mean_metric_is_ancova() -> None:
    n = 800
    pre = RNG.normal(10, 3, 2 * n)
    arm = np.repeat([0.0, 1.0], n)
    post = 2 + 0.8 * pre + 0.5 * arm + RNG.normal(0, 1, 2 * n)
    control = Moments.of_units(post[:n], cy=pre[:n])
    treatment = Moments.of_units(post[n:], cy=pre[n:])
    theta = cuped_theta([control, treatment])
    pooled = pooled_covariate_ratio([control, treatment])
    c = cuped_estimate(control, theta, pooled)
    t = cuped_estimate(treatment, theta, pooled)
    # ANCOVA: post ~ 1 + arm + pre, the arm coefficient is the adjusted lift.
    design = np.column_stack([np.ones(2 * n), arm, pre])
    coef, *_ = np.linalg.lstsq(design, post, rcond=None)
    assert t.value - c.value == pytest.approx(coef[1], rel=1e-9)
    assert theta == pytest.approx(coef[2], rel=1e-9)
    # Each arm's variance: that of its adjusted unit values over n.
    adjusted = post[n:] - theta * pre[n:]
    assert t.variance == pytest.approx(np.var(adjusted, ddof=1) / n, rel=1e-9)
    # And it is smaller than without the covariate.
    assert t.variance < delta_estimate(treatment).variance / 3


def test_cuped_on_a_ratio_metric_uses_linearised_values() -> None:
    y, x = ratio_units(600)
    py, px = y + RNG.poisson(1, 600), x + RNG.poisson(1, 600)  # correlated pre-period
    arm = Moments.of_units(y, x, py, px)
    theta = cuped_theta([arm])
    r, rc = y.sum() / x.sum(), py.sum() / px.sum()
    lin = (y - r * x) / x.mean()
    lin_c = (py - rc * px) / px.mean()
    assert theta == pytest.approx(np.cov(lin, lin_c)[0, 1] / np.var(lin_c, ddof=1), rel=1e-9)
    est = cuped_estimate(arm, theta, rc)
    assert est.value == pytest.approx(r, rel=1e-12)  # its own pooled covariate: no shift
    assert est.variance == pytest.approx(np.var(lin - theta * lin_c, ddof=1) / 600, rel=1e-9)


def two_means(n_control: int, n_treatment: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed fractional values at a large level, unequal sizes and spreads."""
    rng = np.random.default_rng(seed)
    control = 1e6 + rng.lognormal(2, 1.2, n_control) * 3.7
    treatment = 1e6 + rng.lognormal(2.1, 1.5, n_treatment) * 3.7
    return control, treatment


@pytest.mark.parametrize(("n_control", "n_treatment", "seed"), [(12, 7, 1), (300, 45, 2)])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_delta_comparison_of_means_is_welchs_t_test(
    n_control: int, n_treatment: int, seed: int, alpha: float
) -> None:
    """For a mean metric without covariate: scipy's Welch test, statistic, p-value and
    interval, to 1e-10 (small samples: t with Welch-Satterthwaite df, not z)."""
    control, treatment = two_means(n_control, n_treatment, seed)
    c = delta_estimate(Moments.of_units(control))
    t = delta_estimate(Moments.of_units(treatment))
    out = t_comparison(c, t, alpha)
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    ci = welch.confidence_interval(1 - alpha)
    se = np.sqrt(c.variance + t.variance)
    assert out.lift / se == pytest.approx(welch.statistic, rel=1e-10)
    assert out.p_value == pytest.approx(welch.pvalue, rel=1e-10)
    assert out.df == pytest.approx(welch.df, rel=1e-10)
    assert out.lift_lower == pytest.approx(ci.low, rel=1e-10)
    assert out.lift_upper == pytest.approx(ci.high, rel=1e-10)
    # Not the normal interval: at 7 and 12 units t's quantile is visibly larger than z's.
    if n_treatment < 10:
        z = stats.norm.isf(alpha / 2)
        assert out.lift_upper - out.lift > 1.05 * z * se


@pytest.mark.parametrize(("n_control", "n_treatment", "seed"), [(12, 7, 3), (400, 90, 4)])
def test_relative_lift_interval_is_the_linearised_welch_interval(
    n_control: int, n_treatment: int, seed: int
) -> None:
    """The relative lift's delta-method interval: t/c - 1 plus or minus the half-width of
    scipy's Welch interval for the linearisation T/c - C t/c^2 (its variance and its
    Satterthwaite df are the relative lift's)."""
    control, treatment = two_means(n_control, n_treatment, seed)
    out = t_comparison(
        delta_estimate(Moments.of_units(control)), delta_estimate(Moments.of_units(treatment)), 0.05
    )
    mc, mt = control.mean(), treatment.mean()
    linear = stats.ttest_ind(treatment / mc, control * mt / mc**2, equal_var=False)
    ci = linear.confidence_interval(0.95)
    half = (ci.high - ci.low) / 2
    assert out.relative_lift == pytest.approx(mt / mc - 1, rel=1e-12)
    assert out.relative_lower == pytest.approx(mt / mc - 1 - half, rel=1e-9)
    assert out.relative_upper == pytest.approx(mt / mc - 1 + half, rel=1e-9)


def test_fieller_interval_ends_are_where_the_ratio_test_reaches_its_critical_value() -> None:
    """At each end rho of the adjusted relative interval, Welch's statistic for
    mean(T) - (1 + rho) mean(C) (scipy, on T and (1 + rho) C) is +-q, q the absolute
    test's critical value; and 0 is inside exactly when the absolute test does not reject."""
    control, treatment = two_means(200, 150, 5)
    c = delta_estimate(Moments.of_units(control))
    t = delta_estimate(Moments.of_units(treatment))
    for level in (0.05, 0.005, 0.3):
        out = t_intervals(c, t, level)
        absolute = t_comparison(c, t, level)
        q = stats.t.isf(level / 2, absolute.df)
        for end in (out.relative_lower, out.relative_upper):
            scaled = stats.ttest_ind(treatment, control * (1 + end), equal_var=False)
            assert abs(scaled.statistic) == pytest.approx(q, rel=1e-9)
        assert out.lift_lower == pytest.approx(absolute.lift_lower, rel=1e-12)
        significant = absolute.p_value < level
        assert (out.relative_lower > 0 or out.relative_upper < 0) == significant
        assert (out.lift_lower > 0 or out.lift_upper < 0) == significant


def ols_with_hc2(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and their HC2 standard errors (numpy, from the textbook formulas)."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    bread = np.linalg.inv(design.T @ design)
    leverage = np.einsum("ij,jk,ik->i", design, bread, design)
    meat = (design.T * (resid**2 / (1 - leverage))) @ design
    return coef, np.sqrt(np.diag(bread @ meat @ bread))


@pytest.mark.parametrize(("n_control", "n_treatment"), [(800, 800), (400, 1200)])
def test_cuped_comparison_is_ols_on_the_two_arms(n_control: int, n_treatment: int) -> None:
    """Mean metric: CUPED's lift is the treatment coefficient of OLS y ~ 1 + treatment +
    centred covariate on the two arms (exactly) and its standard error HC2's (to 0.5%: CUPED
    takes theta as known, an O(1/n) difference); df one below Welch's on the adjusted
    values."""
    rng = np.random.default_rng(n_treatment)
    n = n_control + n_treatment
    pre = rng.normal(10, 3, n) * 1.37
    arm = np.r_[np.zeros(n_control), np.ones(n_treatment)]
    post = 2 + 0.8 * pre + 0.5 * arm + rng.normal(0, 1 + 0.5 * arm, n)
    control = Moments.of_units(post[:n_control], cy=pre[:n_control])
    treatment = Moments.of_units(post[n_control:], cy=pre[n_control:])
    cc, ct = cuped_arms(control, treatment, [control, treatment], "per_comparison")
    out = t_comparison(cc, ct, 0.05, df_reduction=1.0)
    coef, se = ols_with_hc2(post, np.column_stack([np.ones(n), arm, pre - pre.mean()]))
    assert out.lift == pytest.approx(coef[1], rel=1e-9)
    assert np.sqrt(cc.variance + ct.variance) == pytest.approx(se[1], rel=5e-3)
    # df: Welch's on the adjusted unit values (OLS's slope), less one for the slope.
    adjusted = post - coef[2] * pre
    welch = stats.ttest_ind(adjusted[n_control:], adjusted[:n_control], equal_var=False)
    assert out.df == pytest.approx(welch.df - 1, rel=1e-9)


def test_cuped_per_comparison_ignores_other_arms_and_pooled_does_not() -> None:
    """A third arm with another slope changes nothing of control vs treatment by default;
    the pooled variant's estimate moves."""
    rng = np.random.default_rng(9)
    pre = [rng.normal(10, 3, 600) for _ in range(3)]
    slopes = (0.8, 0.8, -0.5)
    arms = [
        Moments.of_units(2 + s * p + rng.normal(0, 1, 600), cy=p)
        for s, p in zip(slopes, pre, strict=True)
    ]
    two = cuped_arms(arms[0], arms[1], arms[:2], "per_comparison")
    three = cuped_arms(arms[0], arms[1], arms, "per_comparison")
    assert two == three
    pooled_two = cuped_arms(arms[0], arms[1], arms[:2], "pooled")
    pooled_three = cuped_arms(arms[0], arms[1], arms, "pooled")
    assert pooled_two == two
    lift = [t_comparison(c, t, 0.05).lift for c, t in (two, pooled_three)]
    se = np.sqrt(two[0].variance + two[1].variance)
    assert abs(lift[1] - lift[0]) > 0.05 * se


def test_bootstrap_comparison_percentiles_and_p_value() -> None:
    """Percentile ends are replicate order statistics; the p-value is the share of
    replicates on the far side of 0, counted with the +1 of an exact permutation-style
    p-value (never 0)."""
    control = RNG.normal(1.0, 0.1, 999)
    treatment = RNG.normal(1.1, 0.1, 999)
    out = bootstrap_comparison(control, treatment, 0.05, 1.0, 1.1)
    lifts = np.sort(treatment - control)
    # (B + 1) alpha / 2 = 25: the 24th smallest and 24th largest replicates (one further out
    # than the 25th, because a p-value of 2 (1 + 24) / 1000 is not below 0.05).
    assert out.lift_lower == lifts[23] and out.lift_upper == lifts[-24]
    far = min(np.sum(lifts <= 0), np.sum(lifts >= 0))
    assert 0 < far < len(lifts) // 2
    assert out.p_value == pytest.approx(2 * (far + 1) / 1000, rel=1e-15)
    assert out.relative_lift == pytest.approx(0.1)
    ratios = replicate_ratios(np.array([1.0, 2.0]), np.array([2.0, 0.0]))
    assert ratios[0] == 0.5 and np.isnan(ratios[1])


def test_bootstrap_p_value_is_never_zero() -> None:
    """Every replicate lift above 0: p = 2 / (B + 1), not 0 (and BH gets that value)."""
    for b in (50, 500, 1000):
        out = bootstrap_comparison(np.zeros(b), RNG.uniform(1, 2, b), 0.05, 0.0, 1.5)
        assert out.p_value == 2 / (b + 1)
        assert adjust_p_values([out.p_value, 0.5], "bh")[0] == pytest.approx(4 / (b + 1))


def test_bootstrap_p_value_against_a_brute_force_count() -> None:
    """The p-value from counting, in Fractions, how many replicates lie on each side."""
    rng = np.random.default_rng(17)
    for b in (39, 200, 501):
        for shift in (-0.2, 0.0, 0.05, 0.3):
            lifts = np.round(rng.normal(shift, 0.1, b), 2)  # ties at 0 included
            low = sum(1 for v in lifts if v <= 0)
            high = sum(1 for v in lifts if v >= 0)
            expected = min(Fraction(1), Fraction(2 * (1 + min(low, high)), b + 1))
            out = bootstrap_comparison(np.zeros(b), lifts, 0.05, 0.0, shift)
            assert out.p_value == float(expected), (b, shift)


@pytest.mark.parametrize("replicates", [500, 1000, 333, 39])
def test_bootstrap_interval_excludes_zero_exactly_when_significant(replicates: int) -> None:
    rng = np.random.default_rng(replicates)
    for shift in np.linspace(0.0, 0.3, 61):
        lifts = rng.normal(shift, 0.1, replicates)
        for level in (0.05, 0.01, 0.05 / 7, 3 * 0.05 / 11):
            wide = bootstrap_intervals(np.zeros(replicates), lifts, level)
            p = bootstrap_comparison(np.zeros(replicates), lifts, level, 0.0, shift).p_value
            excludes = wide.lift_lower > 0 or wide.lift_upper < 0
            assert excludes == (p < level), (shift, level, wide, p)
    # The boundary: c replicates at or below 0 with p = 2 (1 + c) / (B + 1) just at, above
    # and below the level.
    for c in range(30):
        edge = np.array([-1.0] * c + [1.0] * (replicates - c))
        out = bootstrap_comparison(np.zeros(replicates), edge, 0.05, 0.0, 0.5)
        assert (out.lift_lower > 0) == (out.p_value < 0.05), c


def test_bootstrap_comparison_drops_replicates_without_a_denominator() -> None:
    control = np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    treatment = np.array([1.5, 2.0, 0.8, 1.3, 1.1])
    out = bootstrap_comparison(control, treatment, 0.5, 1.0, 1.2)
    usable = bootstrap_comparison(control[[0, 2, 3, 4]], treatment[[0, 2, 3, 4]], 0.5, 1.0, 1.2)
    assert out == usable
    assert out.p_value == pytest.approx(2 * (1 + 1) / 5)  # one of 4 usable lifts below 0
    empty = bootstrap_comparison(np.array([np.nan]), np.array([1.0]), 0.05, 1.0, 1.0)
    assert np.isnan(empty.p_value) and np.isnan(empty.lift_lower)


def test_sample_ratio_mismatch_matches_scipy_and_flags_a_planted_one() -> None:
    fine = sample_ratio_test([50_210, 49_790], [0.5, 0.5])
    assert fine.p_value == pytest.approx(stats.chisquare([50_210, 49_790]).pvalue)
    assert not fine.mismatch
    # 6% of control assignments lost, as the generator plants.
    planted = sample_ratio_test([47_000, 50_000], [0.5, 0.5])
    assert planted.mismatch and planted.p_value < 1e-10
    uneven = sample_ratio_test([9_000, 1_000], [90, 10])
    assert uneven.p_value == pytest.approx(stats.chisquare([9_000, 1_000], [9_000, 1_000]).pvalue)


def test_p_value_corrections_match_scipy() -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.5, 0.012]
    expected = stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(adjust_p_values(p, "bh"), expected, rtol=1e-12)
    np.testing.assert_allclose(
        adjust_p_values(p, "bonferroni"), np.minimum(np.array(p) * 6, 1.0), rtol=1e-12
    )
    assert adjust_p_values(p, "none") == p
    assert adjust_p_values([], "bh") == []


@pytest.mark.parametrize(
    ("significant", "lift", "direction", "expected"),
    [
        (True, 0.1, "down", "harm"),
        (True, -0.1, "down", "improvement"),
        (True, 0.1, "up", "improvement"),
        (True, -0.1, "none", "changed"),
        (False, 0.1, "down", "no significant change"),
    ],
)
def test_verdict_uses_the_good_direction(
    significant: bool, lift: float, direction: str, expected: str
) -> None:
    assert verdict(significant, lift, direction) == expected

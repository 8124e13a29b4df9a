"""The experiment statistics core against direct NumPy/SciPy computations on unit rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jobs.experiments.stats import (
    Moments,
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


def test_normal_comparison_lift_relative_lift_and_p_value() -> None:
    yc, xc = ratio_units(1000)
    yt, xt = ratio_units(1000, lift=0.3)
    c, t = delta_estimate(Moments.of_units(yc, xc)), delta_estimate(Moments.of_units(yt, xt))
    out = normal_comparison(c, t, alpha=0.05)
    se = np.sqrt(c.variance + t.variance)
    z = stats.norm.ppf(0.975)
    assert out.lift == pytest.approx(t.value - c.value)
    assert out.lift_lower == pytest.approx(out.lift - z * se)
    assert out.p_value == pytest.approx(2 * stats.norm.sf(abs(out.lift) / se))
    rel_se = np.sqrt(t.variance / c.value**2 + t.value**2 * c.variance / c.value**4)
    assert out.relative_lift == pytest.approx(t.value / c.value - 1)
    assert out.relative_upper == pytest.approx(out.relative_lift + z * rel_se)


def test_bootstrap_comparison_percentiles_and_p_value() -> None:
    control = RNG.normal(1.0, 0.1, 1000)
    treatment = RNG.normal(1.3, 0.1, 1000)
    out = bootstrap_comparison(control, treatment, 0.05, 1.0, 1.3)
    lifts = treatment - control
    assert out.lift_lower == pytest.approx(np.sort(lifts)[24])  # inverse CDF: 25th of 1000
    assert out.lift_upper == pytest.approx(np.sort(lifts)[974])
    assert out.p_value == pytest.approx(2 * min(np.mean(lifts < 0), np.mean(lifts > 0)))
    assert out.relative_lift == pytest.approx(0.3)
    ratios = replicate_ratios(np.array([1.0, 2.0]), np.array([2.0, 0.0]))
    assert ratios[0] == 0.5 and np.isnan(ratios[1])


@pytest.mark.parametrize("replicates", [500, 1000, 333])
def test_bootstrap_interval_excludes_zero_exactly_when_significant(replicates: int) -> None:
    rng = np.random.default_rng(replicates)
    for shift in np.linspace(0.0, 0.3, 61):
        lifts = rng.normal(shift, 0.1, replicates)
        out = bootstrap_comparison(np.zeros(replicates), lifts, 0.05, 0.0, shift)
        excludes = out.lift_lower > 0 or out.lift_upper < 0
        assert excludes == (out.p_value < 0.05), (shift, out)
    # The boundary case: 13 of 500 lifts below 0 (p = 0.052), the 13th just below it.
    edge = np.array([-1.0] * 12 + [-0.001] + [1.0] * (replicates - 13))
    out = bootstrap_comparison(np.zeros(replicates), edge, 0.05, 0.0, 0.5)
    assert (out.lift_lower > 0) == (out.p_value < 0.05)


def test_bootstrap_comparison_drops_replicates_without_a_denominator() -> None:
    control = np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    treatment = np.array([1.5, 2.0, 0.8, 1.3, 1.1])
    out = bootstrap_comparison(control, treatment, 0.5, 1.0, 1.2)
    usable = treatment[[0, 2, 3, 4]] - 1.0
    assert out.p_value == pytest.approx(2 * min(np.mean(usable < 0), np.mean(usable > 0)))
    assert out.lift_lower == pytest.approx(np.percentile(usable, 25, method="inverted_cdf"))
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

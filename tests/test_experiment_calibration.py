"""A fast, seeded version of the calibration benchmark (no Spark): the delta method and the
Poisson bootstrap on the heavy-tailed mean and the binary metric reject a true null about
5% of the time and cover a planted lift about 95% of the time.

Bands: with 200 experiments the number of rejections (or of misses) of a well-calibrated
method is Binomial(200, 0.05); the bands are its 0.05% and 99.95% quantiles, 2 and 21, so a
calibrated method falls outside with probability about 0.1% per check: false-positive rates
in [1%, 10.5%], coverages in [89.5%, 99%] (Monte Carlo SE 1.5 pp). The draws are seeded,
so the outcome is deterministic. A method whose variance is halved rejects about 17% of the
time (33 of 200) and fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jobs.experiments.stats import delta_estimate
from tests.benchmarks.bench_experiment_calibration import (
    EFFECT,
    METRICS,
    SIMULATORS,
    Scenario,
    Units,
    coverages,
    false_positive_rates,
    main,
    normal_methods,
    population_ratio,
    run_scenario,
)

SEED = 20261202
EXPERIMENTS = 200
#: The band for the number of rejections (A/A) or misses (A/B) out of EXPERIMENTS.
LOW, HIGH = (int(k) for k in stats.binom.ppf([0.0005, 0.9995], EXPERIMENTS, 0.05))


def in_band(share: float) -> bool:
    """A share of the experiments, as a count, lies in [LOW, HIGH]."""
    return LOW <= round(share * EXPERIMENTS) <= HIGH


def scenario(name: str, code: int, effect: float) -> Scenario:
    """Experiments of 1,000 units per arm, 120 replicates: delta and bootstrap only.

    120, not 100: the percentile ends are the k-th order statistics with k the largest
    count of far-side replicates whose p-value 2 (1 + c) / (B + 1) is below alpha; at
    B = 120, (B + 1) alpha / 2 = 3.025 gives k = 3, a 1 - 6/121 = 95.0% interval, while
    B = 100 gives k = 2, a 96% one (conservative; it missed the band's floor here)."""
    return Scenario(
        name,
        code,
        experiments=EXPERIMENTS,
        units=1000,
        effect=effect,
        replicates=120,
        seed=SEED,
        metrics=("heavy_tailed_mean", "binary"),
        methods=("delta", "bootstrap"),
    )


def test_band_is_the_binomial_quantiles() -> None:
    assert (LOW, HIGH) == (2, 21)
    assert (
        stats.binom.cdf(LOW - 1, EXPERIMENTS, 0.05) + stats.binom.sf(HIGH, EXPERIMENTS, 0.05)
        < 0.002
    )
    assert stats.binom.cdf(HIGH, EXPERIMENTS, 0.166) < 0.02  # a halved variance is caught


def test_false_positive_rates_under_a_true_null() -> None:
    rates = false_positive_rates(run_scenario(scenario("A/A", 1, 0.0)))
    assert len(rates) == 4
    for key, (by_p, by_ci, _) in rates.items():
        assert in_band(by_p), (key, by_p)
        assert in_band(by_ci), (key, by_ci)


def test_intervals_cover_the_planted_lift() -> None:
    cover = coverages(run_scenario(scenario("A/B", 2, EFFECT)))
    assert len(cover) == 4
    for key, (absolute, _, relative) in cover.items():
        assert in_band(1 - absolute), (key, absolute)
        assert in_band(1 - relative), (key, relative)


def head(units: Units, n: int) -> Units:
    return Units(units.y[:n], units.x[:n], units.cy[:n], units.cx[:n])


@pytest.mark.parametrize("metric", METRICS)
def test_simulated_arms_match_their_analytic_population_ratio(metric: str) -> None:
    """The benchmark's truth is right: a large sample's R is within 4 SE of it, and the
    pre-period covariate cuts CUPED's variance noticeably."""
    rng = np.random.default_rng(SEED)
    control, treatment = (SIMULATORS[metric](rng, 200_000, e) for e in (0.0, EFFECT))
    for arm, effect in ((control, 0.0), (treatment, EFFECT)):
        estimate = delta_estimate(arm.moments())
        truth = population_ratio(metric, effect)
        assert abs(estimate.value - truth) < 4 * np.sqrt(estimate.variance), (effect, truth)
    methods = normal_methods(head(control, 5000), head(treatment, 5000))
    widths = {m: c.lift_upper - c.lift_lower for m, c in methods.items()}
    assert widths["cuped"] < 0.92 * widths["delta"]


def test_quick_run_prints_every_table_and_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick", "--experiments", "20"])
    out = capsys.readouterr().out
    assert out.count("### ") == 3
    assert "| binary | bootstrap |" in out
    assert sum(line.startswith(("PASS", "FAIL")) for line in out.splitlines()) == 3

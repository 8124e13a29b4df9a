"""A fast, seeded version of the calibration benchmark (no Spark): the delta method and the
Poisson bootstrap on the heavy-tailed mean and the binary metric reject a true null about
5% of the time and cover a planted lift about 95% of the time.

Bands: with 200 experiments a 5% rate has a Monte Carlo SE of 1.5 pp, so [1%, 10%] is about
-2.6 to +3.2 SE; a 95% coverage has the same SE, so [89%, 99%] is -3.9 to +2.6 SE (at most
22 and at least 2 misses of 200). The draws are seeded, so the outcome is deterministic; a
method whose variance is off by a factor of two lands outside (false-positive rate ~17% when
the variance is halved).
"""

from __future__ import annotations

import numpy as np
import pytest

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
FPR_BAND = (0.01, 0.10)
COVERAGE_BAND = (0.89, 0.99)


def scenario(name: str, code: int, effect: float) -> Scenario:
    """200 experiments of 1,000 units per arm, 100 replicates: delta and bootstrap only."""
    return Scenario(
        name,
        code,
        experiments=200,
        units=1000,
        effect=effect,
        replicates=100,
        seed=SEED,
        metrics=("heavy_tailed_mean", "binary"),
        methods=("delta", "bootstrap"),
    )


def test_false_positive_rates_under_a_true_null() -> None:
    rates = false_positive_rates(run_scenario(scenario("A/A", 1, 0.0)))
    assert len(rates) == 4
    for key, (by_p, by_ci, _) in rates.items():
        assert FPR_BAND[0] <= by_p <= FPR_BAND[1], (key, by_p)
        assert FPR_BAND[0] <= by_ci <= FPR_BAND[1], (key, by_ci)


def test_intervals_cover_the_planted_lift() -> None:
    cover = coverages(run_scenario(scenario("A/B", 2, EFFECT)))
    assert len(cover) == 4
    for key, (absolute, _, relative) in cover.items():
        assert COVERAGE_BAND[0] <= absolute <= COVERAGE_BAND[1], (key, absolute)
        assert COVERAGE_BAND[0] <= relative <= COVERAGE_BAND[1], (key, relative)


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

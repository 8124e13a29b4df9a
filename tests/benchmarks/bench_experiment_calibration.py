"""Benchmark: calibration of the experiment statistics by a seeded simulation.

    .venv/bin/python -m tests.benchmarks.bench_experiment_calibration \
        [--experiments 400] [--units 5000] [--small-units 500] [--replicates 500] [--seed N]

Three metric types (a heavy-tailed mean, a ratio of events clustered by unit, a rare binary
outcome), each with a pre-period covariate that shares a unit-level random effect with the
outcome. Methods: the delta method, CUPED and the Poisson bootstrap of
jobs/experiments/stats.py, the last with the very weights of udfs/poisson_bootstrap.py. Three
scenarios: A/A (false-positive rate at alpha 0.05), A/B with a planted relative effect
(coverage of the true lift, known analytically) and, at a small sample, coverage on the same
draws against scipy's percentile bootstrap and Welch's t interval. Every draw comes from a
generator seeded by (seed, scenario, experiment), so a run is reproducible. Progress goes to
stderr; the Markdown tables and one PASS/FAIL line per target go to stdout (exit status 1 if
any target fails). `--scenarios aa ab small` and `--methods delta cuped bootstrap` select
parts; `--quick` runs every scenario at a small size. Results belong in
docs/experiment-calibration.md together with the command.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from jobs.experiments.bootstrap_stats import bootstrap_comparison, replicate_ratios
from jobs.experiments.stats import (
    CUPED_DF,
    Comparison,
    Moments,
    cuped_arms,
    delta_estimate,
    t_comparison,
)
from udfs.poisson_bootstrap import numpy_weights

Array = NDArray[np.float64]
Bools = NDArray[np.bool_]
Key = tuple[str, str]  # (metric, method)

ALPHA = 0.05
EFFECT = 0.05  # the planted relative effect of the A/B scenarios
FPR_TARGET = (0.035, 0.065)
COVERAGE_TARGET = (0.93, 0.97)
METRICS = ("heavy_tailed_mean", "ratio", "binary")
OUR_METHODS = ("delta", "cuped", "bootstrap")
SCIPY_METHODS = ("scipy_bootstrap", "welch_t")

# heavy_tailed_mean: log y = unit effect + noise, sd 1.5 in all (1.4 of it the unit's).
LOG_SD, LOG_SD_UNIT = 1.5, 1.4
# ratio: 1 + Poisson(4) events per unit, each worth exp(unit effect + noise), sd 1 in all.
EVENTS_MEAN, EVENT_SD_UNIT, EVENT_SD_NOISE = 4.0, 0.8, 0.6
# binary: 5% of units hit with probability 0.6, the rest at a rate that makes the mean 0.05;
# the covariate is the number of the unit's 28 pre-period days with a hit.
BASE_RATE, HEAVY_SHARE, HEAVY_RATE, PRE_DAYS = 0.05, 0.05, 0.6, 28
LIGHT_RATE = (BASE_RATE - HEAVY_SHARE * HEAVY_RATE) / (1 - HEAVY_SHARE)

# Simulated data


@dataclass(frozen=True)
class Units:
    """One arm's per-unit values of one metric: R = sum(y) / sum(x), covariate (cy, cx)."""

    y: Array
    x: Array
    cy: Array
    cx: Array

    def moments(self) -> Moments:
        return Moments.of_units(self.y, self.x, self.cy, self.cx)

    @property
    def ratio(self) -> float:
        return float(self.y.sum() / self.x.sum())


Simulator = Callable[[np.random.Generator, int, float], Units]


def heavy_tailed_mean(rng: np.random.Generator, n: int, effect: float) -> Units:
    """y ~ lognormal(0, 1.5) times (1 + effect); the pre-period value shares the unit effect."""
    noise_sd = math.sqrt(LOG_SD**2 - LOG_SD_UNIT**2)
    unit = rng.normal(0.0, LOG_SD_UNIT, n)
    y = np.exp(unit + rng.normal(0.0, noise_sd, n)) * (1 + effect)
    cy = np.exp(unit + rng.normal(0.0, noise_sd, n))
    ones = np.ones(n)
    return Units(y, ones, cy, ones)


def event_sums(rng: np.random.Generator, unit: Array, counts: NDArray[np.int64]) -> Array:
    """Per unit, the sum of its `counts` event values exp(unit effect + event noise)."""
    noise = rng.normal(0.0, EVENT_SD_NOISE, int(counts.sum()))
    values = np.exp(np.repeat(unit, counts) + noise)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(values, starts)


def clustered_ratio(rng: np.random.Generator, n: int, effect: float) -> Units:
    """x = 1 + Poisson(4) events, y their values (lognormal(0, 1) each, correlated within the
    unit) times (1 + effect); the pre-period has fresh events of the same unit."""
    unit = rng.normal(0.0, EVENT_SD_UNIT, n)
    x = 1 + rng.poisson(EVENTS_MEAN, n)
    cx = 1 + rng.poisson(EVENTS_MEAN, n)
    y = event_sums(rng, unit, x) * (1 + effect)
    cy = event_sums(rng, unit, cx)
    return Units(y, x.astype(np.float64), cy, cx.astype(np.float64))


def rare_binary(rng: np.random.Generator, n: int, effect: float) -> Units:
    """y ~ Bernoulli(p_u (1 + effect)) with p_u a two-class mixture of mean 0.05; the covariate
    is Binomial(28, p_u), the unit's pre-period days with a hit."""
    rate = np.where(rng.random(n) < HEAVY_SHARE, HEAVY_RATE, LIGHT_RATE)
    y = (rng.random(n) < rate * (1 + effect)).astype(np.float64)
    cy = rng.binomial(PRE_DAYS, rate).astype(np.float64)
    ones = np.ones(n)
    return Units(y, ones, cy, ones)


SIMULATORS: dict[str, Simulator] = {
    "heavy_tailed_mean": heavy_tailed_mean,
    "ratio": clustered_ratio,
    "binary": rare_binary,
}


def population_ratio(metric: str, effect: float) -> float:
    """The population R = E[y] / E[x] of an arm with the given relative effect."""
    base = {
        "heavy_tailed_mean": math.exp(LOG_SD**2 / 2),
        "ratio": math.exp((EVENT_SD_UNIT**2 + EVENT_SD_NOISE**2) / 2),
        "binary": BASE_RATE,
    }[metric]
    return base * (1 + effect)


# Scenarios and experiments


@dataclass(frozen=True)
class Scenario:
    """A batch of simulated experiments, and which metrics and methods to evaluate."""

    name: str
    code: int  # part of every seed: scenarios never share draws
    experiments: int
    units: int  # per arm
    effect: float
    replicates: int
    seed: int
    metrics: tuple[str, ...] = METRICS
    methods: tuple[str, ...] = OUR_METHODS

    def true_lift(self, metric: str) -> float:
        return population_ratio(metric, self.effect) - population_ratio(metric, 0.0)


@dataclass(frozen=True)
class Experiment:
    """One simulated experiment: both arms of every metric, and its unit keys."""

    arms: dict[str, tuple[Units, Units]]  # metric -> (control, treatment)
    keys: NDArray[np.int64]  # the control's units, then the treatment's
    bootstrap_seed: int
    resample_rng: np.random.Generator  # for scipy's bootstrap


def simulate_experiment(scenario: Scenario, index: int) -> Experiment:
    """Draw experiment `index` of the scenario (deterministic in seed, scenario and index)."""
    rng = np.random.default_rng([scenario.seed, scenario.code, index])
    n, effect = scenario.units, scenario.effect
    arms = {
        m: (SIMULATORS[m](rng, n, 0.0), SIMULATORS[m](rng, n, effect)) for m in scenario.metrics
    }
    keys = rng.integers(-(2**62), 2**62, 2 * n, dtype=np.int64)
    resample_rng = np.random.default_rng([scenario.seed, scenario.code, index, 1])
    return Experiment(arms, keys, scenario.seed + 1_000_000 * scenario.code + index, resample_rng)


# Methods


def normal_methods(control: Units, treatment: Units) -> dict[str, Comparison]:
    """Delta method and CUPED (slope and covariate ratio from the two arms), both with
    Welch t intervals, as `jobs/experiments/analysis.py` computes them."""
    c, t = control.moments(), treatment.moments()
    cc, ct = cuped_arms(c, t, [c, t], "per_comparison")
    return {
        "delta": t_comparison(delta_estimate(c), delta_estimate(t), ALPHA),
        "cuped": t_comparison(cc, ct, ALPHA, CUPED_DF),
    }


def poisson_bootstrap(experiment: Experiment, replicates: int) -> dict[str, Comparison]:
    """Percentile intervals of every metric from one weight matrix (the Spark job's weights):
    per arm, the replicate sums of y and x of all metrics in a single matrix product."""
    weights = numpy_weights(experiment.bootstrap_seed, experiment.keys, replicates)
    w = weights.astype(np.float64)
    n = len(experiment.keys) // 2
    metrics = list(experiment.arms)
    ratios = []
    for arm, rows in enumerate((w[:n], w[n:])):
        units = [experiment.arms[m][arm] for m in metrics]
        columns = [c for u in units for c in (u.y, u.x)]
        sums = rows.T @ np.column_stack(columns)  # replicates x (2 per metric)
        ratios.append(
            {m: replicate_ratios(sums[:, 2 * i], sums[:, 2 * i + 1]) for i, m in enumerate(metrics)}
        )
    return {
        m: bootstrap_comparison(ratios[0][m], ratios[1][m], ALPHA, arms[0].ratio, arms[1].ratio)
        for m, arms in experiment.arms.items()
    }


def interval_only(
    control: Units, treatment: Units, low: float, high: float, p: float
) -> Comparison:
    """A comparison with an absolute-lift interval only (no relative interval)."""
    nan = float("nan")
    c, t = control.ratio, treatment.ratio
    return Comparison(c, t, t - c, float(low), float(high), t / c - 1, nan, nan, float(p))


def scipy_bootstrap(
    control: Units, treatment: Units, replicates: int, rng: np.random.Generator
) -> Comparison:
    """scipy's percentile bootstrap of the lift: units resampled within each arm (as indices,
    so that a unit's y and x stay together), the ratio of sums per resample."""

    def ratio(units: Units, index: NDArray[np.int64], axis: int) -> Array:
        return np.asarray(units.y[index].sum(axis=axis) / units.x[index].sum(axis=axis))

    def lift(ic: NDArray[np.int64], it: NDArray[np.int64], axis: int = -1) -> Array:
        return ratio(treatment, it, axis) - ratio(control, ic, axis)

    result = stats.bootstrap(
        (np.arange(len(control.y)), np.arange(len(treatment.y))),
        lift,
        n_resamples=replicates,
        vectorized=True,
        paired=False,
        confidence_level=1 - ALPHA,
        method="percentile",
        rng=rng,
    )
    ci = result.confidence_interval
    return interval_only(control, treatment, ci.low, ci.high, float("nan"))


def pseudo_values(units: Units) -> Array:
    """R + (y - R x) / mean(x): linearised per-unit values with mean exactly R (for a mean
    metric, y itself), so Welch's t on them estimates the ratio's lift."""
    r = units.ratio
    return np.asarray(r + (units.y - r * units.x) / units.x.mean())


def welch_t(control: Units, treatment: Units) -> Comparison:
    """Welch's t interval of the lift (on linearised values for a ratio metric)."""
    result = stats.ttest_ind(pseudo_values(treatment), pseudo_values(control), equal_var=False)
    ci = result.confidence_interval(1 - ALPHA)
    return interval_only(control, treatment, ci.low, ci.high, result.pvalue)


def analyse(scenario: Scenario, experiment: Experiment) -> dict[Key, Comparison]:
    """Every requested method on every metric of one experiment."""
    out: dict[Key, Comparison] = {}
    for metric, (control, treatment) in experiment.arms.items():
        for method, comparison in normal_methods(control, treatment).items():
            out[metric, method] = comparison
        if "scipy_bootstrap" in scenario.methods:
            rng = experiment.resample_rng
            out[metric, "scipy_bootstrap"] = scipy_bootstrap(
                control, treatment, scenario.replicates, rng
            )
        if "welch_t" in scenario.methods:
            out[metric, "welch_t"] = welch_t(control, treatment)
    if "bootstrap" in scenario.methods:
        for metric, comparison in poisson_bootstrap(experiment, scenario.replicates).items():
            out[metric, "bootstrap"] = comparison
    return {(m, method): out[m, method] for m in scenario.metrics for method in scenario.methods}


@dataclass
class Results:
    """Each experiment's comparison per (metric, method), in experiment order."""

    scenario: Scenario
    comparisons: dict[Key, list[Comparison]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, key: Key, comparison: Comparison) -> None:
        self.comparisons.setdefault(key, []).append(comparison)


def run_scenario(scenario: Scenario, progress: Callable[[str], None] | None = None) -> Results:
    """Simulate and analyse the scenario's experiments, reporting every 50."""
    results = Results(scenario)
    started = time.perf_counter()
    for index in range(scenario.experiments):
        for key, comparison in analyse(scenario, simulate_experiment(scenario, index)).items():
            results.add(key, comparison)
        done = index + 1
        if progress is not None and (done % 50 == 0 or done == scenario.experiments):
            elapsed = time.perf_counter() - started
            progress(f"{scenario.name}: {done}/{scenario.experiments} experiments, {elapsed:.0f} s")
    results.seconds = time.perf_counter() - started
    return results


# Summaries


def rejections(comparisons: Sequence[Comparison]) -> Bools:
    """p < alpha per experiment."""
    return np.array([c.p_value < ALPHA for c in comparisons])


def excludes_zero(comparisons: Sequence[Comparison]) -> Bools:
    return np.array([c.lift_lower > 0 or c.lift_upper < 0 for c in comparisons])


def covers(comparisons: Sequence[Comparison], truth: float) -> Bools:
    """The absolute-lift interval contains the true lift."""
    return np.array([c.lift_lower <= truth <= c.lift_upper for c in comparisons])


def covers_relative(comparisons: Sequence[Comparison], truth: float) -> Bools:
    return np.array([c.relative_lower <= truth <= c.relative_upper for c in comparisons])


def rate(hits: Bools) -> tuple[float, float]:
    """Share of hits and its Monte Carlo standard error."""
    p = float(hits.mean())
    return p, math.sqrt(p * (1 - p) / len(hits))


def paired_difference(ours: Bools, theirs: Bools) -> tuple[float, float]:
    """Mean of ours - theirs over the same experiments, and its Monte Carlo standard error."""
    d = ours.astype(np.float64) - theirs.astype(np.float64)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def mean_width(comparisons: Sequence[Comparison]) -> float:
    return float(np.mean([c.lift_upper - c.lift_lower for c in comparisons]))


def false_positive_rates(results: Results) -> dict[Key, tuple[float, float, float]]:
    """Per (metric, method): share of p < alpha, share of intervals excluding 0, MC SE."""
    out = {}
    for key, comparisons in results.comparisons.items():
        by_p, se = rate(rejections(comparisons))
        out[key] = (by_p, float(excludes_zero(comparisons).mean()), se)
    return out


def coverages(results: Results) -> dict[Key, tuple[float, float, float]]:
    """Per (metric, method): coverage of the true absolute lift, its MC SE, and coverage of
    the true relative lift (nan where the method has no relative interval)."""
    out = {}
    for (metric, method), comparisons in results.comparisons.items():
        cover, se = rate(covers(comparisons, results.scenario.true_lift(metric)))
        relative = float("nan")
        if not math.isnan(comparisons[0].relative_lower):
            relative = float(covers_relative(comparisons, results.scenario.effect).mean())
        out[metric, method] = (cover, se, relative)
    return out


def bootstrap_against_scipy(results: Results, metric: str) -> tuple[float, float]:
    """Coverage of our Poisson bootstrap minus scipy's, on the same draws, with its MC SE."""
    truth = results.scenario.true_lift(metric)
    ours = covers(results.comparisons[metric, "bootstrap"], truth)
    theirs = covers(results.comparisons[metric, "scipy_bootstrap"], truth)
    return paired_difference(ours, theirs)


# Reports


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def z_score(value: float, nominal: float, experiments: int) -> str:
    """The deviation from the nominal rate in units of its Monte Carlo SE under the nominal."""
    return f"{(value - nominal) / math.sqrt(nominal * (1 - nominal) / experiments):+.1f}"


def heading(results: Results) -> str:
    s = results.scenario
    replicates = f", {s.replicates} bootstrap replicates" if "bootstrap" in s.methods else ""
    return (
        f"### {s.name}: {s.experiments} experiments, {s.units:,} units per arm, "
        f"relative effect {s.effect:+.0%}{replicates} ({results.seconds:.0f} s)"
    )


def false_positive_report(results: Results) -> tuple[str, list[str]]:
    """The A/A table, and the cells outside the target."""
    rows, failures = [], []
    for (metric, method), (by_p, by_ci, se) in false_positive_rates(results).items():
        ok = within(by_p, FPR_TARGET) and within(by_ci, FPR_TARGET)
        z = z_score(by_p, ALPHA, results.scenario.experiments)
        rows.append([metric, method, pct(by_p), pct(by_ci), pct(se), z, "yes" if ok else "NO"])
        if not ok:
            failures.append(f"{metric}/{method} {pct(by_p)} (CI: {pct(by_ci)})")
    header = ["metric", "method", "p < 0.05", "CI excludes 0", "MC SE", "z vs 5%", "in 3.5-6.5%"]
    return f"{heading(results)}\n\n{markdown(header, rows)}", failures


def coverage_report(results: Results) -> tuple[str, list[str]]:
    """The A/B table (with interval width against the delta method's), and cells outside."""
    rows, failures = [], []
    for (metric, method), (cover, se, relative) in coverages(results).items():
        width = mean_width(results.comparisons[metric, method])
        delta = results.comparisons.get((metric, "delta"))
        relative_width = f"{width / mean_width(delta):.3f}" if delta else "n/a"
        ok = within(cover, COVERAGE_TARGET)
        truth = results.scenario.true_lift(metric)
        rows.append(
            [metric, method, f"{truth:.5g}", pct(cover), pct(se),
             z_score(cover, 1 - ALPHA, results.scenario.experiments), pct(relative),
             relative_width, "yes" if ok else "NO"]
        )  # fmt: skip
        if not ok:
            failures.append(f"{metric}/{method} {pct(cover)}")
    header = ["metric", "method", "true lift", "coverage", "MC SE", "z vs 95%",
              "relative coverage", "width / delta", "in 93-97%"]  # fmt: skip
    return f"{heading(results)}\n\n{markdown(header, rows)}", failures


def small_sample_report(results: Results) -> tuple[str, list[str]]:
    """Coverage of every method on the same draws, and our bootstrap against scipy's."""
    rows, failures = [], []
    cover = coverages(results)
    methods = results.scenario.methods
    for metric in results.scenario.metrics:
        diff, se = bootstrap_against_scipy(results, metric)
        ok = diff >= -2 * se
        cells = [pct(cover[metric, m][0]) for m in methods]
        rows.append(
            [metric, *cells, f"{100 * diff:+.1f} ± {100 * se:.1f} pp", "yes" if ok else "NO"]
        )
        if not ok:
            failures.append(f"{metric} {100 * diff:+.1f} ± {100 * se:.1f} pp")
    header = ["metric", *methods, "bootstrap - scipy (± MC SE)", "no worse"]
    se = math.sqrt(ALPHA * (1 - ALPHA) / results.scenario.experiments)
    note = (
        f"Coverage of the true absolute lift; MC SE of a 95% coverage: {pct(se)}. Welch's t "
        "on the ratio metric: on linearised per-unit values R + (y - R x) / mean(x)."
    )
    return f"{heading(results)}\n\n{markdown(header, rows)}\n\n{note}", failures


def verdict(name: str, failures: list[str]) -> str:
    return f"{'FAIL' if failures else 'PASS'}  {name}" + (
        f": {'; '.join(failures)}" if failures else ""
    )


# Command line

Report = Callable[[Results], tuple[str, list[str]]]
TARGETS: dict[str, tuple[Report, str]] = {
    "aa": (
        false_positive_report,
        "A/A false-positive rate (p < 0.05 and CI excludes 0) in [3.5%, 6.5%]",
    ),
    "ab": (coverage_report, "A/B coverage of the true absolute lift in [93%, 97%]"),
    "small": (
        small_sample_report,
        "Small samples: Poisson bootstrap coverage no worse than scipy's (diff >= -2 MC SE)",
    ),
}


def scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    """The requested scenarios (A/A, A/B, small-sample A/B), from the command line."""
    methods = tuple(m for m in OUR_METHODS if m in args.methods)
    base = Scenario(
        "A/A", 1, args.experiments, args.units, 0.0, args.replicates, args.seed, methods=methods
    )
    every = {
        "aa": base,
        "ab": replace(base, name="A/B", code=2, effect=EFFECT),
        "small": replace(base, name="Small A/B", code=3, effect=EFFECT, units=args.small_units,
                         methods=(*methods, *SCIPY_METHODS)),
    }  # fmt: skip
    return {name: every[name] for name in TARGETS if name in args.scenarios}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1200, help="per scenario (>= 400)")
    parser.add_argument("--units", type=int, default=5000, help="per arm, A/A and A/B")
    parser.add_argument("--small-units", type=int, default=500, help="per arm, small samples")
    parser.add_argument("--replicates", type=int, default=500, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--scenarios", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--methods", nargs="+", choices=OUR_METHODS, default=list(OUR_METHODS))
    parser.add_argument("--quick", action="store_true", help="100 experiments, small sizes")
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # smaller defaults, flags win
        parser.set_defaults(experiments=100, units=1000, small_units=200, replicates=100)
    args = parser.parse_args(argv)
    if "small" in args.scenarios and "bootstrap" not in args.methods:
        parser.error("the small-sample scenario compares the bootstrap: keep it in --methods")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    reports = {
        name: TARGETS[name][0](run_scenario(scenario, progress))
        for name, scenario in scenarios(args).items()
    }
    print("\n\n".join(table for table, _ in reports.values()))
    print(f"\nTotal {time.perf_counter() - started:.0f} s\n")
    for name, (_, failures) in reports.items():
        print(verdict(TARGETS[name][1], failures))
    return 1 if any(failures for _, failures in reports.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

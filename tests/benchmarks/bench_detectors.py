"""Benchmark: recall and false alarms of udfs/anomaly_detectors.py on simulated series.

    .venv/bin/python -m tests.benchmarks.bench_detectors [--series 2000] [--seed N] [--no-sweep]

Daily safety-metric series of DAYS days, of three types: rates (events / views, binomial
from a volume of 1e3 to 1e7 views a day), counts (Poisson, 0.5 to 1e5 a day) and continuous
means (normal noise). Each has a weekly profile of random strength (up to about +-40%, a
weekend dip or rise), extra day-to-day variation (lognormal, 2% to 15%), a slow benign trend
(up to +-30% over the series, plus a slow wave of up to 3%) and, in 30% of the series,
missing days (dropped rows or NaN values, and sometimes a 2 to 4 day outage). Incidents are
planted in 60% of the series, from day FIRST_INCIDENT on: spikes (1-2 days, +30% to +200%),
level shifts (persisting, +30% to +150%) and gradual drifts (linear ramps over 7-21 days to
+30% to +150%, then persisting); a quarter of them go down instead (-25% to -70%). The other
40% are clean. Rates pass their volume to the detector and counts are declared as such
(`counts=True`), as the metric catalog knows a metric's type; the config is otherwise the
default.

An incident is found when any point of its window is alerted: a spike's days, a level
shift's first 3 days (its start and 2 days after), a drift's ramp. Its effect in noise units
is the size of the change over the standard deviation of one point (Poisson or binomial
plus the extra variation) at its start; the targets are read on the incidents of at least
DETECTABLE (5) noise units, which a point detector can find in principle at this false alarm
rate. False alarms are alarm episodes (consecutive alarm days count once) on the clean
series' monitored days (after the first 14), per 50 series-weeks. Every series is drawn
from a generator seeded by (seed, series), so a run is reproducible. The sweep reruns the
same series with one setting of the default config changed at a time, which is how the
defaults were chosen. Progress goes to stderr; tables and one PASS/FAIL line per target to
stdout (exit status 1 if a target fails).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from udfs.anomaly_detectors import detect_series
from udfs.detector_settings import DetectorConfig

Array = NDArray[np.float64]
Ints = NDArray[np.int64]

DAYS = 112
FIRST_INCIDENT = 49  # incidents start after 7 weeks of history
MONITORED_FROM = 14  # clean series' days counted for false alarms
DETECTABLE = 5.0  # noise units
KINDS = ("spike", "level_shift", "drift")
KIND_SHARE = (0.2, 0.2, 0.2)  # the rest is clean
METRICS = ("rate", "count", "continuous")
EFFECT_BINS = (0.0, 3.0, 5.0, 10.0, 20.0, np.inf)
RECALL_TARGET = {"spike": 0.9, "level_shift": 0.9, "drift": 0.7}
FALSE_ALARM_TARGET = 1.0  # episodes per 50 series-weeks
EPOCH = np.datetime64("2026-01-05", "D")


@dataclass(frozen=True)
class Incident:
    """A planted incident: days [start, start + duration) are its window (see module)."""

    kind: str
    start: int
    duration: int
    factor: float  # the multiplier at its peak (its end for a drift)
    effect: float  # |factor - 1| x level / noise sd at its start

    @property
    def window(self) -> range:
        if self.kind == "level_shift":
            return range(self.start, self.start + 3)
        return range(self.start, self.start + self.duration)


@dataclass(frozen=True)
class Series:
    """One simulated series: its observed days (NaN values included) and volume."""

    metric: str
    days: Ints
    values: Array
    volume: Array | None
    incident: Incident | None


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def weekly_profile(rng: np.random.Generator, amplitude: float) -> Array:
    """A multiplicative weekly profile (mean 1): a two-day weekend dip or rise, plus jitter."""
    pattern = rng.normal(0.0, amplitude / 4, 7)
    weekend = rng.integers(7)
    pattern[[weekend, (weekend + 1) % 7]] += amplitude * (-1 if rng.random() < 0.7 else 1)
    profile = np.exp(pattern)
    return np.asarray(profile / profile.mean(), dtype=np.float64)


def benign_path(rng: np.random.Generator) -> Array:
    """Weekly profile x slow trend x slow wave, over DAYS days."""
    t = np.arange(DAYS, dtype=np.float64)
    profile = weekly_profile(rng, rng.uniform(0.0, 0.4))
    trend = np.exp(rng.uniform(-0.3, 0.3) * t / DAYS)
    wave = 1 + rng.uniform(0, 0.03) * np.sin(
        2 * np.pi * t / rng.uniform(30, 90) + rng.uniform(0, 7)
    )
    return np.asarray(profile[t.astype(int) % 7] * trend * wave, dtype=np.float64)


def plant(rng: np.random.Generator, kind: str) -> tuple[int, int, float, Array]:
    """(start, duration, factor, multiplier per day) of an incident of the kind."""
    up = rng.random() < 0.75
    if kind == "spike":
        duration, top = int(rng.integers(1, 3)), 2.0
    elif kind == "level_shift":
        duration, top = 10, 1.5
    else:
        duration, top = int(rng.integers(7, 22)), 1.5
    factor = 1 + rng.uniform(0.3, top) if up else 1 - rng.uniform(0.25, 0.7)
    start = int(rng.integers(FIRST_INCIDENT, DAYS - duration))
    multiplier = np.ones(DAYS)
    if kind == "spike":
        multiplier[start : start + duration] = factor
    elif kind == "level_shift":
        multiplier[start:] = factor
    else:
        ramp = np.arange(1, duration + 1) / duration
        multiplier[start : start + duration] = 1 + (factor - 1) * ramp
        multiplier[start + duration :] = factor
    return start, duration, factor, multiplier


def missing_days(rng: np.random.Generator, keep: range | None) -> NDArray[np.bool_]:
    """Which days are missing: none in 70% of series, else 4% of days and maybe an outage."""
    missing = np.zeros(DAYS, dtype=bool)
    if rng.random() < 0.3:
        missing |= rng.random(DAYS) < 0.04
        if rng.random() < 0.33:
            start = int(rng.integers(MONITORED_FROM, DAYS - 4))
            missing[start : start + int(rng.integers(2, 5))] = True
    if keep is not None:
        missing[keep.start : keep.stop] = False
    return missing


def simulate(seed: int, index: int) -> Series:
    """Series `index` of the run (deterministic in seed and index)."""
    rng = np.random.default_rng([seed, index])
    metric = METRICS[int(rng.integers(len(METRICS)))]
    draw = rng.random()
    shares = np.cumsum(KIND_SHARE)
    kind = KINDS[int(np.searchsorted(shares, draw, side="right"))] if draw < shares[-1] else None
    path = benign_path(rng)
    extra = log_uniform(rng, 0.02, 0.15)  # extra day-to-day variation
    wobble = np.exp(rng.normal(0.0, extra, DAYS) - extra**2 / 2)
    start, duration, factor, multiplier = (0, 0, 1.0, np.ones(DAYS))
    if kind is not None:
        start, duration, factor, multiplier = plant(rng, kind)

    volume: Array | None = None
    if metric == "rate":
        views = log_uniform(rng, 1e3, 1e7) * weekly_profile(rng, rng.uniform(0, 0.3))
        vol = np.round(views[np.arange(DAYS) % 7] * np.exp(rng.normal(0, 0.05, DAYS)))
        rate = log_uniform(rng, 1e-4, 5e-2) * path
        p = np.clip(rate * multiplier * wobble, 0.0, 0.9)
        values = rng.binomial(vol.astype(np.int64), p) / vol
        volume = vol
        sd = np.sqrt(rate[start] / vol[start] + (extra * rate[start]) ** 2)
        level = rate[start]
    elif metric == "count":
        mean = log_uniform(rng, 0.5, 1e5) * path
        values = rng.poisson(mean * multiplier * wobble).astype(np.float64)
        sd, level = np.sqrt(mean[start] + (extra * mean[start]) ** 2), mean[start]
    else:
        mean = log_uniform(rng, 1e-2, 1e3) * path
        values = mean * multiplier * (1 + extra * rng.standard_normal(DAYS))
        sd, level = extra * mean[start], mean[start]

    incident = None
    if kind is not None:
        effect = float(abs(factor - 1) * level / sd)
        incident = Incident(kind, start, duration, factor, effect)
    missing = missing_days(rng, None if incident is None else incident.window)
    days = np.arange(DAYS, dtype=np.int64)
    if rng.random() < 0.5:  # dropped rows
        keep = ~missing
        days, values = days[keep], values[keep]
        volume = None if volume is None else volume[keep]
    else:  # NaN values
        values = np.where(missing, np.nan, values)
    return Series(metric, days, np.asarray(values, dtype=np.float64), volume, incident)


# Evaluation


@dataclass
class Outcome:
    """One config's results over all series."""

    found: dict[str, list[tuple[float, bool, str]]]  # kind -> (effect, found, detector)
    episodes: dict[str, int]  # metric or detector -> false alarm episodes on clean series
    clean_weeks: dict[str, float]  # metric -> monitored series-weeks
    seconds: list[float]


def config_for(series: Series, config: DetectorConfig) -> DetectorConfig:
    """Counts are declared as such (the catalog knows a metric's type)."""
    return replace(config, counts=True) if series.metric == "count" else config


def evaluate(all_series: Sequence[Series], config: DetectorConfig) -> Outcome:
    outcome = Outcome({k: [] for k in KINDS}, {}, {}, [])
    for s in all_series:
        stamps = EPOCH + s.days.astype("timedelta64[D]")
        began = time.perf_counter()
        out = detect_series(stamps, s.values, s.volume, config=config_for(s, config))
        outcome.seconds.append(time.perf_counter() - began)
        day = ((out["ts"].to_numpy() - EPOCH) // np.timedelta64(1, "D")).astype(np.int64)
        alarm = out["is_anomaly"].to_numpy(dtype=bool)
        detector = out["detector"].to_numpy()
        if s.incident is None:
            count_false_alarms(outcome, s.metric, day[alarm], detector[alarm])
            continue
        window = s.incident.window
        hit = alarm & (day >= window.start) & (day < window.stop)
        by = str(detector[hit][0]) if hit.any() else ""
        outcome.found[s.incident.kind].append((s.incident.effect, bool(hit.any()), by))
    return outcome


def count_false_alarms(
    outcome: Outcome, metric: str, days: Ints, detectors: Sequence[object]
) -> None:
    """Add a clean series' alarm episodes (by metric and by the detector that began each)."""
    monitored = days >= MONITORED_FROM
    days = days[monitored]
    starts = np.ones(days.size, dtype=bool)
    starts[1:] = np.diff(days) > 1
    weeks = (DAYS - MONITORED_FROM) / 7
    outcome.clean_weeks[metric] = outcome.clean_weeks.get(metric, 0.0) + weeks
    outcome.episodes[metric] = outcome.episodes.get(metric, 0) + int(starts.sum())
    for name in np.asarray(detectors, dtype=object)[monitored][starts]:
        outcome.episodes[str(name)] = outcome.episodes.get(str(name), 0) + 1


def recall(rows: Sequence[tuple[float, bool, str]], low: float, high: float) -> tuple[float, int]:
    """Share found among incidents with an effect in [low, high), and their number."""
    chosen = [found for effect, found, _ in rows if low <= effect < high]
    return (float(np.mean(chosen)) if chosen else float("nan")), len(chosen)


def false_alarm_rate(outcome: Outcome) -> float:
    weeks = sum(outcome.clean_weeks.values())
    episodes = sum(outcome.episodes.get(m, 0) for m in METRICS)
    return 50 * episodes / weeks if weeks else float("nan")


def summary(outcome: Outcome) -> dict[str, float]:
    """The targets' figures: recall on detectable incidents per kind, false alarms."""
    figures = {k: recall(outcome.found[k], DETECTABLE, np.inf)[0] for k in KINDS}
    figures["false_alarms"] = false_alarm_rate(outcome)
    return figures


# Report


def print_recall(outcome: Outcome) -> None:
    print("\n## Recall by incident kind and effect size (noise units)\n")
    bins = list(itertools.pairwise(EFFECT_BINS))
    names = [f"[{lo:g}, {hi:g})" for lo, hi in bins]
    print(f"| kind | all | >= {DETECTABLE:g} (target) | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(bins))
    for kind in KINDS:
        rows = outcome.found[kind]
        cells = [recall(rows, 0.0, np.inf), recall(rows, DETECTABLE, np.inf)]
        cells += [recall(rows, lo, hi) for lo, hi in bins]
        text = " | ".join(f"{r:.3f} (n={n})" for r, n in cells)
        print(f"| {kind} | {text} |")
    print("\nIncidents found (effect >= 5) by the detector that alerted first in the window:\n")
    for kind in KINDS:
        found = [by for effect, hit, by in outcome.found[kind] if hit and effect >= DETECTABLE]
        shares = {name: found.count(name) for name in sorted(set(found))}
        print(f"- {kind}: {shares}")


def print_false_alarms(outcome: Outcome) -> None:
    print("\n## False alarm episodes on clean series\n")
    print("| metric | series-weeks | episodes | per 50 series-weeks |")
    print("|---|---:|---:|---:|")
    for metric in METRICS:
        weeks, episodes = outcome.clean_weeks.get(metric, 0.0), outcome.episodes.get(metric, 0)
        rate = 50 * episodes / weeks if weeks else float("nan")
        print(f"| {metric} | {weeks:.0f} | {episodes} | {rate:.3f} |")
    weeks = sum(outcome.clean_weeks.values())
    episodes = sum(outcome.episodes.get(m, 0) for m in METRICS)
    print(f"| all | {weeks:.0f} | {episodes} | {false_alarm_rate(outcome):.3f} |")


def time_90_days(all_series: Sequence[Series], count: int = 500) -> Array:
    """Milliseconds per call on the first 90 days of the first `count` series."""
    seconds = []
    for s in all_series[:count]:
        keep = s.days < 90
        volume = None if s.volume is None else s.volume[keep]
        stamps = EPOCH + s.days[keep].astype("timedelta64[D]")
        config = config_for(s, DetectorConfig())
        began = time.perf_counter()
        detect_series(stamps, s.values[keep], volume, config=config)
        seconds.append(time.perf_counter() - began)
    return 1e3 * np.asarray(seconds)


def print_timing(outcome: Outcome, all_series: Sequence[Series]) -> None:
    print("\n## Time per series (detect_series, one call per series, one core)\n")
    for label, ms in (
        (f"{DAYS}-day series (the run above)", 1e3 * np.asarray(outcome.seconds)),
        ("90-day series", time_90_days(all_series)),
    ):
        print(
            f"- {label}: mean {ms.mean():.2f} ms, median {np.median(ms):.2f} ms, "
            f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms ({ms.size} series)"
        )


SWEEP: tuple[tuple[str, dict[str, object]], ...] = (
    ("sensitivity 3.5", {"sensitivity": 3.5}),
    ("sensitivity 4.5", {"sensitivity": 4.5}),
    ("sensitivity 5", {"sensitivity": 5.0}),
    ("season_weeks 4", {"season_weeks": 4}),
    ("season_weeks 8", {"season_weeks": 8}),
    ("rebaseline 2", {"rebaseline": 2}),
    ("rebaseline 3", {"rebaseline": 3}),
    ("season_offset 0.02", {"season_offset": 0.02}),
    ("season_offset 0.5", {"season_offset": 0.5}),
)


def print_sweep(all_series: Sequence[Series], default: dict[str, float]) -> None:
    print("\n## Sweep: the default config with one setting changed (same series)\n")
    print("| config | spike | level_shift | drift | false alarms / 50 series-weeks |")
    print("|---|---:|---:|---:|---:|")

    def row(name: str, f: dict[str, float]) -> None:
        cells = " | ".join(f"{f[k]:.3f}" for k in (*KINDS, "false_alarms"))
        print(f"| {name} | {cells} |")

    row("default", default)
    for name, change in SWEEP:
        print(f"sweep: {name}", file=sys.stderr)
        row(name, summary(evaluate(all_series, replace(DetectorConfig(), **change))))  # type: ignore[arg-type]


def verdicts(figures: dict[str, float]) -> bool:
    """Print one PASS/FAIL line per target; True when all pass."""
    ok = True
    print()
    for kind, target in RECALL_TARGET.items():
        good = figures[kind] >= target
        ok &= good
        print(
            f"{'PASS' if good else 'FAIL'} recall {kind} (effect >= {DETECTABLE:g}) "
            f"{figures[kind]:.3f} >= {target}"
        )
    good = figures["false_alarms"] <= FALSE_ALARM_TARGET
    ok &= good
    print(
        f"{'PASS' if good else 'FAIL'} false alarms {figures['false_alarms']:.3f} "
        f"<= {FALSE_ALARM_TARGET} per 50 series-weeks"
    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--no-sweep", action="store_true", help="skip the config sweep")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    all_series = [simulate(args.seed, i) for i in range(args.series)]
    print(
        f"simulated {len(all_series)} series in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    outcome = evaluate(all_series, DetectorConfig())
    figures = summary(outcome)
    print(f"# Detector benchmark: {args.series} series of {DAYS} days, seed {args.seed}")
    print(f"\nDefault config: {DetectorConfig()}")
    print_recall(outcome)
    print_false_alarms(outcome)
    print_timing(outcome, all_series)
    if not args.no_sweep:
        print_sweep(all_series, figures)
    ok = verdicts(figures)
    print(f"\ntotal {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

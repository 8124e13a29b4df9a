"""Benchmark: monitoring against the incidents planted in the generated dataset, over seeds.

    .venv/bin/python -m tests.benchmarks.bench_monitoring_generated \
        [--seeds 10] [--scale 0.5] [--first-seed 1] [--keep DIR [--monitor-only]]

For each seed: generate 56 days (`jobs.generate`, the incident magnitudes drawn from a
generator seeded by the seed), compute a few metrics for every day (one `run_metrics`),
score days 28..55 (one `run_monitoring`), read `metric_anomalies` (daily grain) and
`anomaly_root_causes` back, and score them against `_ground_truth.json`:

- recall per incident kind: found if, inside its window (spike: its days; level shift: its
  first 3 days; drift: its days), the planted slice is flagged on some day, or a coarser
  ancestor slice of the same metric is flagged with the planted slice among its top-3 root
  causes. The drift is found on time_to_action_p50 or _p90.
- root cause: on the first day in the window with a flagged ancestor-or-self, the coarsest
  flagged one (ties: largest |score|) is the planted slice, or its rank-1 root cause is;
  for the drift this must hold for every one of its metrics flagged that day.
- false alarms: episodes (runs of consecutive flagged days of one series) on clean
  series-days, per 50 clean series-weeks. A series-day is not clean if its metric is an
  incident's and its slice is the planted one, an ancestor or a descendant, from the start
  to the end (+7 days for a spike, the end of data for a level shift or drift). Series-days
  count only when their status is "ok" (others can never alert).

With `--keep DIR` each seed's warehouse stays in DIR/seed-N; `--monitor-only` then reuses
those warehouses (their generated data and metric_values) and runs only the monitoring and
the evaluation again, so that a detector change is judged in seconds per seed.

Progress goes to stderr; Markdown tables, the missed incidents, the false alarm episodes
and one PASS/FAIL line per target go to stdout (exit status 1 if a target fails).
Results belong in docs/monitoring-evaluation.md together with the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import load_config
from jobs.core.delta import DeltaSink
from jobs.core.logs import configure_logging
from jobs.core.session import build_session
from jobs.generate.job import GROUND_TRUTH_FILE, generate, raw_dir
from jobs.generate.params import GeneratorParams
from jobs.metrics.definitions import Catalog
from jobs.metrics.job import run_metrics
from jobs.metrics.loader import load_catalog
from jobs.metrics.planner import Plan, compile_plan
from jobs.monitoring.job import ANOMALY_ROOT_CAUSES, METRIC_ANOMALIES, run_monitoring
from jobs.monitoring.root_cause import parse_slice
from tests.conftest import REPO_ROOT

DAYS = 56
FIRST_SCORED_DAY = 28
METRICS = (
    "violative_view_rate",
    "suspicious_login_rate",
    "time_to_action_p50",
    "time_to_action_p90",
    "account_takeovers_per_1m_logins",
    "views",
)
#: Truth names -> catalog names (the drift is planted on the raw minutes, read as quantiles).
TRUTH_METRICS = {"time_to_action_minutes": ("time_to_action_p50", "time_to_action_p90")}
TRUTH_DIMENSIONS = {"source": "detection_source"}
#: Days of a window that count for recall, from the incident's start (None: to its end).
RECALL_DAYS: dict[str, int | None] = {"spike": None, "level_shift": 3, "drift": None}
SPIKE_AFTERMATH_DAYS = 7
TOP_CAUSES = 3
KINDS = ("spike", "level_shift", "drift")
RECALL_TARGET = {"spike": 0.9, "level_shift": 0.9, "drift": 0.7}
FALSE_ALARM_TARGET = 1.0  # episodes per 50 clean series-weeks, at most
ROOT_CAUSE_TARGET = 0.9
#: Magnitude ranges drawn per seed (uniform): modest variations around the defaults.
MAGNITUDES = {
    "spike_multiplier": (4.0, 6.0),
    "login_shift": (0.45, 0.75),
    "drift_multiplier": (2.5, 3.5),
}

Slice = frozenset[tuple[str, str]]


def slice_of(slice_id: str) -> Slice:
    """`country=BR|surface=shorts_feed` -> its (dimension, value) pairs, order-free."""
    return frozenset(parse_slice(slice_id).items())


def is_ancestor(coarse: Slice, fine: Slice) -> bool:
    """Whether `coarse` strictly contains `fine` (fewer dimensions, same values)."""
    return coarse < fine


def compatible(a: Slice, b: Slice) -> bool:
    """Whether two slices can share rows: no dimension with different values."""
    da, db = dict(a), dict(b)
    return all(db.get(k, v) == v for k, v in da.items())


@dataclass(frozen=True)
class Incident:
    """A planted incident in catalog terms."""

    seed: int
    incident_id: str
    kind: str
    metrics: tuple[str, ...]
    slice: Slice
    slice_id: str
    start: dt.date
    end: dt.date  # inclusive; the last day of data when the truth says null
    magnitude: float

    def recall_days(self) -> list[dt.date]:
        length = RECALL_DAYS[self.kind]
        last = self.end if length is None else self.start + dt.timedelta(days=length - 1)
        return dates(self.start, min(last, self.end))

    def dirty_until(self, last_day: dt.date) -> dt.date:
        """The last day on which its slice family is not clean."""
        if self.kind == "spike":
            return self.end + dt.timedelta(days=SPIKE_AFTERMATH_DAYS)
        return last_day

    def touches(self, metric: str, slice_: Slice) -> bool:
        """The planted slice, an ancestor or a descendant, of one of its metrics."""
        if metric not in self.metrics:
            return False
        return slice_ == self.slice or slice_ < self.slice or slice_ > self.slice


@dataclass
class Verdict:
    """How monitoring did on one incident."""

    incident: Incident
    found: bool = False
    found_on: dt.date | None = None
    found_via: str = ""  # the flag that found it, with the planted slice's own cell
    first_flag: dt.date | None = None
    root_cause_ok: bool = False
    alert: str = ""  # the alert(s) of the first flagged day, as text
    evidence: str = ""  # for a miss: what the planted slice and its ancestors did
    signals: list[Signal] = field(default_factory=list)


@dataclass(frozen=True)
class Signal:
    """The planted slice of one incident metric: its volume before the incident and its
    strongest scored day inside the recall window."""

    metric: str
    volume: float  # mean numerator (quantiles: units) per unsuppressed day, 14 days before
    before_ok: int  # days with status ok among the 14 before (or fewer scored days)
    before_days: int
    window_ok: int  # days with status ok in the recall window
    window_days: int
    best: str  # the best-scored window day, as text


@dataclass
class Episode:
    """A run of consecutive flagged clean days of one series."""

    seed: int
    metric: str
    slice_id: str
    first: dt.date
    days: int
    value: float
    expected: float
    score: float
    detector: str
    note: str = ""


@dataclass
class SeedResult:
    seed: int
    magnitudes: dict[str, float]
    verdicts: list[Verdict]
    episodes: list[Episode]
    clean_days: dict[str, int]  # metric -> clean "ok" series-days
    seconds: dict[str, float] = field(default_factory=dict)


def dates(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def params_for(seed: int, scale: float) -> GeneratorParams:
    """The seed's generator parameters, incident magnitudes drawn from a seeded RNG."""
    rng = np.random.default_rng([seed, 20_260_901])
    drawn = {name: round(float(rng.uniform(*bounds)), 3) for name, bounds in MAGNITUDES.items()}
    return GeneratorParams(
        seed=seed,
        scale=scale,
        days=DAYS,
        spike_multiplier=drawn["spike_multiplier"],
        login_shift=drawn["login_shift"],
        drift_multiplier=drawn["drift_multiplier"],
    )


def planted(truth: dict[str, Any], seed: int) -> list[Incident]:
    """The truth file's incidents with catalog metric and dimension names."""
    last = dt.date.fromisoformat(truth["window"]["end_date"])
    out = []
    for inc in truth["incidents"]:
        pairs = {TRUTH_DIMENSIONS.get(k, k): str(v) for k, v in inc["slice"].items()}
        end = inc["end_date"]
        out.append(
            Incident(
                seed=seed,
                incident_id=inc["incident_id"],
                kind=inc["kind"],
                metrics=TRUTH_METRICS.get(inc["metric"], (inc["metric"],)),
                slice=frozenset(pairs.items()),
                slice_id="|".join(f"{k}={v}" for k, v in pairs.items()),
                start=dt.date.fromisoformat(inc["start_date"]),
                end=last if end is None else dt.date.fromisoformat(end),
                magnitude=float(inc["magnitude"]),
            )
        )
    return out


# --- evaluation: pure functions of the truth and the two tables (pandas) -------------------


class Tables:
    """Daily scored cells and root causes, indexed for look-ups."""

    def __init__(self, cells: pd.DataFrame, causes: pd.DataFrame) -> None:
        cells = cells.assign(is_anomaly=cells["is_anomaly"].fillna(False).astype(bool))
        self.cells = cells
        self.flagged = cells[cells["is_anomaly"]]
        self.by_cell: dict[tuple[str, dt.date], pd.DataFrame] = {
            (str(m), d): g for (m, d), g in self.flagged.groupby(["metric", "date"])
        }
        self.causes: dict[tuple[str, dt.date, str], list[str]] = {}
        for (m, d, p), g in causes.groupby(["metric", "date", "parent_slice_id"]):
            self.causes[(str(m), d, str(p))] = [str(s) for s in g.sort_values("rank")["slice_id"]]

    def flags(self, metric: str, day: dt.date) -> pd.DataFrame:
        return self.by_cell.get((metric, day), self.flagged.iloc[:0])

    def top_causes(self, metric: str, day: dt.date, parent: str) -> list[str]:
        return self.causes.get((metric, day, parent), [])


def _describe(row: Any) -> str:
    return (
        f"{row['slice_id']} {row['value']:.4g} vs {row['expected']:.4g} "
        f"(score {row['score']:+.1f}, {row['detector']})"
    )


def judge(inc: Incident, tables: Tables) -> Verdict:
    """Recall and root cause of one incident (see the module docstring)."""
    verdict = Verdict(inc)
    for day in inc.recall_days():
        alerts: list[str] = []
        all_right = True
        for metric in inc.metrics:
            flags = tables.flags(metric, day)
            # The planted slice first, then ancestors finest first: a stable order.
            family = sorted(
                (r for _, r in flags.iterrows() if slice_of(r["slice_id"]) <= inc.slice),
                key=lambda r: (-len(slice_of(r["slice_id"])), str(r["slice_id"])),
            )
            for row in family:
                if verdict.found:
                    break
                top = [slice_of(s) for s in tables.top_causes(metric, day, row["slice_id"])]
                if slice_of(row["slice_id"]) == inc.slice:
                    verdict.found_via = f"{metric}: planted slice flagged"
                elif inc.slice in top[:TOP_CAUSES]:
                    verdict.found_via = (
                        f"{metric}: {row['slice_id']} flagged, planted slice root cause "
                        f"#{top.index(inc.slice) + 1}; {planted_cell(tables, metric, day, inc)}"
                    )
                else:
                    continue
                verdict.found, verdict.found_on = True, day
            if family and verdict.first_flag is None:
                coarsest = min(
                    family, key=lambda r: (len(slice_of(r["slice_id"])), -abs(r["score"]))
                )
                named = tables.top_causes(metric, day, coarsest["slice_id"])
                is_planted = slice_of(coarsest["slice_id"]) == inc.slice
                all_right &= is_planted or (bool(named) and slice_of(named[0]) == inc.slice)
                cause = f" -> top cause {named[0] if named else 'none'}" if not is_planted else ""
                alerts.append(f"{metric}: {_describe(coarsest)}{cause}")
        if alerts and verdict.first_flag is None:
            verdict.first_flag, verdict.root_cause_ok = day, all_right
            verdict.alert = f"{day}: " + "; ".join(alerts)
    if not verdict.found:
        verdict.root_cause_ok = False
        verdict.evidence = miss_evidence(inc, tables)
    verdict.signals = [signal(inc, metric, tables) for metric in inc.metrics]
    return verdict


def signal(inc: Incident, metric: str, tables: Tables) -> Signal:
    """How strong the planted slice's signal was (see `Signal`)."""
    cells = tables.cells
    mine = cells[(cells["metric"] == metric) & (cells["slice_id"].map(slice_of) == inc.slice)]
    before_days = dates(inc.start - dt.timedelta(days=14), inc.start - dt.timedelta(days=1))
    before = mine[mine["date"].isin(before_days)]
    window = mine[mine["date"].isin(inc.recall_days())]
    volume = before["numerator"].where(before["numerator"].notna(), before["units"])
    scored = window[window["status"] == "ok"]
    best = "no scorable day"
    if not scored.empty:
        top = scored.loc[scored["score"].idxmax()]
        best = f"{top['date']}: {_describe(top)}{_events(top)}"
    return Signal(
        metric=metric,
        volume=float(volume.mean()) if volume.notna().any() else math.nan,
        before_ok=int((before["status"] == "ok").sum()),
        before_days=int(before["date"].nunique()),
        window_ok=len(scored),
        window_days=len(inc.recall_days()),
        best=best,
    )


def _events(row: Any) -> str:
    """`, 7 events of 239` for a ratio cell; `, 10 units` otherwise."""
    if pd.notna(row["numerator"]) and pd.notna(row["denominator"]):
        return f", {row['numerator']:.0f} events of {row['denominator']:.0f}"
    return f", {row['units']:.0f} units" if pd.notna(row["units"]) else ""


def planted_cell(tables: Tables, metric: str, day: dt.date, inc: Incident) -> str:
    """The planted slice's own cell on a day: value, score and status."""
    cells = tables.cells
    row = cells[
        (cells["metric"] == metric)
        & (cells["date"] == day)
        & (cells["slice_id"].map(slice_of) == inc.slice)
    ]
    if row.empty:
        return "its cell: not scored"
    r = row.iloc[0]
    return (
        f"its cell {r['value']:.4g} vs {r['expected']:.4g}, score {r['score']:+.1f}, {r['status']}"
    )


def miss_evidence(inc: Incident, tables: Tables) -> str:
    """For a missed incident: the planted slice's strongest day in the window, and what its
    flagged ancestors (if any) named as root causes."""
    days = inc.recall_days()
    parts = []
    for metric in inc.metrics:
        cells = tables.cells[
            (tables.cells["metric"] == metric)
            & (tables.cells["slice_id"].map(slice_of) == inc.slice)
            & tables.cells["date"].isin(days)
        ]
        if cells.empty:
            parts.append(f"{metric}: planted slice not scored")
            continue
        best = cells.loc[cells["score"].fillna(-math.inf).idxmax()]
        statuses = ",".join(sorted(set(cells["status"].astype(str))))
        parts.append(f"{metric}: best day {best['date']} {_describe(best)}, status {statuses}")
        for day in days:
            for _, row in tables.flags(metric, day).iterrows():
                if is_ancestor(slice_of(row["slice_id"]), inc.slice):
                    top = tables.top_causes(metric, day, row["slice_id"])[:TOP_CAUSES]
                    parts.append(
                        f"{metric} {day}: ancestor {_describe(row)} flagged, "
                        f"top causes {top or 'none'}"
                    )
    return "; ".join(parts)


def false_alarms(
    seed: int, incidents: Sequence[Incident], tables: Tables, last_day: dt.date
) -> tuple[list[Episode], dict[str, int]]:
    """Alarm episodes on clean series-days, and clean "ok" series-days per metric."""
    episodes: list[Episode] = []
    clean_days: dict[str, int] = {}
    for (metric, slice_id), series in tables.cells.groupby(["metric", "slice_id"], sort=True):
        metric, slice_id = str(metric), str(slice_id)
        mine = slice_of(slice_id)
        dirty = [(i.start, i.dirty_until(last_day)) for i in incidents if i.touches(metric, mine)]
        clean = series[
            [not any(a <= d <= b for a, b in dirty) for d in series["date"]]
        ].sort_values("date")
        clean_days[metric] = clean_days.get(metric, 0) + int((clean["status"] == "ok").sum())
        run: list[Any] = []
        for _, row in clean[clean["is_anomaly"].astype(bool)].iterrows():
            if run and (row["date"] - run[-1]["date"]).days != 1:
                episodes.append(_episode(seed, metric, slice_id, run, incidents, last_day))
                run = []
            run.append(row)
        if run:
            episodes.append(_episode(seed, metric, slice_id, run, incidents, last_day))
    return episodes, clean_days


def _episode(
    seed: int,
    metric: str,
    slice_id: str,
    run: list[Any],
    incidents: Sequence[Incident],
    last_day: dt.date,
) -> Episode:
    worst = max(run, key=lambda r: abs(r["score"]))
    first = run[0]["date"]
    overlaps = [
        i.kind
        for i in incidents
        if metric in i.metrics
        and compatible(slice_of(slice_id), i.slice)
        and any(i.start <= r["date"] <= i.dirty_until(last_day) for r in run)
    ]
    note = f"shares rows with the {', '.join(overlaps)} slice" if overlaps else ""
    return Episode(
        seed,
        metric,
        slice_id,
        first,
        len(run),
        float(worst["value"]),
        float(worst["expected"]),
        float(worst["score"]),
        str(worst["detector"]),
        note,
    )


def evaluate(
    seed: int, magnitudes: dict[str, float], truth: dict[str, Any], tables: Tables
) -> SeedResult:
    incidents = planted(truth, seed)
    last_day = dt.date.fromisoformat(truth["window"]["end_date"])
    verdicts = [judge(i, tables) for i in incidents]
    episodes, clean_days = false_alarms(seed, incidents, tables, last_day)
    return SeedResult(seed, magnitudes, verdicts, episodes, clean_days)


# --- one seed end to end -------------------------------------------------------------------


def read_tables(spark: SparkSession, sink: DeltaSink, warehouse: str) -> Tables:
    """Daily scored cells and root causes from the two monitoring tables."""
    cells: pd.DataFrame = (
        sink.read(os.path.join(warehouse, METRIC_ANOMALIES))
        .where(F.col("grain") == "day")
        .select(
            "date",
            "metric",
            "slice_id",
            "value",
            "expected",
            "score",
            "is_anomaly",
            "detector",
            "status",
            "numerator",
            "denominator",
            "units",
        )
        .toPandas()
    )
    causes_path = os.path.join(warehouse, ANOMALY_ROOT_CAUSES)
    columns = ["date", "metric", "parent_slice_id", "rank", "slice_id"]
    causes = (
        sink.read(causes_path)
        .where(F.coalesce(F.col("grain"), F.lit("day")) == "day")
        .select(*columns)
        .toPandas()
        if os.path.isdir(os.path.join(causes_path, "_delta_log"))
        else pd.DataFrame(columns=columns)
    )
    return Tables(cells, causes)


def raw_tables(catalog: Catalog, plan: Plan) -> list[str]:
    """The generated tables the plan reads (its passes' sources and their joins): the
    benchmark writes only these."""
    names = {p.source for p in plan.passes}
    names |= {j.source for n in list(names) for j in catalog.sources[n].joins}
    return sorted(os.path.basename(catalog.sources[n].location) for n in names)


def run_seed(
    spark: SparkSession,
    sink: DeltaSink,
    catalog: Catalog,
    seed: int,
    scale: float,
    root: str,
    monitor_only: bool = False,
) -> SeedResult:
    """Generate, compute, monitor and evaluate one seed in the warehouse `root` (with
    `monitor_only`, reuse the data and metric_values already there)."""
    params = params_for(seed, scale)
    plan = compile_plan(catalog, list(METRICS))
    seconds: dict[str, float] = {}
    first = params.start_date
    if not monitor_only:
        t0 = time.perf_counter()
        generate(spark, sink, params, raw_dir(root), tables=raw_tables(catalog, plan))
        seconds["generate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_metrics(
            spark,
            sink,
            catalog,
            plan,
            root,
            first,
            first + dt.timedelta(days=DAYS - 1),
            run_id=f"bench-seed{seed}",
        )
        seconds["metrics"] = time.perf_counter() - t0
    truth: dict[str, Any] = json.loads(
        (Path(raw_dir(root)) / GROUND_TRUTH_FILE).read_text(encoding="utf-8")
    )
    t0 = time.perf_counter()
    run_monitoring(
        spark,
        sink,
        catalog,
        root,
        first + dt.timedelta(days=FIRST_SCORED_DAY),
        first + dt.timedelta(days=DAYS - 1),
        f"bench-seed{seed}",
    )
    seconds["monitoring"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    magnitudes = {
        "spike_multiplier": params.spike_multiplier,
        "login_shift": params.login_shift,
        "drift_multiplier": params.drift_multiplier,
    }
    result = evaluate(seed, magnitudes, truth, read_tables(spark, sink, root))
    seconds["evaluate"] = time.perf_counter() - t0
    result.seconds = seconds
    return result


# --- report --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text for a Markdown table cell: slice ids' `|` escaped."""
    return text.replace("|", "\\|")


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def seed_table(results: Sequence[SeedResult]) -> None:
    print("\n### Per seed\n")
    print(
        "| seed | spike x | login shift | drift x | spike | level_shift | drift "
        "| root cause ok | false alarm episodes | clean series-weeks | seconds |"
    )
    print("|---:|---:|---:|---:|:-:|:-:|:-:|---:|---:|---:|---:|")
    for r in results:
        status = {v.incident.kind: "found" if v.found else "MISSED" for v in r.verdicts}
        right = sum(v.root_cause_ok for v in r.verdicts)
        m = r.magnitudes
        print(
            f"| {r.seed} | {m['spike_multiplier']:.2f} | {m['login_shift']:+.2f} | "
            f"{m['drift_multiplier']:.2f} | {status.get('spike', '')} | "
            f"{status.get('level_shift', '')} | {status.get('drift', '')} | "
            f"{right}/{len(r.verdicts)} | {len(r.episodes)} | "
            f"{sum(r.clean_days.values()) / 7:.1f} | {sum(r.seconds.values()):.0f} |"
        )


def incident_table(verdicts: Sequence[Verdict]) -> None:
    print("\n### Every planted incident: the planted slice's signal\n")
    print(
        "Volume: mean numerator events (quantiles: units) per unsuppressed day over the 14 "
        "days before the start; ok: days with status ok (scorable); best: the planted slice's "
        "highest score in the recall window.\n"
    )
    print(
        "| seed | kind | magnitude | metric | volume/day before | ok days before | "
        "ok days in window | best planted-slice day in window | found on | root cause ok |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---|---|:-:|")
    for v in verdicts:
        i = v.incident
        for s in v.signals:
            print(
                f"| {i.seed} | {i.kind} | {i.magnitude:g} | {s.metric} | {s.volume:.1f} | "
                f"{s.before_ok}/{s.before_days} | {s.window_ok}/{s.window_days} | "
                f"{_cell(s.best)} | "
                f"{v.found_on or 'missed'} | {'yes' if v.root_cause_ok else 'no'} |"
            )


def recall_table(verdicts: Sequence[Verdict]) -> list[tuple[bool, str]]:
    print("\n### Recall per incident kind\n")
    print("| kind | incidents | found | recall | target |")
    print("|---|---:|---:|---:|---:|")
    checks = []
    for kind in KINDS:
        mine = [v for v in verdicts if v.incident.kind == kind]
        found = sum(v.found for v in mine)
        target = RECALL_TARGET[kind]
        print(f"| {kind} | {len(mine)} | {found} | {_ratio(found, len(mine))} | >= {target} |")
        passed = bool(mine) and found / len(mine) >= target
        checks.append((passed, f"{kind} recall {_ratio(found, len(mine))} >= {target}"))
    return checks


def root_cause_table(verdicts: Sequence[Verdict]) -> tuple[bool, str]:
    print("\n### Root cause: the alert points to the planted slice\n")
    print("| kind | incidents | found | planted slice top-ranked | of found | of incidents |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in (*KINDS, "all"):
        mine = [v for v in verdicts if kind in ("all", v.incident.kind)]
        found = sum(v.found for v in mine)
        right = sum(v.found and v.root_cause_ok for v in mine)
        label = f"**{kind}**" if kind == "all" else kind
        print(
            f"| {label} | {len(mine)} | {found} | {right} | {_ratio(right, found)} | "
            f"{_ratio(right, len(mine))} |"
        )
    found = sum(v.found for v in verdicts)
    right = sum(v.found and v.root_cause_ok for v in verdicts)
    passed = bool(verdicts) and right / len(verdicts) >= ROOT_CAUSE_TARGET
    return passed, (
        f"planted slice top-ranked root cause in {right}/{len(verdicts)} planted incidents "
        f"({_ratio(right, len(verdicts))}) >= {ROOT_CAUSE_TARGET} "
        f"(of found incidents: {right}/{found} = {_ratio(right, found)})"
    )


def false_alarm_table(results: Sequence[SeedResult]) -> tuple[bool, str]:
    print("\n### False alarms on clean series-days\n")
    print("| metric | clean series-weeks | episodes | per 50 series-weeks |")
    print("|---|---:|---:|---:|")
    episodes = [e for r in results for e in r.episodes]
    metrics = sorted({m for r in results for m in r.clean_days})
    rate, weeks = math.inf, 0.0
    for metric in (*metrics, "all"):
        days = sum(n for r in results for m, n in r.clean_days.items() if metric in ("all", m))
        count = sum(1 for e in episodes if metric in ("all", e.metric))
        weeks = days / 7
        rate = 50 * count / weeks if weeks else math.inf
        label = f"**{metric}**" if metric == "all" else metric
        print(f"| {label} | {weeks:.1f} | {count} | {rate:.2f} |")
    passed = rate <= FALSE_ALARM_TARGET
    return passed, (
        f"{rate:.2f} false alarm episodes per 50 clean series-weeks "
        f"({len(episodes)} in {weeks:.1f}) <= {FALSE_ALARM_TARGET}"
    )


def listings(results: Sequence[SeedResult]) -> None:
    """Every missed incident, every wrong root cause and every false alarm episode."""
    verdicts = [v for r in results for v in r.verdicts]
    print("\n### Missed incidents\n")
    missed = [v for v in verdicts if not v.found]
    for v in missed:
        i = v.incident
        days = i.recall_days()
        print(
            f"- seed {i.seed} {i.kind} {'/'.join(i.metrics)} at {i.slice_id}, "
            f"{i.start}..{i.end} (recall window {days[0]}..{days[-1]}), magnitude "
            f"{i.magnitude:g}: {v.evidence}"
        )
    if not missed:
        print("(none)")
    print("\n### Found incidents: the first alert (coarsest flagged ancestor-or-self)\n")
    found = [v for v in verdicts if v.found]
    for v in found:
        i = v.incident
        mark = "points to the planted slice" if v.root_cause_ok else "DOES NOT point to it"
        print(
            f"- seed {i.seed} {i.kind} at {i.slice_id}: found on {v.found_on} ({v.found_via}); "
            f"first alert {mark}: {v.alert}"
        )
    if not found:
        print("(none)")
    print("\n### False alarm episodes\n")
    episodes = sorted(
        (e for r in results for e in r.episodes),
        key=lambda e: (e.seed, e.metric, e.slice_id, e.first),
    )
    if not episodes:
        print("(none)")
        return
    print(
        "| seed | metric | slice | first date | days | value | expected | score | detector | note |"
    )
    print("|---:|---|---|---|---:|---:|---:|---:|---|---|")
    for e in episodes:
        print(
            f"| {e.seed} | {e.metric} | {_cell(e.slice_id)} | {e.first} | {e.days} | "
            f"{e.value:.4g} | {e.expected:.4g} | {e.score:+.1f} | {e.detector} | {e.note} |"
        )


def report(results: Sequence[SeedResult]) -> bool:
    """Print the Markdown tables, the listings and one PASS/FAIL line per target; all pass?"""
    verdicts = [v for r in results for v in r.verdicts]
    seed_table(results)
    incident_table(verdicts)
    checks = recall_table(verdicts)
    checks.append(root_cause_table(verdicts))
    checks.append(false_alarm_table(results))
    listings(results)
    print("\n### Targets\n")
    for passed, line in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {line}")
    return all(passed for passed, _ in checks)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds")
    parser.add_argument("--scale", type=float, default=0.5, help="generator scale")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each seed's warehouse in DIR/seed-N (replaced if present)",
    )
    parser.add_argument(
        "--monitor-only",
        action="store_true",
        help="with --keep: reuse DIR/seed-N from an earlier --keep run, monitor and evaluate",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.monitor_only:
        if args.keep is None:
            parser.error("--monitor-only needs --keep DIR (the warehouses of an earlier run)")
        for seed in seeds:
            if not (args.keep / f"seed-{seed}" / "metrics").is_dir():
                parser.error(f"--monitor-only: {args.keep}/seed-{seed} holds no metrics")
    configure_logging("WARNING")
    config = load_config("local")
    extra = {**config.spark.extra, "spark.ui.showConsoleProgress": "false"}
    spark = build_session(replace(config, spark=replace(config.spark, extra=extra)))
    spark.sparkContext.setLogLevel("ERROR")
    sink = DeltaSink.for_session(spark, "delta-rs")
    catalog = load_catalog(REPO_ROOT / "metric_defs")
    results: list[SeedResult] = []
    started = time.perf_counter()
    for seed in seeds:
        if args.keep is not None:
            root = str((args.keep / f"seed-{seed}").resolve())
            if not args.monitor_only:
                shutil.rmtree(root, ignore_errors=True)
                os.makedirs(root)
        else:
            root = tempfile.mkdtemp(prefix=f"bench-monitoring-seed{seed}-")
        try:
            result = run_seed(spark, sink, catalog, seed, args.scale, root, args.monitor_only)
        finally:
            if args.keep is None:
                shutil.rmtree(root, ignore_errors=True)
        results.append(result)
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        found = " ".join(
            f"{v.incident.kind}={'found' if v.found else 'MISSED'}" for v in result.verdicts
        )
        progress(
            f"seed {seed}: {timing}; {found}; root cause ok "
            f"{sum(v.root_cause_ok for v in result.verdicts)}/{len(result.verdicts)}; "
            f"{len(result.episodes)} false alarm episodes in "
            f"{sum(result.clean_days.values()) / 7:.1f} clean series-weeks "
            f"(elapsed {time.perf_counter() - started:.0f} s)"
        )
    print(
        f"\n{len(results)} seeds ({args.first_seed}..{args.first_seed + args.seeds - 1}) at "
        f"scale {args.scale:g}, {DAYS} days, scored days {FIRST_SCORED_DAY}..{DAYS - 1}; "
        f"metrics: {', '.join(METRICS)}; {time.perf_counter() - started:.0f} s in all"
    )
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())

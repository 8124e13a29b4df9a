"""The privacy audit: which suppressed rows the published rows give away, and by which route.

A suppressed row is **recoverable** when it hides a statistic that *could be sensitive* and
- (value) every statistic its value is computed from is shown elsewhere or linearly
  recoverable: the number it hides can be computed; or
- (statistic) a statistic it shows that could be sensitive is shown elsewhere or linearly
  recoverable.
A hidden statistic is known not to be sensitive when it is shown as zero somewhere (a zero
is nobody's count; absent cells are zeros too), or when a shown row reports at least the
minimum cell size of units for it in a cell inside this one (same or finer slice, within its
time): units only grow with the cell, so the hidden cell holds at least as many. Rows that
hide only such statistics (a ratio's denominator hidden with its numerator, a window hidden
for a hidden day) protect nothing themselves and may be computable without harm.
Derived metrics publish functions of other rows: a derived row shown while one of its inputs
is hidden, or hidden while all its inputs are shown, is recoverable by the route "derived".

The audit runs the engine once per stage (`publication.STAGES`), each seeing more, and gives
each recoverable row the first stage that recovers it: within one metric, period and window
(slices), across metrics that share a statistic, across windows and days, across hours and
days, across table versions.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.metrics.definitions import Catalog
from jobs.metrics.types import traits
from jobs.privacy.engine import Cell, Method, SliceCell, recoverable
from jobs.privacy.publication import (
    FULL,
    HOURS_PER_DAY,
    STAGES,
    Built,
    Domains,
    FamilyKey,
    Row,
    Stage,
    build,
    changed_history,
    project,
)
from jobs.privacy.stats import MetricStats, Stat, all_metric_stats, stat_thresholds, units_of

log = logging.getLogger(__name__)
ROUTES = (*[s.name for s in STAGES], "derived")


@dataclass(frozen=True)
class Finding:
    """One recoverable suppressed row."""

    row: Row
    route: str
    stat: Stat  # the statistic recovered
    how: str
    method: str = ""  # "known" (shown by another row), a `Method`, or "derived"

    def describe(self) -> str:
        return f"{describe_row(self.row)}: {self.stat.describe()} {self.how}"


@dataclass
class AuditReport:
    rows: int  # rows audited (current, not history)
    suppressed: int
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    families: int = 0

    def by_route(self) -> dict[str, int]:
        counts = Counter(f.route for f in self.findings)
        return {r: counts.get(r, 0) for r in ROUTES}

    def render(self, examples: int = 3) -> str:
        found = len(self.findings)
        lines = [
            f"{found:,} of {self.suppressed:,} suppressed rows are recoverable from the "
            f"{self.rows:,} published rows ({self.families:,} statistics, {self.seconds:.1f} s)"
        ]
        if found:
            lines.append("by route (the first stage that recovers each row):")
            for route, n in self.by_route().items():
                lines.append(f"  {route:<9} {n:>7,}")
                shown = [f for f in self.findings if f.route == route][:examples]
                lines.extend(f"      e.g. {f.describe()}" for f in shown)
        return "\n".join(lines)


def describe_row(row: Row) -> str:
    if row.grain == "hour":
        hour = dt.datetime(1970, 1, 1) + dt.timedelta(hours=row.period)
        when = hour.strftime("%Y-%m-%d %H:00")
    else:
        when = (dt.date(1970, 1, 1) + dt.timedelta(days=row.period)).isoformat()
    dims, values = row.cell
    where = "|".join(f"{d}={v}" for d, v in zip(dims, values, strict=True)) or "all"
    return f"{row.metric} {when} {row.window} {where}"


class _Sensitivity:
    """Which hidden statistics could be sensitive (see the module docstring)."""

    def __init__(self, rows: Sequence[Row], stats: dict[str, MetricStats], catalog: Catalog):
        self.thresholds = stat_thresholds(stats)
        self.units_stat: dict[Stat, Stat | None] = {}
        for s in stats.values():
            for stat in s.carried:
                if stat not in self.units_stat:
                    self.units_stat[stat] = units_of(stat, catalog)
        shown: dict[tuple[Stat, SliceCell], list[tuple[int, int, int]]] = defaultdict(list)
        #: Statistics shown as exactly zero somewhere: a zero is nobody's count.
        self.zeros: set[tuple[Stat, str, str, int, SliceCell]] = set()
        for row in rows:
            shows = stats.get(row.metric)
            if row.suppressed or row.absent or shows is None:
                continue
            for stat, number in _numbers(shows, row):
                if number == 0:
                    self.zeros.add((stat, row.grain, row.window, row.period, row.cell))
            if row.units is None:
                continue
            if shows.units is None:
                continue
            a, b = row.interval()
            dims, _ = row.cell
            for k in range(len(dims) + 1):
                for subset in _subsets(dims, k):
                    shown[(shows.units, project(row.cell, subset))].append((a, b, row.units))
        self.shown = {key: sorted(v) for key, v in shown.items()}

    def could_be_sensitive(self, stat: Stat, row: Row) -> bool:
        if (stat, row.grain, row.window, row.period, row.cell) in self.zeros:
            return False
        units = self.units_stat.get(stat)
        if units is None:
            return True
        a, b = row.interval()
        entries = self.shown.get((units, row.cell), [])
        k = self.thresholds.get(stat, 0)
        i = bisect.bisect_left(entries, (a, -1, -1))
        while i < len(entries) and entries[i][0] < b:
            _, end, n = entries[i]
            if end <= b and n >= k:
                return False
            i += 1
        return True


def _numbers(shows: MetricStats, row: Row) -> list[tuple[Stat, float | None]]:
    """The statistics a shown row gives numbers for, with those numbers."""
    if not row.numbers:
        return []
    value, numerator, denominator = (*row.numbers, None, None, None)[:3]
    out: list[tuple[Stat, float | None]] = []
    if shows.numerator is not None:
        out.append((shows.numerator, numerator))
    if len(shows.value) == 2:
        out.append((shows.value[1], denominator))
    elif shows.numerator is None:
        out.append((shows.value[0], value))
    return out


def _subsets(dims: tuple[str, ...], k: int) -> list[tuple[str, ...]]:
    import itertools

    return [tuple(c) for c in itertools.combinations(dims, k)]


def _verdicts(built: Built) -> dict[FamilyKey, dict[Cell, Method | None]]:
    return {key: recoverable(family) for key, family in built.families.items() if family.hidden}


def _status(
    built: Built, verdicts: dict[FamilyKey, dict[Cell, Method | None]], row: Row, stat: Stat
) -> str | None:
    """'known' (another row shows it), 'zero' (a metric that would show it has no row
    there), a recovery method, or None (hidden and not recoverable) in one stage."""
    key, cell = built.cell_of[(row.key, stat)]
    if cell in built.zeros.get(key, ()):
        return "zero"
    if cell in built.families[key].known:
        return "known"
    return verdicts[key].get(cell)


def audit(
    rows: Sequence[Row],
    catalog: Catalog,
    *,
    stages: Sequence[Stage] = STAGES,
    judged: set[tuple[str, str, str, int, SliceCell]] | None = None,
) -> AuditReport:
    """Every recoverable suppressed current row of `rows` (of `judged` rows, if given)."""
    started = time.perf_counter()
    rows = list(rows)
    stats = all_metric_stats(catalog)
    current = [r for r in rows if not r.history]
    suppressed = [
        r
        for r in current
        if r.suppressed and r.metric in stats and (judged is None or r.key in judged)
    ]
    report = AuditReport(
        len(current),
        sum(r.suppressed for r in current if judged is None or r.key in judged),
    )
    domains = Domains(rows, stats)
    full = build(rows, catalog, stats, FULL, domains)
    # History rows that show other numbers than today's count other things: not evidence.
    changed = changed_history(rows)
    comparable = [r for r in rows if (r.metric, r.date, r.version) not in changed or not r.history]
    sensitivity = _Sensitivity(comparable, stats, catalog)
    report.families = len(full.families)
    targets = {
        (r.key, stat)
        for r in suppressed
        for stat in stats[r.metric].carried
        if sensitivity.could_be_sensitive(stat, r)
    }
    publishers = _publishers(comparable, stats)
    left = {r.key: r for r in suppressed}
    for stage in stages:
        began = time.perf_counter()
        built = full if stage == FULL else build(rows, catalog, stats, stage, domains)
        built_in = time.perf_counter() - began
        verdicts = _verdicts(built)
        for key, row in list(left.items()):
            finding = _judge(row, stats[row.metric], built, verdicts, targets, publishers, stage)
            if finding is not None:
                report.findings.append(finding)
                del left[key]
        log.info(
            "privacy audit, stage %s: %d recoverable so far (build %.1f s, solve %.1f s)",
            stage.name,
            len(report.findings),
            built_in,
            time.perf_counter() - began - built_in,
        )
    found = {f.row.key for f in report.findings}
    for finding in _derived(rows, catalog, judged):
        if finding.row.key not in found:
            found.add(finding.row.key)
            report.findings.append(finding)
    report.seconds = time.perf_counter() - started
    return report


def _publishers(
    rows: Sequence[Row], stats: dict[str, MetricStats]
) -> dict[tuple[Stat, str, str, int, SliceCell], tuple[str, bool]]:
    """(statistic, cell) -> (a metric whose unsuppressed row shows it, whether only an
    older version does), for explanations."""
    out: dict[tuple[Stat, str, str, int, SliceCell], tuple[str, bool]] = {}
    for row in sorted(rows, key=lambda r: r.history, reverse=True):
        s = stats.get(row.metric)
        if s is None or row.suppressed or row.absent:
            continue
        for stat in s.carried:
            out[(stat, row.grain, row.window, row.period, row.cell)] = (row.metric, row.history)
    return out


METHOD_TEXT = {
    "differences": "by differences of published cells of its own series",
    "substitution": "by substitution in slice relations",
    "elimination": "by elimination over slice and time relations",
}


def _judge(
    row: Row,
    stats: MetricStats,
    built: Built,
    verdicts: dict[FamilyKey, dict[Cell, Method | None]],
    targets: set[tuple[tuple[str, str, str, int, SliceCell], Stat]],
    publishers: dict[tuple[Stat, str, str, int, SliceCell], tuple[str, bool]],
    stage: Stage,
) -> Finding | None:
    status = {stat: _status(built, verdicts, row, stat) for stat in stats.carried}
    for stat in stats.carried:
        how = status[stat]
        # A zero is no one's count: it is never sensitive.
        if (row.key, stat) in targets and how is not None and how != "zero":
            text = _how(how, stat, row, publishers, stage)
            return Finding(row, stage.name, stat, text, how)
    # A row that hides nothing that could be sensitive (its statistics are zeros, or shown
    # with enough units elsewhere) protects nothing: its value may be computable.
    sensitive = any((row.key, s) in targets for s in stats.carried)
    if sensitive and all(status[s] is not None for s in stats.value):
        chosen = next((s for s in stats.value if status[s] not in ("known", "zero")), None)
        stat = chosen or next((s for s in stats.value if status[s] == "known"), stats.value[0])
        how = status[stat]
        assert how is not None
        return Finding(row, stage.name, stat, _how(how, stat, row, publishers, stage), how)
    return None


def _how(
    how: str,
    stat: Stat,
    row: Row,
    publishers: dict[tuple[Stat, str, str, int, SliceCell], tuple[str, bool]],
    stage: Stage,
) -> str:
    if how == "zero":
        return "is zero (a metric that shows it has no row there)"
    if how != "known":
        return METHOD_TEXT[how]
    who, old = publishers.get((stat, row.grain, row.window, row.period, row.cell), ("?", False))
    return f"is published by {who}" + (" in an older version of the table" if old else "")


def _derived(
    rows: Sequence[Row],
    catalog: Catalog,
    judged: set[tuple[str, str, str, int, SliceCell]] | None,
) -> list[Finding]:
    """Derived rows shown with a hidden input, or hidden with every input shown."""
    by_key = {r.key: r for r in rows if not r.history}
    out = []
    marker = Stat("derived", (), "none", frozenset(), False)
    for row in by_key.values():
        metric = catalog.metrics.get(row.metric)
        if metric is None or traits(metric.type).finish != "derived":
            continue
        inputs = [by_key.get((d, *row.key[1:])) for d in metric.depends_on]
        present = [r for r in inputs if r is not None]
        if row.suppressed and present and all(not r.suppressed for r in present):
            if judged is None or row.key in judged:
                text = "is computed from its shown inputs"
                out.append(Finding(row, "derived", marker, text, "derived"))
        elif not row.suppressed:
            for r in present:
                if r.suppressed and (judged is None or r.key in judged):
                    text = f"enters {row.metric}, which is shown"
                    out.append(Finding(r, "derived", marker, text, "derived"))
    return out


def hours_to_datetime(hours: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(hours=hours)


__all__ = ["HOURS_PER_DAY", "AuditReport", "Finding", "audit", "hours_to_datetime"]

"""Published rows as the attacker holds them, and the engine's families built from them.

A `Row` is the metadata of one row of `metric_values` (its keys, whether it is suppressed,
its published units): no number of a suppressed row, nothing from the raw data. Rows come
from the table (its current version and the older files its history still holds) and, for
the publish gate, from the run about to be written.

Per statistic (`stats.Stat`) the rows make one engine family: a cell is known where some
unsuppressed row shows the statistic; known to be zero where a metric that publishes it wrote
its (date, metric) partition but has no row for a slice value seen elsewhere (no events);
hidden where every row that shows it is suppressed. How much the families see is the
*stage* (`Stage`): that is how the audit tells the route of a recoverable cell.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from jobs.metrics.definitions import Catalog
from jobs.privacy.engine import Cell, Family, SliceCell, SliceSet
from jobs.privacy.stats import MetricStats, Stat

HOURS_PER_DAY = 24
#: Private time axes (statistics that do not add up over time) live far above real hours.
PRIVATE_BASE = 10**9


@dataclass(frozen=True)
class Row:
    """One published row's metadata."""

    metric: str
    grain: str  # day | hour
    window: str  # 1d, 7d, 28d, 1h
    period: int  # days since 1970-01-01 (day grain) or hours since then (hour grain)
    cell: SliceCell
    suppressed: bool
    units: int | None
    version: str
    history: bool = False  # only in an older version of the table
    absent: bool = False  # no row: the metric wrote the partition, the cell had no events
    numbers: tuple[float | None, ...] = ()  # value, numerator, denominator of a shown row

    @property
    def date(self) -> int:
        return self.period if self.grain == "day" else self.period // HOURS_PER_DAY

    @property
    def key(self) -> tuple[str, str, str, int, SliceCell]:
        return (self.metric, self.grain, self.window, self.period, self.cell)

    def interval(self) -> tuple[int, int]:
        """Its time in hours since 1970-01-01: [start, end)."""
        if self.grain == "hour":
            return self.period, self.period + 1
        days = int(self.window[:-1])
        return (self.period - days + 1) * HOURS_PER_DAY, (self.period + 1) * HOURS_PER_DAY


@dataclass(frozen=True)
class Stage:
    """What the attacker combines (each stage adds to the one before)."""

    name: str
    across_metrics: bool  # one unknown per statistic, not per (metric, version)
    across_time: bool  # daily windows and days of additive statistics on one time axis
    hours: bool  # hours on that axis too
    history: bool  # rows of older table versions


STAGES = (
    Stage("slices", False, False, False, False),
    Stage("metrics", True, False, False, False),
    Stage("windows", True, True, False, False),
    Stage("hours", True, True, True, False),
    Stage("versions", True, True, True, True),
)
FULL = STAGES[-1]

FamilyKey = tuple[Stat, tuple[str, str] | None]


@dataclass
class Built:
    """One stage's families and where each row's statistics sit in them."""

    families: dict[FamilyKey, Family] = field(default_factory=dict)
    #: Cells known only because a metric that shows the statistic has no row there: zero.
    zeros: dict[FamilyKey, set[Cell]] = field(default_factory=dict)
    cell_of: dict[tuple[tuple[str, str, str, int, SliceCell], Stat], tuple[FamilyKey, Cell]] = (
        field(default_factory=dict)
    )


def project(cell: SliceCell, onto: SliceSet) -> SliceCell:
    index = dict(zip(*cell, strict=True))
    return onto, tuple(index[d] for d in onto)


class Domains:
    """Per (statistic, slice set): the values seen in rows that show the statistic, and
    projections of finer sets' values (a value seen anywhere is a value absence makes zero)."""

    def __init__(self, rows: Iterable[Row], stats: dict[str, MetricStats]) -> None:
        seen: dict[Stat, dict[SliceSet, set[tuple[str, ...]]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for row in rows:
            s = stats.get(row.metric)
            if s is None:
                continue
            for stat in s.carried:
                seen[stat][row.cell[0]].add(row.cell[1])
        self.seen = seen
        self._cache: dict[tuple[Stat, SliceSet], set[tuple[str, ...]]] = {}

    def of(self, stat: Stat, slice_set: SliceSet) -> set[tuple[str, ...]]:
        key = (stat, slice_set)
        if key not in self._cache:
            mine = set(slice_set)
            out: set[tuple[str, ...]] = set()
            for s, values in self.seen.get(stat, {}).items():
                if mine <= set(s):
                    out |= {project((s, v), slice_set)[1] for v in values}
            self._cache[key] = out
        return self._cache[key]


def slice_sets_of(catalog: Catalog, metric: str) -> set[SliceSet]:
    m = catalog.metrics.get(metric)
    return {tuple(sorted(s)) for s in m.slices} if m else set()


def windows_of(catalog: Catalog, metric: str) -> set[tuple[str, str]]:
    """(grain, window) pairs a metric publishes."""
    m = catalog.metrics.get(metric)
    if m is None:
        return set()
    return {("hour", "1h")} if m.grain == "hour" else {("day", w) for w in m.windows}


def absent_rows(
    rows: list[Row], catalog: Catalog, stats: dict[str, MetricStats], domains: Domains
) -> Iterator[Row]:
    """Rows that are not there although their metric wrote their (date, metric) partition:
    cells with no events, published as absence (zero), for every slice value seen."""
    present: dict[str, set[tuple[str, str, int, SliceCell]]] = defaultdict(set)
    dates: dict[str, set[int]] = defaultdict(set)
    sets: dict[str, set[SliceSet]] = defaultdict(set)
    windows: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row in rows:
        present[row.metric].add((row.grain, row.window, row.period, row.cell))
        dates[row.metric].add(row.date)
        sets[row.metric].add(row.cell[0])
        windows[row.metric].add((row.grain, row.window))
    for metric, days in dates.items():
        s = stats.get(metric)
        if s is None:
            continue
        mine = present[metric]
        for grain, window in sorted(windows[metric] | windows_of(catalog, metric)):
            for day in sorted(days):
                periods = (
                    [day]
                    if grain == "day"
                    else range(day * HOURS_PER_DAY, (day + 1) * HOURS_PER_DAY)
                )
                for period in periods:
                    for slice_set in sorted(sets[metric] | slice_sets_of(catalog, metric)):
                        values = set().union(*(domains.of(x, slice_set) for x in s.carried))
                        for values_ in values:
                            cell = (slice_set, values_)
                            if (grain, window, period, cell) not in mine:
                                yield Row(
                                    metric, grain, window, period, cell, False, 0, "", absent=True
                                )


def changed_history(rows: Sequence[Row]) -> set[tuple[str, int, str]]:
    """(metric, date, version) groups of history rows that show other numbers than the
    current rows in some cell both show: a restatement that changed what is counted (a new
    filter) or re-ran a date on new data. Their statistics are not the current ones, so they
    are kept apart; groups with no such difference are taken as the same numbers."""
    current = {r.key: r.numbers for r in rows if not r.history and r.numbers}
    changed = set()
    for r in rows:
        if r.history and r.numbers and r.key in current and not _same(r.numbers, current[r.key]):
            changed.add((r.metric, r.date, r.version))
    return changed


def _same(a: tuple[float | None, ...], b: tuple[float | None, ...]) -> bool:
    for x, y in zip(a, b, strict=False):
        if (x is None) != (y is None):
            return False
        if x is not None and y is not None and abs(x - y) > 1e-12 * max(1.0, abs(x), abs(y)):
            return False
    return True


def build(
    rows: list[Row],
    catalog: Catalog,
    stats: dict[str, MetricStats],
    stage: Stage,
    domains: Domains | None = None,
) -> Built:
    """The engine families of `stage` over `rows` (history rows only where it says)."""
    domains = domains or Domains(rows, stats)
    current = [r for r in rows if not r.history]
    used = rows if stage.history else current
    zeros = list(absent_rows(current, catalog, stats, domains))
    changed = changed_history(rows) if stage.history else set()
    out = Built()
    status: dict[FamilyKey, dict[Cell, bool]] = defaultdict(dict)  # cell -> known
    shown: dict[FamilyKey, set[Cell]] = defaultdict(set)  # known from a real row
    private: dict[FamilyKey, dict[tuple[str, str, int], int]] = defaultdict(dict)

    def place(row: Row, stat: Stat) -> tuple[FamilyKey, Cell]:
        scope = None if stage.across_metrics else (row.metric, "")
        key: FamilyKey = (stat, scope)
        shared = stat.time_additive and stage.across_time and (row.grain == "day" or stage.hours)
        if shared:
            a, b = row.interval()
        else:
            axes = private[key]
            slot = axes.setdefault((row.grain, row.window, row.period), len(axes))
            a = PRIVATE_BASE + 2 * slot
            b = a + 1
        return key, (row.cell, a, b)

    for row in itertools.chain(used, zeros):
        s = stats.get(row.metric)
        if s is None:
            continue
        for base in s.carried:
            stat = base
            if row.history and (row.metric, row.date, row.version) in changed:
                stat = replace(base, ident=(*base.ident, f"@{row.version}"))
            key, cell = place(row, stat)
            known = not row.suppressed
            cells = status[key]
            cells[cell] = cells.get(cell, False) or known
            if known and not row.absent:
                shown[key].add(cell)
            if not row.absent and not row.history:
                out.cell_of[(row.key, stat)] = (key, cell)
    for key, cells in status.items():
        stat = key[0]
        family = Family(stat.relations, stat.attributes)
        for cell, known in cells.items():
            (family.known if known else family.hidden).add(cell)
        out.zeros[key] = family.known - shown[key]
        out.families[key] = family
    return out

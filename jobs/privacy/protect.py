"""Suppression decided over the whole publication, so that the audit finds nothing.

Runs on the driver on cell metadata (keys, per-statistic distinct units, flags: one small row
per published cell, never raw data), grouped by statistic. Steps, to a fixed point:
1. primary: a statistic in a cell with 0 < units < k is hidden, where units are the distinct
   units of the rows that carry it (numerators too) and k the largest minimum cell size of
   the metrics that publish it; a row is suppressed iff any statistic it shows is hidden, so
   a statistic has the same pattern in every metric that shows it;
2. time: a window of an additive statistic that contains a day whose one-day cell is hidden
   is hidden (else 1d(t) = 7d(t) - 7d(t-1) + 1d(t-7) recovers it); a day with exactly one
   hidden hour hides its smallest shown other hour;
3. slices: in every (statistic, period, window), a shown parent with exactly one hidden child
   along one more dimension hides the child's smallest shown sibling;
4. audit: the exact audit (`audit.audit`, every route) over the run's rows and the table's;
   each recoverable cell hides one more cell on its route (the statistic where another row
   shows it; else the smallest shown window or day of its own series around it, or its
   smallest shown sibling), then steps 2-4 again, until nothing is recoverable or
   `max_rounds` audits have run. A complement (hidden by steps 2-4, not for its own
   smallness) that stays recoverable when nothing more on its routes can be hidden
   protects nothing: it is shown again, and stays shown.
Only the run's cells can be hidden, and only the primary step hides a cell that the table
already shows (the same statistic, period, window and slice in an older version: a rerun of
a date with other data, or a stricter minimum; the gate then refuses it, route "versions"):
what is already public is never chosen as a complement. A backfill of the days before a
published day therefore keeps that day's windows shown and protects with the new days.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from jobs.metrics.definitions import Catalog
from jobs.metrics.types import traits
from jobs.privacy.audit import AuditReport, Finding, audit
from jobs.privacy.engine import SliceCell, recoverable
from jobs.privacy.publication import FULL, HOURS_PER_DAY, Row, build, project
from jobs.privacy.stats import Stat, all_metric_stats, stat_thresholds, units_of

log = logging.getLogger(__name__)
RowKey = tuple[str, str, str, int, SliceCell]
StatCell = tuple[Stat, str, str, int, SliceCell]
#: Units per (units statistic, grain, window, period, slice cell).
UnitCounts = dict[StatCell, int]


@dataclass
class Decision:
    """Which rows of the run to suppress, and how the protection got there."""

    suppressed: set[RowKey] = field(default_factory=set)
    primary: int = 0
    by_rules: int = 0
    by_audit: int = 0
    audits: int = 0
    report: AuditReport | None = None
    unresolved: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"{len(self.suppressed):,} rows suppressed: {self.primary:,} statistics under the "
            f"minimum cell size, {self.by_rules:,} more by the time and slice rules, "
            f"{self.by_audit:,} more found by {self.audits} audit(s); {self.seconds:.1f} s"
        )


def stat_cell(stat: Stat, row: Row) -> StatCell:
    return (stat, row.grain, row.window, row.period, row.cell)


class _Publication:
    """The run's rows with their flags, and what the table already shows."""

    def __init__(self, run: Sequence[Row], published: Sequence[Row], catalog: Catalog) -> None:
        self.catalog = catalog
        self.stats = all_metric_stats(catalog)
        self.k = stat_thresholds(self.stats)
        self.run = {r.key: r for r in run}
        self.published = list(published)
        self.carriers: dict[StatCell, list[RowKey]] = defaultdict(list)
        for r in run:
            s = self.stats.get(r.metric)
            for stat in s.carried if s else ():
                self.carriers[stat_cell(stat, r)].append(r.key)
        self.table_known: set[StatCell] = set()
        self.table_present: set[StatCell] = set()
        for r in published:
            s = self.stats.get(r.metric)
            for stat in s.carried if s else ():
                cell = stat_cell(stat, r)
                self.table_present.add(cell)
                if not r.suppressed:
                    self.table_known.add(cell)
        self.hidden: set[StatCell] = set()
        self.hidden_rows: set[RowKey] = set()
        self.primary: set[StatCell] = set()  # hidden for their own smallness
        self.pinned: set[StatCell] = set()  # complements recoverable anyway: shown
        # Cells by (statistic, grain, window, period): what sibling groups are made of.
        self.by_period: dict[tuple[Stat, str, str, int], set[StatCell]] = defaultdict(set)
        for cell in [*self.carriers, *self.table_present]:
            self.by_period[cell[:4]].add(cell)
        self.units: UnitCounts = {}
        self.units_stat = {stat: units_of(stat, catalog) for stat in self.k}
        self.series: dict[tuple[Stat, SliceCell], list[StatCell]] = defaultdict(list)
        for cell in self.carriers:
            self.series[(cell[0], cell[4])].append(cell)
        self.table_shown = {r.key for r in published if not r.suppressed}

    def hide(self, cell: StatCell, complement: bool = True) -> bool:
        """Hide a statistic of the run in a cell (and so every run row showing it); a
        `complement` (not the cell's own smallness) never where the table already shows it."""
        if cell in self.hidden or cell not in self.carriers:
            return False
        if complement and (cell in self.table_known or cell in self.pinned):
            return False
        self.hidden.add(cell)
        self.hidden_rows.update(self.carriers[cell])
        if not complement:
            self.primary.add(cell)
        return True

    def show(self, cell: StatCell) -> bool:
        """Show again a complement that stays recoverable whatever the run hides (from
        what the table already shows): hiding it protects nothing. It stays shown."""
        if cell not in self.hidden or cell in self.primary:
            return False
        self.pinned.add(cell)
        self.hidden.discard(cell)
        self.hidden_rows = {k for c in self.hidden for k in self.carriers[c]}
        return True

    def known(self, cell: StatCell) -> bool:
        if cell in self.table_known:
            return True
        return any(k not in self.hidden_rows for k in self.carriers.get(cell, ()))

    def present(self, cell: StatCell) -> bool:
        return cell in self.carriers or cell in self.table_present

    def size(self, cell: StatCell) -> int:
        stat, grain, window, period, sc = cell
        units = self.units_stat.get(stat)
        return self.units.get((units, grain, window, period, sc), 0) if units else 0

    def rows(self) -> list[Row]:
        """The run's rows with the current flags, then the table's."""
        run = [replace(r, suppressed=r.key in self.hidden_rows) for r in self.run.values()]
        return run + self.published


def protect(
    run: Sequence[Row],
    units: UnitCounts,
    published: Sequence[Row],
    catalog: Catalog,
    *,
    nonzero: set[StatCell] | None = None,
    empty: set[RowKey] | None = None,
    max_rounds: int = 20,
) -> Decision:
    """Decide which of the run's rows to suppress (see the module docstring). `nonzero`:
    the cells where an additive statistic is not zero; `empty`: rows whose value is null or
    zero. A cell with no units and nothing in it is a zero and is shown; one with no units
    but something in it (rows without a unit) has contributors nobody counted: hidden."""
    began = time.perf_counter()
    pub = _Publication(run, published, catalog)
    pub.units = units
    decision = Decision()
    for cell in pub.carriers:
        stat = cell[0]
        n = pub.size(cell)
        if n >= pub.k.get(stat, 0):
            continue
        if n == 0:
            if stat.kind == "units":
                continue
            if stat.kind == "sum" and nonzero is not None and cell not in nonzero:
                continue
            if stat.kind != "sum" and all(k in (empty or set()) for k in pub.carriers[cell]):
                continue
        pub.hide(cell, complement=False)
    decision.primary = len(pub.hidden)
    before = len(pub.hidden)
    _rules(pub)
    _derived(pub)
    decision.by_rules = len(pub.hidden) - before
    old = audit(pub.published, catalog, stages=(FULL,)) if pub.published else None
    already = {f.row.key for f in old.findings} if old else set()
    for _ in range(max_rounds):
        decision.audits += 1
        report = audit(pub.rows(), catalog, stages=(FULL,))
        decision.report = report
        todo = [f for f in report.findings if f.row.key not in already]
        log.info("protection audit %d: %d recoverable cells", decision.audits, len(todo))
        if not todo:
            break
        before = len(pub.hidden)
        changed = [_fix(pub, f) for f in todo]
        if not any(changed) and not any([_show_futile(pub, f) for f in todo]):
            decision.unresolved = todo
            break
        _rules(pub)
        _derived(pub)
        decision.by_audit += len(pub.hidden) - before
    else:
        decision.unresolved = todo
    decision.suppressed = set(pub.hidden_rows)
    decision.seconds = time.perf_counter() - began
    log.info("protection: %s", decision.describe())
    return decision


def _show_futile(pub: _Publication, finding: Finding) -> bool:
    """Show a hidden complement that no further hiding by the run makes unrecoverable
    (for example a window equal to one the table shows, up to cells shown or empty)."""
    if finding.method in ("known", "derived"):
        return False
    cell = stat_cell(finding.stat, finding.row)
    if cell in pub.primary:
        return False
    # The row stays hidden while any statistic it shows is: show its other complements
    # too (the next audit checks that nothing became recoverable by it).
    others = [c for c in pub.hidden if finding.row.key in pub.carriers[c] and c != cell]
    if any(c in pub.primary for c in others):
        return False
    return any([pub.show(c) for c in [cell, *others]])


def _derived(pub: _Publication) -> None:
    """Derived rows are suppressed where an input is (shown or absent inputs make a derived
    value computable, so hiding it then would protect nothing)."""
    for key, row in pub.run.items():
        metric = pub.catalog.metrics.get(row.metric)
        if metric is None or traits(metric.type).finish != "derived":
            continue
        inputs = [(dep, *key[1:]) for dep in metric.depends_on]
        if any(
            i in pub.hidden_rows or (i not in pub.run and not _table_row_shown(pub, i))
            for i in inputs
        ):
            pub.hidden_rows.add(key)


def _table_row_shown(pub: _Publication, key: RowKey) -> bool:
    return key in pub.table_shown


def _rules(pub: _Publication) -> None:
    """Time and slice rules, to a fixed point."""
    while True:
        changed = _time_rule(pub) | _hour_rule(pub) | _sibling_rule(pub)
        if not changed:
            return


def _hidden_day(pub: _Publication, stat: Stat, day: int, sc: SliceCell) -> bool:
    cell: StatCell = (stat, "day", "1d", day, sc)
    return pub.present(cell) and not pub.known(cell)


def _time_rule(pub: _Publication) -> bool:
    """Hide each window of an additive statistic that holds a hidden day of its series."""
    changed = False
    for cell in list(pub.carriers):
        stat, grain, window, period, sc = cell
        if not stat.time_additive or grain != "day" or window == "1d" or cell in pub.hidden:
            continue
        days = int(window[:-1])
        if any(_hidden_day(pub, stat, d, sc) for d in range(period - days + 1, period + 1)):
            changed |= pub.hide(cell)
    return changed


def _hour_rule(pub: _Publication) -> bool:
    """A shown day with exactly one hidden hour hides its smallest shown other hour."""
    changed = False
    groups: dict[tuple[Stat, SliceCell, int], list[StatCell]] = defaultdict(list)
    for cell in pub.carriers:
        stat, grain, _, period, sc = cell
        if stat.time_additive and grain == "hour":
            groups[(stat, sc, period // HOURS_PER_DAY)].append(cell)
    for (stat, sc, day), hours in groups.items():
        day_cell: StatCell = (stat, "day", "1d", day, sc)
        if not pub.known(day_cell):
            continue
        hidden = [h for h in hours if not pub.known(h)]
        if len(hidden) == 1:
            changed |= _hide_smallest(pub, [h for h in hours if pub.known(h)])
    return changed


def _sibling_rule(pub: _Publication) -> bool:
    """In each (statistic, grain, window, period): a shown parent with exactly one hidden
    child along one more dimension hides that child's smallest shown sibling."""
    changed = False
    for (stat, _, _, _), cells in pub.by_period.items():
        if stat.relations == "none":
            continue
        by_set: dict[tuple[str, ...], list[StatCell]] = defaultdict(list)
        for cell in cells:
            by_set[cell[4][0]].append(cell)
        for parent_set, parents in by_set.items():
            for child_set, children in by_set.items():
                extra = set(child_set) - set(parent_set)
                if not set(parent_set) < set(child_set) or len(extra) != 1:
                    continue
                if stat.relations == "attributes" and not extra <= stat.attributes:
                    continue
                groups: dict[tuple[str, ...], list[StatCell]] = defaultdict(list)
                for c in children:
                    groups[project(c[4], parent_set)[1]].append(c)
                for p in parents:
                    if not pub.known(p):
                        continue
                    members = groups.get(p[4][1], [])
                    if sum(not pub.known(c) for c in members) == 1:
                        changed |= _hide_smallest(pub, [c for c in members if pub.known(c)])
    return changed


def _hide_smallest(pub: _Publication, cells: Iterable[StatCell]) -> bool:
    """Hide the shown run cell with the fewest units (then the first slice values)."""
    choices = sorted(
        (c for c in cells if c in pub.carriers and c not in pub.table_known),
        key=lambda c: (pub.size(c), c[4]),
    )
    return pub.hide(choices[0]) if choices else False


def _fix(pub: _Publication, finding: Finding) -> bool:
    """Hide one more run cell (or a small set) on the route of a recoverable cell."""
    row = finding.row
    if finding.method == "derived":
        # Hide the derived rows of the run that show a function of this hidden row.
        shown = [
            (name, *row.key[1:])
            for name, m in pub.catalog.metrics.items()
            if traits(m.type).finish == "derived"
            and (row.metric in m.depends_on or name == row.metric)
        ]
        keys = [k for k in shown if k in pub.run and k not in pub.hidden_rows]
        pub.hidden_rows.update(keys)
        return bool(keys)
    cell = stat_cell(finding.stat, row)
    if finding.method == "known":
        return pub.hide(cell, complement=False)  # shown by another run row: hide it there too
    for candidate in _candidates(pub, cell, finding.method):
        if not _still_recoverable(pub, cell, candidate):
            return any([pub.hide(c) for c in candidate])
    # Nothing small enough closes it at once: take a step and let the next audit look again.
    return _hide_smallest(pub, _siblings(pub, cell)) or _hide_smallest(
        pub, _series_neighbours(pub, cell)
    )


#: How many candidate sets `_candidates` tries per recoverable cell.
CANDIDATES = 12


def _candidates(pub: _Publication, cell: StatCell, method: str) -> list[list[StatCell]]:
    """Small sets of shown run cells whose hiding may close a route to `cell`, fewest units
    first: a shown window or day of its series around it; a sibling alone; a sibling with
    its children that match the cell's hidden children in a finer set (a rectangle, as
    complementary suppression in a table with margins needs)."""
    series = _series_neighbours(pub, cell)  # in the order worth trying
    siblings = sorted(_siblings(pub, cell), key=lambda c: (pub.size(c), c[4]))
    related = sorted(_related(pub, cell), key=lambda c: (pub.size(c), c[4]))
    out: list[list[StatCell]] = []
    if method == "differences":
        out += [[c] for c in series[:8]]
    out += [[c] for c in related[:4]]
    for sibling in siblings[:4]:
        out.append([sibling])
        rectangle = [sibling, *_matching_children(pub, cell, sibling)]
        if len(rectangle) > 1:
            out.append(rectangle)
    if method != "differences":
        out += [[c] for c in series[:4]]
    runs = [
        c
        for c in out
        if all(x in pub.carriers and pub.known(x) and x not in pub.table_known for x in c)
    ]
    return runs[:CANDIDATES]


def _related(pub: _Publication, cell: StatCell) -> list[StatCell]:
    """Shown cells of the same statistic and period one dimension finer or coarser that
    refine or contain the cell (its children and parents)."""
    stat, grain, window, period, (dims, _) = cell
    out = []
    for other in pub.by_period.get((stat, grain, window, period), ()):
        odims, _ = other[4]
        if abs(len(odims) - len(dims)) != 1 or not pub.known(other):
            continue
        finer, coarser = (other[4], cell[4]) if len(odims) > len(dims) else (cell[4], other[4])
        if set(coarser[0]) < set(finer[0]) and project(finer, coarser[0]) == coarser:
            out.append(other)
    return out


def _matching_children(pub: _Publication, cell: StatCell, sibling: StatCell) -> list[StatCell]:
    """For each hidden child of `cell` along one more dimension, the sibling's child with
    the same value there (shown ones only)."""
    stat, grain, window, period, (dims, values) = cell
    _, _, _, _, (_, other) = sibling
    out = []
    for child in pub.by_period.get((stat, grain, window, period), ()):
        cdims, cvalues = child[4]
        if len(cdims) != len(dims) + 1 or not set(dims) < set(cdims) or pub.known(child):
            continue
        if project(child[4], dims)[1] != values:
            continue
        index = dict(zip(dims, other, strict=True))
        twin_values = tuple(index.get(d, v) for d, v in zip(cdims, cvalues, strict=True))
        twin: StatCell = (stat, grain, window, period, (cdims, twin_values))
        if twin in pub.carriers and pub.known(twin):
            out.append(twin)
    return out


def _still_recoverable(pub: _Publication, cell: StatCell, hide: list[StatCell]) -> bool:
    """Whether `cell` stays recoverable with `hide` hidden too: the engine on this one
    statistic's family (rows of the metrics that show it, run and table)."""
    stat = cell[0]
    metrics = {m for m, s in pub.stats.items() if stat in s.carried}
    extra: set[RowKey] = set()
    for c in hide:
        extra.update(pub.carriers.get(c, ()))
    rows = [
        replace(r, suppressed=r.key in pub.hidden_rows or r.key in extra)
        for r in pub.run.values()
        if r.metric in metrics
    ]
    rows += [r for r in pub.published if r.metric in metrics]
    built = build(rows, pub.catalog, pub.stats, FULL)
    key = next(k for r in rows for k in [(r.key, stat)] if stat_cell(stat, r) == cell)
    family_key, target = built.cell_of[key]
    family = built.families[family_key]
    if target in family.known:
        return True
    return recoverable(family).get(target) is not None


def _series_neighbours(pub: _Publication, cell: StatCell) -> list[StatCell]:
    """Shown run cells of the same statistic and slice cell around the cell, in the order
    worth trying, each group fewest units first:
    1. where a window the table already shows overlaps the cell (it stays shown: a backfill
       before a published day), the run's days in exactly one of the two spans (what the
       differences of the two go through);
    2. windows whose time overlaps the cell's (hiding a day hides every window around it);
    3. days inside the cell's span."""
    stat, grain, window, period, sc = cell
    a, b = _interval(grain, window, period)
    overlapping, spans = [], []
    for other in pub.series.get((stat, sc), ()):
        if other == cell or not pub.known(other):
            continue
        x, y = _interval(other[1], other[2], other[3])
        if x < b and a < y:
            overlapping.append(other)
            if other in pub.table_known and other[2] not in ("1d", "1h"):
                spans.append((x, y))

    def inside(c: StatCell, lo: int, hi: int) -> bool:
        return lo <= _interval(c[1], c[2], c[3])[0] < hi

    days = [
        c
        for c in pub.series.get((stat, sc), ())
        if c != cell and c[2] in ("1d", "1h") and pub.known(c) and c not in pub.table_known
    ]
    partners = [c for c in days if any(inside(c, a, b) != inside(c, x, y) for x, y in spans)]
    windows = [c for c in overlapping if c[2] not in ("1d", "1h") and c not in pub.table_known]
    own_days = [c for c in days if inside(c, a, b)]

    def by_size(cells: list[StatCell]) -> list[StatCell]:
        return sorted(cells, key=lambda c: (pub.size(c), c[4], c[2], c[3]))

    ordered = [*by_size(partners), *by_size(windows), *by_size(own_days)]
    return list(dict.fromkeys(ordered)) or overlapping


def _siblings(pub: _Publication, cell: StatCell) -> list[StatCell]:
    """Shown cells of the same statistic, period and window in the same set that share a
    parent with the cell along one dimension."""
    stat, grain, window, period, sc = cell
    dims, values = sc
    out = []
    for other in pub.by_period.get((stat, grain, window, period), ()):
        odims, ovalues = other[4]
        if odims != dims or other == cell or not pub.known(other):
            continue
        if sum(a != b for a, b in zip(values, ovalues, strict=True)) == 1:
            out.append(other)
    return out


def _interval(grain: str, window: str, period: int) -> tuple[int, int]:
    if grain == "hour":
        return period, period + 1
    days = int(window[:-1])
    return (period - days + 1) * HOURS_PER_DAY, (period + 1) * HOURS_PER_DAY

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

from jobs.metrics.definitions import Catalog
from jobs.metrics.types import traits
from jobs.privacy.audit import Finding, audit
from jobs.privacy.complements import candidates, series_neighbours, sibling_cells, still_recoverable
from jobs.privacy.engine import SliceCell
from jobs.privacy.protect_state import (
    Decision,
    ProtectedRun,
    RowKey,
    StatCell,
    UnitCounts,
    stat_cell,
)
from jobs.privacy.publication import FULL, HOURS_PER_DAY, Row, project
from jobs.privacy.stats import Stat

log = logging.getLogger(__name__)


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
    pub = ProtectedRun(run, published, catalog)
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


def _show_futile(pub: ProtectedRun, finding: Finding) -> bool:
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


def _derived(pub: ProtectedRun) -> None:
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


def _table_row_shown(pub: ProtectedRun, key: RowKey) -> bool:
    return key in pub.table_shown


def _rules(pub: ProtectedRun) -> None:
    """Time and slice rules, to a fixed point."""
    while True:
        changed = _time_rule(pub) | _hour_rule(pub) | _sibling_rule(pub)
        if not changed:
            return


def _hidden_day(pub: ProtectedRun, stat: Stat, day: int, sc: SliceCell) -> bool:
    cell: StatCell = (stat, "day", "1d", day, sc)
    return pub.present(cell) and not pub.known(cell)


def _time_rule(pub: ProtectedRun) -> bool:
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


def _hour_rule(pub: ProtectedRun) -> bool:
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


def _sibling_rule(pub: ProtectedRun) -> bool:
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


def _hide_smallest(pub: ProtectedRun, cells: Iterable[StatCell]) -> bool:
    """Hide the shown run cell with the fewest units (then the first slice values)."""
    choices = sorted(
        (c for c in cells if c in pub.carriers and c not in pub.table_known),
        key=lambda c: (pub.size(c), c[4]),
    )
    return pub.hide(choices[0]) if choices else False


def _fix(pub: ProtectedRun, finding: Finding) -> bool:
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
    for candidate in candidates(pub, cell, finding.method):
        if not still_recoverable(pub, cell, candidate):
            return any([pub.hide(c) for c in candidate])
    # Nothing small enough closes it at once: take a step and let the next audit look again.
    return _hide_smallest(pub, sibling_cells(pub, cell)) or _hide_smallest(
        pub, series_neighbours(pub, cell)
    )

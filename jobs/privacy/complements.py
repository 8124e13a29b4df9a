"""Complements for a hidden cell: the cells that, hidden too, keep it from being recovered by
a route (siblings in a slice set, matching children, related statistics, neighbours in a
series of days or windows), in the order protection tries them.
"""

from __future__ import annotations

from dataclasses import replace

from jobs.privacy.engine import recoverable
from jobs.privacy.protect_state import (
    ProtectedRun,
    RowKey,
    StatCell,
    stat_cell,
)
from jobs.privacy.publication import FULL, HOURS_PER_DAY, build, project

#: How many candidate sets `candidates` tries per recoverable cell.
CANDIDATES = 12


def candidates(pub: ProtectedRun, cell: StatCell, method: str) -> list[list[StatCell]]:
    """Small sets of shown run cells whose hiding may close a route to `cell`, fewest units
    first: a shown window or day of its series around it; a sibling alone; a sibling with
    its children that match the cell's hidden children in a finer set (a rectangle, as
    complementary suppression in a table with margins needs)."""
    series = series_neighbours(pub, cell)  # in the order worth trying
    siblings = sorted(sibling_cells(pub, cell), key=lambda c: (pub.size(c), c[4]))
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


def _related(pub: ProtectedRun, cell: StatCell) -> list[StatCell]:
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


def _matching_children(pub: ProtectedRun, cell: StatCell, sibling: StatCell) -> list[StatCell]:
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


def still_recoverable(pub: ProtectedRun, cell: StatCell, hide: list[StatCell]) -> bool:
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


def series_neighbours(pub: ProtectedRun, cell: StatCell) -> list[StatCell]:
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


def sibling_cells(pub: ProtectedRun, cell: StatCell) -> list[StatCell]:
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

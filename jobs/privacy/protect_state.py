"""What protection works on: a run's rows, the statistic cells behind them, which are hidden
and which already published (`ProtectedRun`), and the decision it hands back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from jobs.metrics.definitions import Catalog
from jobs.privacy.audit import AuditReport, Finding
from jobs.privacy.engine import SliceCell
from jobs.privacy.publication import Row
from jobs.privacy.stats import Stat, all_metric_stats, stat_thresholds, units_of

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


class ProtectedRun:
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

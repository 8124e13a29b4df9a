"""What each metric row publishes, as statistics shared across metrics (from the catalog).

A statistic is one quantity that many rows can show in many cells:
- `sum` of an additive part (`Part.key`): counts and sums, additive over slices and time;
- `units` of a presence (a source, a filter and the value that must be non-null): distinct
  units, additive only along the source's unit attributes and never over time (unless the
  source's rows are independent units, when units are rows and add up like counts);
- `distinct`, `approx` (a part's exact or HyperLogLog distinct count) and `quantile` (a
  quantile part at one level): nothing adds up, but two rows showing the same statistic in
  the same cell show the same number.
The same statistic published by two metrics is one unknown: a cell one hides and the other
shows is not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.metrics.conditions import counts_column
from jobs.metrics.definitions import Catalog, MetricDef, Part, QuantilePart
from jobs.metrics.types import traits
from jobs.privacy.engine import Relations


@dataclass(frozen=True)
class Stat:
    """One published quantity and how it relates across cells."""

    kind: str  # sum | units | distinct | approx | quantile
    ident: tuple[str, ...]
    relations: Relations
    attributes: frozenset[str]
    time_additive: bool

    def __hash__(self) -> int:  # the audit hashes statistics millions of times
        return hash((self.kind, self.ident))

    def describe(self) -> str:
        return f"{self.kind}({', '.join(x for x in self.ident if x)})"


@dataclass(frozen=True)
class MetricStats:
    """The statistics one metric's rows publish."""

    value: tuple[Stat, ...]  # what its value is computed from (all needed to recover it)
    units: Stat | None  # its `units` column
    numerator: Stat | None  # its numerator column (None for quantiles and derived)
    threshold: int  # its minimum cell size
    carried: tuple[Stat, ...] = ()  # every statistic it shows: value statistics and units

    def __post_init__(self) -> None:
        stats = [*self.value, *([self.units] if self.units else [])]
        object.__setattr__(self, "carried", tuple(dict.fromkeys(stats)))


def units_stat(catalog: Catalog, part: Part | QuantilePart) -> Stat:
    """The distinct units of the rows that carry `part` (its filter; its value non-null)."""
    source = catalog.sources[part.source]
    value = part.value or ""
    if isinstance(part, Part) and (part.agg == "count" or counts_column(part, source.unit)):
        value = ""  # every row counts (a unit is only ever counted where it is known)
    ident = (part.source, part.filter or "", value)
    if source.independent_rows:
        return Stat("units", ident, "margins", frozenset(), True)
    return Stat("units", ident, "attributes", frozenset(source.unit_attributes), False)


def part_stat(catalog: Catalog, part: Part) -> Stat:
    """The statistic a part's total is: its sum, its units (a distinct count of the unit
    itself), or an opaque distinct count."""
    if part.agg in ("count", "sum"):
        return Stat("sum", (part.key,), "margins", frozenset(), True)
    if part.agg == "distinct_count" and counts_column(part, catalog.sources[part.source].unit):
        return units_stat(catalog, part)
    kind = "distinct" if part.agg == "distinct_count" else "approx"
    return Stat(kind, (part.key,), "none", frozenset(), False)


def metric_stats(catalog: Catalog, name: str) -> MetricStats | None:
    """What rows of `name` publish; None for derived metrics (functions of other rows)."""
    return _stats(catalog, name)


def _stats(catalog: Catalog, name: str) -> MetricStats | None:
    metric: MetricDef = catalog.metrics[name]
    threshold = metric.min_cell_size or catalog.settings.min_cell_size
    if traits(metric.type).finish == "derived":
        return None
    if traits(metric.type).finish == "quantile":
        q = metric.quantile_part
        assert q is not None and metric.quantile is not None
        stat = Stat("quantile", (q.key, f"{metric.quantile:g}"), "none", frozenset(), False)
        return MetricStats((stat,), units_stat(catalog, q), None, threshold)
    num, den = metric.numerator, metric.denominator
    assert num is not None
    if den is None:
        stat = part_stat(catalog, num)
        return MetricStats((stat,), units_stat(catalog, num), stat, threshold)
    num_stat, den_stat = part_stat(catalog, num), part_stat(catalog, den)
    return MetricStats((num_stat, den_stat), units_stat(catalog, den), num_stat, threshold)


def all_metric_stats(catalog: Catalog) -> dict[str, MetricStats]:
    """Every non-derived metric's statistics."""
    out = {}
    for name in catalog.metrics:
        stats = metric_stats(catalog, name)
        if stats is not None:
            out[name] = stats
    return out


def stat_thresholds(stats: dict[str, MetricStats]) -> dict[Stat, int]:
    """Per statistic, the largest minimum cell size of the metrics that publish it: the
    statistic is hidden in a cell for all of them or for none."""
    out: dict[Stat, int] = {}
    for s in stats.values():
        for stat in s.carried:
            out[stat] = max(out.get(stat, 0), s.threshold)
    return out


def units_of(stat: Stat, catalog: Catalog) -> Stat | None:
    """The units statistic whose count decides whether `stat` is sensitive in a cell."""
    if stat.kind == "units":
        return stat
    parts: dict[str, Part | QuantilePart] = {}
    for m in catalog.metrics.values():
        for p in m.parts():
            parts[p.key] = p
        if m.quantile_part is not None:
            parts[m.quantile_part.key] = m.quantile_part
    part = parts.get(stat.ident[0])
    return units_stat(catalog, part) if part is not None else None

"""Compile a catalog (or a selection of it) into an explicit plan, printable before any Spark.

One *pass* per source: a single scan of the source that computes every part of every metric
over it, for all their slices (as grouping sets), windows and grains (daily windows and
hours share the pass), in one two-level aggregation (per unit, then per slice). Ratios
whose parts come from different sources are joined after the passes; derived metrics are
computed last, in dependency order.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.metrics.conditions import (
    EVERY_ROW,
    Presence,
    counts_column,
    has_own_kind,
    presence,
    rows_within,
)
from jobs.metrics.definitions import Catalog, Grain, MetricDef, Part, QuantilePart
from jobs.metrics.types import traits


@dataclass(frozen=True)
class PassPlan:
    """One scan of one source and everything computed from it, at every grain."""

    source: str
    unit: str  # the source's unit column
    windows: tuple[str, ...]
    slice_sets: tuple[tuple[str, ...], ...]
    parts: tuple[Part, ...]
    quantile_parts: tuple[QuantilePart, ...]
    quantiles: tuple[tuple[str, tuple[float, ...]], ...]  # quantile part key -> levels
    ratio_pairs: tuple[tuple[str, str], ...]  # (numerator key, denominator key) in this pass
    metrics: tuple[str, ...]
    #: (window, grouping set, kind) combinations some metric reads; kind is "units" or the
    #: key of a distinct-count or quantile part. Rows are expanded only into these.
    needs: frozenset[tuple[str, tuple[str, ...], str]] = frozenset()
    #: Parts whose distinct units some metric reports, and additive parts whose per-unit
    #: sums of squares an interval needs; other parts skip those aggregates.
    units_of: frozenset[str] = frozenset()
    squares_of: frozenset[str] = frozenset()
    #: The source's unit attributes among the dimensions: the unit level groups by each
    #: grouping set without them (`unit_sets`) and level 2 puts them back, per unit.
    attributes: tuple[str, ...] = ()

    def unit_set(self, slice_set: tuple[str, ...]) -> tuple[str, ...]:
        """The grouping set of the unit level that serves `slice_set`."""
        return tuple(d for d in slice_set if d not in self.attributes)

    @property
    def unit_sets(self) -> tuple[tuple[str, ...], ...]:
        """The unit level's grouping sets: each slice set without the unit attributes."""
        return tuple(dict.fromkeys(self.unit_set(s) for s in self.slice_sets))

    def counts_units(self, part: Part) -> bool:
        """Whether `part` is an exact distinct count of the unit itself (read from the
        per-unit level, needing no grouping by value of its own)."""
        return part.agg == "distinct_count" and counts_column(part, self.unit)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(sorted({d for s in self.slice_sets for d in s}))

    @property
    def scans(self) -> tuple[str, ...]:
        """What each read of the source computes: always the per-unit branch, plus one
        read for exact distinct values and quantiles, one for sketches, and one for the
        values of the unit attributes (to decode their hashes), if any."""
        out = ["per-unit sums and units, shuffled by unit"]
        if self.value_parts or self.quantile_parts:
            out.append("values for exact distinct counts and quantiles")
        if self.sketch_parts:
            out.append("HyperLogLog sketches")
        if self.attributes:
            out.append("the unit attributes' values")
        return tuple(out)

    @property
    def value_parts(self) -> tuple[Part, ...]:
        """Exact distinct counts of a value other than the unit: grouped by that value."""
        return tuple(
            p for p in self.parts if p.agg == "distinct_count" and has_own_kind(p, self.unit)
        )

    @property
    def counted_parts(self) -> tuple[Part, ...]:
        """Parts whose per-unit count of rows carrying them the unit level must compute:
        counts (their total), parts whose units a metric reads (quantile parts are
        counted separately), distinct counts of the unit, and both parts of a ratio whose
        numerator rows are not provably among its denominator rows."""
        loose = {k for pair in self.pairs_needing_units for k in pair}
        return tuple(
            p
            for p in self.parts
            if p.agg == "count" or p.key in self.units_of or p.key in loose or self.counts_units(p)
        )

    @property
    def presences(self) -> tuple[Presence, ...]:
        """The distinct presences the unit level counts rows of (counted and quantile
        parts), every row first."""
        counted: list[Part | QuantilePart] = [*self.counted_parts, *self.quantile_parts]
        return tuple(dict.fromkeys([EVERY_ROW, *[presence(p) for p in counted]]))

    @property
    def pairs_needing_units(self) -> tuple[tuple[str, str], ...]:
        """Ratio pairs whose units with either part differ from the denominator's units."""
        parts = {p.key: p for p in self.parts}
        return tuple((n, d) for n, d in self.ratio_pairs if not rows_within(parts[n], parts[d]))

    @property
    def sketch_parts(self) -> tuple[Part, ...]:
        """Approximate distinct counts: HyperLogLog sketches per cell."""
        return tuple(p for p in self.parts if p.agg == "approx_distinct_count")

    @property
    def daily_windows(self) -> tuple[str, ...]:
        return tuple(w for w in self.windows if w.endswith("d"))

    @property
    def hourly(self) -> bool:
        return "1h" in self.windows

    @property
    def grains(self) -> tuple[Grain, ...]:
        day: tuple[Grain, ...] = ("day",) if self.daily_windows else ()
        return day + (("hour",) if self.hourly else ())

    def unit_expansion(self, output_days: int) -> int:
        """Unit-level rows per source row at most: per window, the unit sets it needs
        units for, times the periods one row reaches (its days, within the output)."""
        per_window: dict[str, set[tuple[str, ...]]] = {}
        for w, slice_set, kind in self.needs:
            if kind == "units":
                per_window.setdefault(w, set()).add(self.unit_set(slice_set))
        return max(1, sum(len(n) * min(window_days(w), output_days) for w, n in per_window.items()))

    @property
    def lookback_days(self) -> int:
        """Days before the first output date that the windows need."""
        return max([window_days(w) for w in self.daily_windows], default=1) - 1

    @property
    def name(self) -> str:
        return self.source


@dataclass(frozen=True)
class Plan:
    passes: tuple[PassPlan, ...]
    cross_source: tuple[str, ...]
    derived: tuple[str, ...]  # in dependency order
    metrics: tuple[str, ...]  # every metric computed, including dependencies of a selection


def window_order(window: str) -> tuple[bool, int]:
    """Daily windows by length, then hourly ones."""
    return (window.endswith("h"), window_days(window))


def window_days(window: str) -> int:
    """Length of a daily window such as '7d' in days ('1h' counts as 1)."""
    return int(window[:-1]) if window.endswith("d") else 1


def slice_set_name(slice_set: tuple[str, ...]) -> str:
    return ",".join(slice_set) if slice_set else "overall"


def _order(sets: set[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted(sets, key=lambda s: (len(s), s)))


def with_dependencies(catalog: Catalog, names: list[str]) -> list[str]:
    """The named metrics plus every metric a derived one among them needs, in catalog order."""
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(catalog.metrics[name].depends_on)
    return [n for n in catalog.metrics if n in wanted]


def derived_order(catalog: Catalog, names: list[str]) -> tuple[str, ...]:
    """Derived metrics among `names`, each after the derived metrics it uses."""
    done: list[str] = []

    def visit(name: str) -> None:
        metric = catalog.metrics[name]
        if traits(metric.type).finish != "derived" or name in done:
            return
        for dep in metric.depends_on:
            visit(dep)
        done.append(name)

    for name in names:
        visit(name)
    return tuple(done)


def _kinds(metric: MetricDef, source: str, unit: str) -> list[str]:
    """The expansion kinds a metric reads in the pass over `source`."""
    kinds = ["units"]  # per-unit sums: every part's totals, units and variances
    kinds += [p.key for p in metric.parts() if p.source == source and has_own_kind(p, unit)]
    if metric.quantile_part is not None and metric.quantile_part.source == source:
        kinds.append(metric.quantile_part.key)
    return kinds


def compile_plan(catalog: Catalog, selection: list[str] | None = None) -> Plan:
    """The plan for `selection` (default: the whole catalog)."""
    unknown = [n for n in selection or [] if n not in catalog.metrics]
    if unknown:
        raise KeyError(f"unknown metric(s): {', '.join(unknown)}")
    names = with_dependencies(catalog, selection or list(catalog.metrics))
    groups: dict[str, list[MetricDef]] = {}
    cross: list[str] = []
    for name in names:
        metric = catalog.metrics[name]
        if traits(metric.type).finish == "derived":
            continue
        sources = metric.sources()
        if len(sources) > 1:
            cross.append(name)
        for source in sources:
            groups.setdefault(source, []).append(metric)
    passes = []
    for source, metrics in sorted(groups.items()):
        parts: dict[str, Part] = {}
        qparts: dict[str, QuantilePart] = {}
        levels: dict[str, set[float]] = {}
        pairs: dict[tuple[str, str], None] = {}
        units_of: set[str] = set()
        squares_of: set[str] = set()
        for m in metrics:
            for p in m.parts():
                if p.source == source:
                    parts.setdefault(p.key, p)
            if m.quantile_part is not None and m.quantile is not None:
                qparts.setdefault(m.quantile_part.key, m.quantile_part)
                levels.setdefault(m.quantile_part.key, set()).add(m.quantile)
            n, d = m.numerator, m.denominator
            if m.quantile_part is not None:
                units_of.add(m.quantile_part.key)
            elif d is None and n is not None:
                units_of.add(n.key)
            elif n is not None and d is not None and n.source != d.source:
                mine = n if n.source == source else d
                units_of.add(mine.key)
                if mine.additive:
                    squares_of.add(mine.key)
            elif n is not None and d is not None:
                units_of.add(d.key)
                if m.ci == "delta" and n.additive and d.additive:
                    # Cross products for the delta method; only sums and counts have them.
                    pairs[(n.key, d.key)] = None
                    squares_of.update((n.key, d.key))
        # Suppression is decided per part cell on the part's own distinct units (numerators
        # too, not only the units a metric publishes): every part counts its units.
        units_of.update(parts)
        windows = {w for m in metrics for w in m.windows}
        unit = catalog.sources[source].unit
        slice_sets = _order({s for m in metrics for s in m.slices})
        dimensions = {d for s in slice_sets for d in s}
        attributes = tuple(a for a in catalog.sources[source].unit_attributes if a in dimensions)
        needs = {
            (w, s, kind)
            for m in metrics
            for kind in _kinds(m, source, unit)
            for w in m.windows
            for s in m.slices
        }
        passes.append(
            PassPlan(
                source=source,
                unit=unit,
                windows=tuple(sorted(windows, key=window_order)),
                slice_sets=slice_sets,
                parts=tuple(sorted(parts.values(), key=lambda p: (p.agg, p.describe()))),
                quantile_parts=tuple(sorted(qparts.values(), key=lambda q: q.describe())),
                quantiles=tuple((k, tuple(sorted(v))) for k, v in sorted(levels.items())),
                ratio_pairs=tuple(pairs),
                metrics=tuple(m.name for m in metrics),
                needs=frozenset(needs),
                units_of=frozenset(units_of),
                squares_of=frozenset(squares_of),
                attributes=attributes,
            )
        )
    return Plan(tuple(passes), tuple(cross), derived_order(catalog, names), tuple(names))


def render_plan(catalog: Catalog, plan: Plan) -> str:
    """The plan as text for humans (and the golden test)."""
    scans = sum(len(p.scans) for p in plan.passes)
    lines = [
        f"Plan: {len(plan.metrics)} metrics, {len(plan.passes)} aggregation "
        f"pass{'' if len(plan.passes) == 1 else 'es'} (one per "
        f"source, one Spark job each, {scans} reads), {len(plan.cross_source)} cross-source "
        f"ratios, {len(plan.derived)} derived metrics.",
        "",
    ]
    for i, p in enumerate(plan.passes, start=1):
        source = catalog.sources[p.source]
        joins = "".join(f" + lookup {j.source} on {','.join(j.on)}" for j in source.joins)
        lookback = f", reads {p.lookback_days} extra days for windows" if p.lookback_days else ""
        lines.append(f"Pass {i}: {p.source} ({source.format} {source.location}{joins})")
        grains = f"{'grains' if len(p.grains) > 1 else 'grain'} {', '.join(p.grains)}"
        lines.append(f"  {grains}; windows {' '.join(p.windows)}{lookback}; unit {source.unit}")
        lines.append(
            f"  {len(p.slice_sets)} grouping sets: "
            + " | ".join(slice_set_name(s) for s in p.slice_sets)
        )
        lines.append(f"  {len(p.parts) + len(p.quantile_parts)} aggregates:")
        lines.extend(f"    - {part.describe()}" for part in p.parts)
        quantiles = dict(p.quantiles)
        for q in p.quantile_parts:
            levels = ", ".join(f"p{round(level * 100):g}" for level in quantiles[q.key])
            lines.append(f"    - {q.describe()} -> {levels}")
        if p.attributes:
            lines.append(
                f"  unit attributes: {', '.join(p.attributes)}, checked constant per unit and "
                "period (else the pass runs again without them)"
            )
            n = len(p.unit_sets)
            lines.append(
                f"  units grouped by {n} set{'' if n == 1 else 's'}: "
                + " | ".join(slice_set_name(s) for s in p.unit_sets)
            )
        lines.append(f"  reads: {'; '.join(p.scans)}")
        lines.append(f"  metrics ({len(p.metrics)}): {', '.join(p.metrics)}")
        lines.append("")
    if plan.cross_source:
        lines.append("After the passes, joined on (period, window, slice):")
        for name in plan.cross_source:
            m = catalog.metrics[name]
            assert m.numerator is not None and m.denominator is not None
            lines.append(
                f"  - {name} = {m.numerator.source}.{m.numerator.describe()} / "
                f"{m.denominator.source}.{m.denominator.describe()}"
            )
    if plan.derived:
        lines.append("Derived, in order:")
        lines.extend(f"  - {n} = {catalog.metrics[n].expression}" for n in plan.derived)
    settings = catalog.settings
    lines.append(
        f"Then: confidence intervals ({settings.confidence_level:.0%}), publish gates (on "
        f"failure: {settings.gates_on_failure}), suppression of every statistic (numerators "
        f"too) with fewer than {settings.min_cell_size} units in every metric that shows it, "
        "with time and complementary suppression until the privacy audit finds no "
        "recoverable cell (a gate that always fails the run)."
    )
    return "\n".join(lines) + "\n"

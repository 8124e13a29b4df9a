"""Checks across the whole catalog, once every source and metric has been read.

Some problems only show between definitions: a derived metric whose inputs lack its slices,
windows or grain, derived metrics that depend on each other in a cycle, a slice its source
does not offer, or (with a checker, e.g. Spark's) SQL that does not resolve against a
source's columns. They are checked here, after each definition is valid on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from jobs.core.located_yaml import YamlPath
from jobs.metrics.definitions import MetricDef, SourceDef
from jobs.metrics.spec_problems import Collector, Raw, label
from jobs.metrics.types import traits

if TYPE_CHECKING:
    from jobs.metrics.spec_problems import ExpressionChecker


def check_derived(raw: Raw, metrics: dict[str, MetricDef], out: Collector) -> None:
    """Derived metrics: their inputs exist, cover their slices, windows and grain, no cycles."""
    for name, metric in metrics.items():
        doc, path, _, _ = raw.metrics[name]
        for dep in metric.depends_on:
            if dep not in metrics:
                continue  # the dependency had its own problems, already reported
            other = metrics[dep]
            if other.grain != metric.grain:
                out.add(
                    doc,
                    (*path, "expression"),
                    "E035",
                    f"'{name}' ({metric.grain}) uses '{dep}' ({other.grain}); grains must match",
                )
            missing_slices = [list(s) for s in metric.slices if s not in other.slices]
            if missing_slices:
                out.add(
                    doc,
                    (*path, "slices") if "slices" in raw.metrics[name][2] else path,
                    "E035",
                    f"'{name}' is sliced by {missing_slices}, which input '{dep}' does not compute",
                )
            missing_windows = [w for w in metric.windows if w not in other.windows]
            if missing_windows:
                out.add(
                    doc,
                    (*path, "windows") if "windows" in raw.metrics[name][2] else path,
                    "E035",
                    f"'{name}' has windows {missing_windows}, which input '{dep}' does not compute",
                )
    for cycle in find_cycles({n: m.depends_on for n, m in metrics.items()}):
        doc, path, _, _ = raw.metrics[cycle[0]]
        out.add(
            doc,
            (*path, "expression"),
            "E036",
            "derived metrics form a cycle: " + " -> ".join([*cycle, cycle[0]]),
        )


def check_slices_against_sources(
    raw: Raw, metrics: dict[str, MetricDef], sources: dict[str, SourceDef], out: Collector
) -> None:
    """Every dimension a metric is sliced by must be offered by each of its sources."""
    for name, metric in metrics.items():
        doc, path, body, _ = raw.metrics[name]
        for source_name in metric.sources():
            offered = sources[source_name].dimension_names()
            missing = sorted({d for s in metric.slices for d in s} - set(offered))
            if missing:
                out.add(
                    doc,
                    (*path, "slices") if "slices" in body else path,
                    "E024",
                    f"metric '{name}' is sliced by {missing}, which source '{source_name}' "
                    f"does not offer (it offers: {', '.join(offered) or 'none'})",
                )


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each cycle in a dependency graph once, starting from its smallest name."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def visit(node: str, trail: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in trail:
                cycle = trail[trail.index(nxt) :]
                start = cycle.index(min(cycle))
                canon = tuple(cycle[start:] + cycle[:start])
                if canon not in seen:
                    seen.add(canon)
                    cycles.append(list(canon))
            elif nxt in graph:
                visit(nxt, [*trail, nxt])

    for node in sorted(graph):
        visit(node, [node])
    return cycles


def check_sql(
    raw: Raw,
    sources: dict[str, SourceDef],
    metrics: dict[str, MetricDef],
    checker: ExpressionChecker,
    out: Collector,
) -> None:
    """Every SQL expression resolves against its source's columns, with the right type."""
    for name, source in sources.items():
        doc, path, _ = raw.sources[name]
        out.problems.extend(checker.source_problems(doc, path, source))
    for name, metric in metrics.items():
        doc, path, body, _ = raw.metrics[name]
        if traits(metric.type).finish == "derived":
            error = checker.derived_problem(metric.expression or "", sorted(metrics))
            if error:
                out.add(doc, (*path, "expression"), "E041", f"expression: {error}")
            continue
        src = metric.source or ""
        value_expect = traits(metric.type).value_expect
        checks: list[tuple[YamlPath, str, Any, Literal["boolean", "numeric", "any"]]] = [
            ((*path, "filter"), src, body.get("filter"), "boolean"),
            ((*path, "value"), src, body.get("value"), value_expect),
        ]
        for side, part in (("numerator", metric.numerator), ("denominator", metric.denominator)):
            part_body = body.get(side)
            if isinstance(part_body, dict) and part is not None:
                expect: Literal["numeric", "any"] = "any" if "distinct" in part.agg else "numeric"
                checks.append(
                    ((*path, side, "filter"), part.source, part_body.get("filter"), "boolean")
                )
                checks.append(((*path, side, "value"), part.source, part_body.get("value"), expect))
                if body.get("filter") and part.source != src:
                    checks.append(((*path, "filter"), part.source, body.get("filter"), "boolean"))
        for where, source_name, expr, kind in checks:
            if isinstance(expr, str) and source_name:
                error = checker.expression_problem(source_name, expr, kind)
                if error:
                    out.add(doc, where, "E041", f"{label(where[2:])}: {error}")

"""Load every YAML file under `metric_defs/` into one validated `Catalog`.

All problems are collected and raised together as one `InputError`, each naming the file,
line and key, with a did-you-mean where a name is close to a known one. This module checks
structure, names and references without Spark; `sql_check` then checks the SQL expressions
against the sources' real columns.

The steps live in their own modules: `spec_problems` (the problem collector and shared
checks), `load_sources`, `windows_slices`, `load_metrics` and `cross_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.core.config import data_dir
from jobs.core.located_yaml import (
    InputError,
    LocatedDocument,
    Location,
    Problem,
    YamlPath,
    load_located,
)
from jobs.metrics.cross_checks import (
    check_derived,
    check_slices_against_sources,
    check_sql,
    find_cycles,
)
from jobs.metrics.definitions import Catalog, MetricDef
from jobs.metrics.load_metrics import read_metric
from jobs.metrics.load_sources import check_joins, read_dimensions, read_settings, read_source
from jobs.metrics.spec_problems import NAME, CheckerFactory, Collector, ExpressionChecker, Raw, kind

__all__ = [
    "CheckerFactory",
    "ExpressionChecker",
    "catalog_from_documents",
    "definition_files",
    "file_problems",
    "find_cycles",
    "load_catalog",
]

TOP_KEYS = ("settings", "dimensions", "slice_sets", "sources", "defaults", "metrics")
#: Read by `jobs.experiments.loader`, next to the catalog; the catalog itself ignores them.
EXPERIMENT_KEYS = ("assignment_sources", "experiments")
DEFAULT_KEYS = (
    "owner",
    "slices",
    "windows",
    "grain",
    "source",
    "tags",
    "min_cell_size",
    "ci",
    "decimals",
)


def definition_files(defs_dir: Path) -> list[Path]:
    """The YAML files of a catalog, in a stable order."""
    return sorted([*defs_dir.glob("*.yaml"), *defs_dir.glob("*.yml")])


def default_defs_dir() -> Path:
    """`$SAFETY_METRICS_DEFS_DIR`, else `./metric_defs`, else the one beside the source tree."""
    return data_dir("SAFETY_METRICS_DEFS_DIR", "metric_defs")


def load_catalog(defs_dir: Path, checker: CheckerFactory | None = None) -> Catalog:
    """Read, check and resolve every definition file in `defs_dir`; raise `InputError`."""
    files = definition_files(defs_dir)
    if not files:
        where = Location(str(defs_dir), 1, 1)
        raise InputError([Problem(where, "E010", "no metric definition files (*.yaml) found")])
    docs: list[LocatedDocument] = []
    problems: list[Problem] = []
    for path in files:
        try:
            docs.append(load_located(path))
        except InputError as exc:
            problems.extend(exc.problems)
    catalog, more = catalog_from_documents(docs, checker)
    problems.extend(more)
    if problems or catalog is None:
        raise InputError(problems)
    return catalog


def catalog_from_documents(
    docs: list[LocatedDocument], checker: CheckerFactory | None = None
) -> tuple[Catalog | None, list[Problem]]:
    """Build the catalog from parsed documents; returns it (or None) and every problem."""
    out = Collector()
    raw = Raw()
    for doc in docs:
        _read_document(doc, raw, out)
    settings = read_settings(raw, out)
    dimensions = tuple(raw.dimensions)
    sources = {name: read_source(name, *entry, raw, out) for name, entry in raw.sources.items()}
    check_joins(raw, sources, out)
    metrics: dict[str, MetricDef] = {}
    for name, (doc, path, body, defaults) in raw.metrics.items():
        metric = read_metric(name, doc, path, body, defaults, raw, sources, settings, out)
        if metric is not None:
            metrics[name] = metric
    check_derived(raw, metrics, out)
    check_slices_against_sources(raw, metrics, sources, out)
    if checker is not None and not out.problems:
        check_sql(raw, sources, metrics, checker(sources), out)
    if out.problems:
        return None, out.problems
    return Catalog(settings, dimensions, sources, metrics), []


# --- reading each file ----------------------------------------------------------------------


def file_problems(doc: LocatedDocument) -> list[Problem]:
    """A definitions file that defines nothing: empty (or only comments), or a mapping
    without any key the catalog or the experiments read (a file whose keys are all
    misspelt also gets one unknown-key problem per key)."""
    known = (*TOP_KEYS, *EXPERIMENT_KEYS)
    where = Location(doc.file, 1, 1)
    if doc.data is None:
        return [
            Problem(
                where,
                "E016",
                "definitions file is empty",
                f"give it at least one of {', '.join(known)}, or delete it",
            )
        ]
    if isinstance(doc.data, dict) and not any(key in known for key in doc.data):
        return [
            Problem(
                where,
                "E017",
                "definitions file has no recognised top-level key, so it defines nothing",
                f"top-level keys: {', '.join(known)}",
            )
        ]
    return []


def _read_document(doc: LocatedDocument, raw: Raw, out: Collector) -> None:
    out.problems.extend(file_problems(doc))
    if doc.data is None:
        return
    top = out.mapping(doc, (), doc.data, "a definitions file")
    if top is None:
        return
    out.keys(doc, (), top, (*TOP_KEYS, *EXPERIMENT_KEYS))
    if "settings" in top:
        if raw.settings is not None:
            first = raw.settings[0].where(("settings",))
            out.add(doc, ("settings",), "E011", f"'settings' is already given at {first}")
        else:
            body = out.mapping(doc, ("settings",), top["settings"], "settings")
            if body is not None:
                raw.settings = (doc, body)
    if "dimensions" in top:
        read_dimensions(doc, top["dimensions"], raw, out)
    for key, target in (("slice_sets", raw.slice_sets), ("sources", raw.sources)):
        if key in top:
            body = out.mapping(doc, (key,), top[key], key)
            for name, value in (body or {}).items():
                _register(doc, (key, name), name, target, out, key[:-1].replace("_", " "))
                if name not in target:
                    if key == "sources":
                        src = out.mapping(doc, (key, name), value, f"source '{name}'")
                        if src is not None:
                            raw.sources[name] = (doc, (key, name), src)
                    else:
                        raw.slice_sets[name] = (doc, (key, name), value)
    defaults: dict[str, Any] = {}
    if "defaults" in top:
        defaults = out.mapping(doc, ("defaults",), top["defaults"], "defaults") or {}
        out.keys(doc, ("defaults",), defaults, DEFAULT_KEYS)
        defaults = {**defaults, "__doc__": doc}
    if "metrics" in top:
        items = top["metrics"]
        if not isinstance(items, list):
            out.add(doc, ("metrics",), "E003", f"metrics must be a list, got {kind(items)}")
            return
        for i, item in enumerate(items):
            path: YamlPath = ("metrics", i)
            body = out.mapping(doc, path, item, "a metric")
            if body is None:
                continue
            metric_name = body.get("name")
            if not isinstance(metric_name, str) or not NAME.match(metric_name):
                out.add(
                    doc,
                    (*path, "name") if "name" in body else path,
                    "E012",
                    f"metric name must be snake_case text (a-z, 0-9, _), got {metric_name!r}",
                )
                continue
            if metric_name in raw.metrics:
                first = raw.metrics[metric_name][0].where(raw.metrics[metric_name][1])
                out.add(
                    doc,
                    (*path, "name"),
                    "E013",
                    f"metric '{metric_name}' is already defined at {first}",
                )
                continue
            raw.metrics[metric_name] = (doc, path, body, defaults)


def _register(
    doc: LocatedDocument,
    path: YamlPath,
    name: Any,
    seen: Mapping[str, Any],
    out: Collector,
    what: str,
) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        out.add(doc, path, "E012", f"{what} name must be snake_case text, got {name!r}")
    elif name in seen:
        other = seen[name]
        out.add(
            doc, path, "E013", f"{what} '{name}' is already defined at {other[0].where(other[1])}"
        )

"""Load every YAML file under `metric_defs/` into one validated `Catalog`.

All problems are collected and raised together as one `InputError`, each naming the file,
line and key, with a did-you-mean where a name is close to a known one. This module checks
structure, names and references without Spark; `sql_check` then checks the SQL expressions
against the sources' real columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from jobs.located_yaml import (
    InputError,
    LocatedDocument,
    Location,
    Problem,
    YamlPath,
    did_you_mean,
    load_located,
    unknown_key_problems,
)
from jobs.metrics.definitions import (
    AGG_KINDS,
    CI_METHODS,
    METRIC_TYPES,
    AggKind,
    Catalog,
    CiMethod,
    GoodDirection,
    Grain,
    JoinDef,
    MetricDef,
    MetricType,
    Part,
    QuantilePart,
    Settings,
    SourceDef,
)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
WINDOW = re.compile(r"^([1-9][0-9]*)([dh])$")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

TOP_KEYS = ("settings", "dimensions", "slice_sets", "sources", "defaults", "metrics")
SETTINGS_KEYS = (
    "min_cell_size",
    "confidence_level",
    "default_windows",
    "gates",
    "suppression_rounds",
)
GATES_KEYS = ("on_failure", "volume_history_days", "volume_min_ratio", "volume_max_ratio")
SOURCE_KEYS = (
    "description",
    "table",
    "path",
    "format",
    "catalog_table",
    "time_column",
    "date_column",
    "unit",
    "independent_rows",
    "filter",
    "join",
    "columns",
    "dimensions",
)
JOIN_KEYS = ("source", "on", "columns", "how")
DEFAULT_KEYS = ("owner", "slices", "windows", "grain", "source", "tags", "min_cell_size", "ci")
METRIC_KEYS = (
    "name",
    "description",
    "owner",
    "unit",
    "good_direction",
    "type",
    "source",
    "filter",
    "value",
    "numerator",
    "denominator",
    "per",
    "quantile",
    "expression",
    "slices",
    "windows",
    "grain",
    "ci",
    "min_cell_size",
    "tags",
)
PART_KEYS = ("agg", "value", "filter", "source")
#: Keys each metric type needs, and keys it does not use (a mistake to set).
REQUIRED: dict[str, tuple[str, ...]] = {
    "count": ("source",),
    "sum": ("source", "value"),
    "mean": ("source", "value"),
    "ratio": ("numerator", "denominator"),
    "rate": ("numerator", "denominator", "per"),
    "distinct_count": ("source", "value"),
    "approx_distinct_count": ("source", "value"),
    "quantile": ("source", "value", "quantile"),
    "derived": ("expression",),
}
TYPE_SPECIFIC = ("value", "numerator", "denominator", "per", "quantile", "expression")
ALLOWED_SPECIFIC: dict[str, tuple[str, ...]] = {
    "count": (),
    "sum": ("value",),
    "mean": ("value",),
    "ratio": ("numerator", "denominator", "per"),
    "rate": ("numerator", "denominator", "per"),
    "distinct_count": ("value",),
    "approx_distinct_count": ("value",),
    "quantile": ("value", "quantile"),
    "derived": ("expression",),
}


@dataclass
class _Collector:
    """Problems found so far, and helpers that add located ones."""

    problems: list[Problem] = field(default_factory=list)

    def add(
        self, doc: LocatedDocument, path: YamlPath, code: str, msg: str, hint: str | None = None
    ) -> None:
        self.problems.append(Problem(doc.where(path), code, msg, hint))

    def at(self, where: Location, code: str, msg: str, hint: str | None = None) -> None:
        self.problems.append(Problem(where, code, msg, hint))

    def mapping(
        self, doc: LocatedDocument, path: YamlPath, value: Any, what: str
    ) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.add(doc, path, "E003", f"{what} must be a mapping, got {_kind(value)}")
        return None

    def keys(
        self, doc: LocatedDocument, path: YamlPath, value: dict[str, Any], allowed: Iterable[str]
    ) -> None:
        self.problems.extend(unknown_key_problems(doc, path, value, allowed))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _label(path: YamlPath) -> str:
    return ".".join(str(p) for p in path)


@dataclass
class _Raw:
    """Everything read from the files, before cross-references are resolved."""

    settings: tuple[LocatedDocument, dict[str, Any]] | None = None
    dimensions: dict[str, Location] = field(default_factory=dict)
    slice_sets: dict[str, tuple[LocatedDocument, YamlPath, Any]] = field(default_factory=dict)
    sources: dict[str, tuple[LocatedDocument, YamlPath, dict[str, Any]]] = field(
        default_factory=dict
    )
    metrics: dict[str, tuple[LocatedDocument, YamlPath, dict[str, Any], dict[str, Any]]] = field(
        default_factory=dict
    )


def definition_files(defs_dir: Path) -> list[Path]:
    """The YAML files of a catalog, in a stable order."""
    return sorted([*defs_dir.glob("*.yaml"), *defs_dir.glob("*.yml")])


class ExpressionChecker(Protocol):
    """Checks SQL expressions against sources' columns (see `sql_check`)."""

    def source_problems(
        self, doc: LocatedDocument, path: YamlPath, source: SourceDef
    ) -> list[Problem]: ...

    def expression_problem(
        self, source: str, expr: str, expect: Literal["boolean", "numeric", "any"]
    ) -> str | None: ...

    def derived_problem(self, expr: str, metric_names: list[str]) -> str | None: ...


CheckerFactory = Callable[[dict[str, SourceDef]], ExpressionChecker]


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
    out = _Collector()
    raw = _Raw()
    for doc in docs:
        _read_document(doc, raw, out)
    settings = _settings(raw, out)
    dimensions = tuple(raw.dimensions)
    sources = {name: _source(name, *entry, raw, out) for name, entry in raw.sources.items()}
    _check_joins(raw, sources, out)
    metrics: dict[str, MetricDef] = {}
    for name, (doc, path, body, defaults) in raw.metrics.items():
        metric = _metric(name, doc, path, body, defaults, raw, sources, settings, out)
        if metric is not None:
            metrics[name] = metric
    _check_derived(raw, metrics, out)
    _check_slices_against_sources(raw, metrics, sources, out)
    if checker is not None and not out.problems:
        _check_sql(raw, sources, metrics, checker(sources), out)
    if out.problems:
        return None, out.problems
    return Catalog(settings, dimensions, sources, metrics), []


# --- reading each file ----------------------------------------------------------------------


def _read_document(doc: LocatedDocument, raw: _Raw, out: _Collector) -> None:
    if doc.data is None:
        return
    top = out.mapping(doc, (), doc.data, "a definitions file")
    if top is None:
        return
    out.keys(doc, (), top, TOP_KEYS)
    if "settings" in top:
        if raw.settings is not None:
            first = raw.settings[0].where(("settings",))
            out.add(doc, ("settings",), "E011", f"'settings' is already given at {first}")
        else:
            body = out.mapping(doc, ("settings",), top["settings"], "settings")
            if body is not None:
                raw.settings = (doc, body)
    if "dimensions" in top:
        _read_dimensions(doc, top["dimensions"], raw, out)
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
            out.add(doc, ("metrics",), "E003", f"metrics must be a list, got {_kind(items)}")
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
    out: _Collector,
    what: str,
) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        out.add(doc, path, "E012", f"{what} name must be snake_case text, got {name!r}")
    elif name in seen:
        other = seen[name]
        out.add(
            doc, path, "E013", f"{what} '{name}' is already defined at {other[0].where(other[1])}"
        )


def _read_dimensions(doc: LocatedDocument, value: Any, raw: _Raw, out: _Collector) -> None:
    names = list(value) if isinstance(value, dict | list) else None
    if names is None:
        out.add(
            doc,
            ("dimensions",),
            "E003",
            "dimensions must be a list of names or a mapping name -> description",
        )
        return
    for i, name in enumerate(names):
        path: YamlPath = ("dimensions", name if isinstance(value, dict) else i)
        if not isinstance(name, str) or not NAME.match(name):
            out.add(doc, path, "E012", f"dimension name must be snake_case text, got {name!r}")
        elif name in raw.dimensions:
            out.add(
                doc,
                path,
                "E013",
                f"dimension '{name}' is already declared at {raw.dimensions[name]}",
            )
        else:
            raw.dimensions[name] = doc.where(path)


# --- settings and sources ------------------------------------------------------------------


def _settings(raw: _Raw, out: _Collector) -> Settings:
    if raw.settings is None:
        return Settings()
    doc, body = raw.settings
    out.keys(doc, ("settings",), body, SETTINGS_KEYS)
    base = Settings()
    values: dict[str, Any] = {}
    if "min_cell_size" in body:
        values["min_cell_size"] = _int(
            doc, ("settings", "min_cell_size"), body["min_cell_size"], out, 1
        )
    if "suppression_rounds" in body:
        values["suppression_rounds"] = _int(
            doc, ("settings", "suppression_rounds"), body["suppression_rounds"], out, 1
        )
    if "confidence_level" in body:
        level = body["confidence_level"]
        if not isinstance(level, float) or not 0.5 <= level < 1:
            out.add(
                doc,
                ("settings", "confidence_level"),
                "E004",
                f"confidence_level must be a number in [0.5, 1), got {level!r}",
            )
        else:
            values["confidence_level"] = level
    if "default_windows" in body:
        values["default_windows"] = _windows(
            doc, ("settings", "default_windows"), body["default_windows"], "day", out
        )
    gates = body.get("gates")
    if gates is not None:
        g = out.mapping(doc, ("settings", "gates"), gates, "settings.gates") or {}
        out.keys(doc, ("settings", "gates"), g, GATES_KEYS)
        if "on_failure" in g:
            if g["on_failure"] not in ("fail", "warn"):
                out.add(
                    doc,
                    ("settings", "gates", "on_failure"),
                    "E004",
                    f"on_failure must be 'fail' or 'warn', got {g['on_failure']!r}",
                )
            else:
                values["gates_on_failure"] = g["on_failure"]
        if "volume_history_days" in g:
            values["volume_history_days"] = _int(
                doc, ("settings", "gates", "volume_history_days"), g["volume_history_days"], out, 1
            )
        for key in ("volume_min_ratio", "volume_max_ratio"):
            if key in g:
                v = g[key]
                if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                    out.add(
                        doc,
                        ("settings", "gates", key),
                        "E004",
                        f"{key} must be a positive number, got {v!r}",
                    )
                else:
                    values[key] = float(v)
    return replace(base, **values)


def _int(doc: LocatedDocument, path: YamlPath, value: Any, out: _Collector, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        out.add(doc, path, "E004", f"{_label(path)} must be an integer >= {minimum}, got {value!r}")
        return minimum
    return value


def _text(doc: LocatedDocument, path: YamlPath, value: Any, out: _Collector) -> str:
    if not isinstance(value, str) or not value.strip():
        out.add(doc, path, "E004", f"{_label(path)} must be non-empty text, got {value!r}")
        return ""
    return value.strip()


def _source(
    name: str,
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    raw: _Raw,
    out: _Collector,
) -> SourceDef:
    out.keys(doc, path, body, SOURCE_KEYS)
    given = [k for k in ("table", "path", "catalog_table") if k in body]
    fmt = "delta"
    location = ""
    if len(given) != 1:
        out.add(
            doc,
            path,
            "E005",
            f"source '{name}' needs exactly one of table, path, catalog_table "
            f"(got {given or 'none'})",
            "e.g. table: raw/views (a Delta table under the warehouse)",
        )
    else:
        key = given[0]
        location = _text(doc, (*path, key), body[key], out)
        if key == "catalog_table":
            fmt = "catalog"
        elif key == "path":
            fmt = body.get("format", "delta")
            if fmt not in ("delta", "parquet"):
                out.add(
                    doc, (*path, "format"), "E004", f"format must be delta or parquet, got {fmt!r}"
                )
    if "format" in body and given != ["path"]:
        out.add(doc, (*path, "format"), "E005", "format only applies with 'path'")
    for required in ("time_column", "unit"):
        if required not in body:
            out.add(doc, path, "E005", f"source '{name}' is missing '{required}'")
    columns = _expr_mapping(doc, (*path, "columns"), body.get("columns", {}), out)
    dims = body.get("dimensions", [])
    if isinstance(dims, list):
        dim_pairs = tuple((d, d) for d in dims if isinstance(d, str))
        bad = [d for d in dims if not isinstance(d, str)]
        if bad:
            out.add(
                doc, (*path, "dimensions"), "E004", f"dimension entries must be names, got {bad!r}"
            )
    else:
        dim_pairs = _expr_mapping(doc, (*path, "dimensions"), dims, out)
    for i, (dim, _) in enumerate(dim_pairs):
        if dim not in raw.dimensions:
            dim_path: YamlPath = (*path, "dimensions", dim if isinstance(dims, dict) else i)
            out.add(
                doc,
                dim_path,
                "E020",
                f"source '{name}' names dimension '{dim}', "
                "which is not declared under 'dimensions'",
                did_you_mean(dim, raw.dimensions)
                or "declare it in the catalog's top-level 'dimensions'",
            )
    joins = _joins(name, doc, path, body.get("join", []), out)
    independent = body.get("independent_rows", False)
    if not isinstance(independent, bool):
        out.add(
            doc,
            (*path, "independent_rows"),
            "E004",
            f"independent_rows must be true or false, got {independent!r}",
        )
        independent = False
    return SourceDef(
        name=name,
        format=cast(Any, fmt),
        location=location,
        time_column=str(body.get("time_column", "")),
        unit=str(body.get("unit", "")),
        date_column=body.get("date_column"),
        independent_rows=independent,
        filter=body.get("filter"),
        joins=joins,
        columns=columns,
        dimensions=dim_pairs,
        where=doc.where(path),
    )


def _expr_mapping(
    doc: LocatedDocument, path: YamlPath, value: Any, out: _Collector
) -> tuple[tuple[str, str], ...]:
    body = out.mapping(doc, path, value, _label(path))
    if body is None:
        return ()
    pairs = []
    for key, expr in body.items():
        if not isinstance(key, str) or not NAME.match(key):
            out.add(doc, (*path, key), "E012", f"column name must be snake_case text, got {key!r}")
        elif not isinstance(expr, str) or not expr.strip():
            out.add(doc, (*path, key), "E004", f"{_label((*path, key))} must be a SQL expression")
        else:
            pairs.append((key, expr.strip()))
    return tuple(pairs)


def _joins(
    name: str, doc: LocatedDocument, path: YamlPath, value: Any, out: _Collector
) -> tuple[JoinDef, ...]:
    if not isinstance(value, list):
        out.add(doc, (*path, "join"), "E003", f"join must be a list, got {_kind(value)}")
        return ()
    joins = []
    for i, item in enumerate(value):
        jpath: YamlPath = (*path, "join", i)
        body = out.mapping(doc, jpath, item, "a join")
        if body is None:
            continue
        out.keys(doc, jpath, body, JOIN_KEYS)
        on = body.get("on")
        on_list = [on] if isinstance(on, str) else on
        cols = body.get("columns")
        how = body.get("how", "left")
        if not isinstance(body.get("source"), str):
            out.add(doc, jpath, "E005", "a join needs 'source' (the name of another source)")
            continue
        if (
            not isinstance(on_list, list)
            or not on_list
            or not all(isinstance(c, str) for c in on_list)
        ):
            out.add(
                doc, (*jpath, "on"), "E005", "a join needs 'on': the key column(s) both sides share"
            )
            continue
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            out.add(
                doc,
                (*jpath, "columns") if "columns" in body else jpath,
                "E005",
                "a join needs 'columns': the joined source's columns to add",
            )
            continue
        if how not in ("left", "inner"):
            out.add(doc, (*jpath, "how"), "E004", f"how must be left or inner, got {how!r}")
            continue
        joins.append(JoinDef(body["source"], tuple(on_list), tuple(cols), how))
    return tuple(joins)


def _check_joins(raw: _Raw, sources: dict[str, SourceDef], out: _Collector) -> None:
    for name, source in sources.items():
        doc, path, _ = raw.sources[name]
        for i, join in enumerate(source.joins):
            if join.source not in sources:
                out.add(
                    doc,
                    (*path, "join", i, "source"),
                    "E021",
                    f"join names unknown source '{join.source}'",
                    did_you_mean(join.source, sources),
                )
            elif sources[join.source].joins:
                out.add(
                    doc,
                    (*path, "join", i, "source"),
                    "E022",
                    f"source '{join.source}' has joins itself; join its base tables directly",
                )


# --- metrics -------------------------------------------------------------------------------


def _merged(body: dict[str, Any], defaults: dict[str, Any], key: str) -> tuple[Any, bool]:
    """A metric's value for `key`, falling back to its file's defaults; and whether it is local."""
    if key in body:
        return body[key], True
    return defaults.get(key), False


def _metric(
    name: str,
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    raw: _Raw,
    sources: dict[str, SourceDef],
    settings: Settings,
    out: _Collector,
) -> MetricDef | None:
    before = len(out.problems)
    out.keys(doc, path, body, METRIC_KEYS)
    mtype = body.get("type")
    if mtype not in METRIC_TYPES:
        out.add(
            doc,
            (*path, "type") if "type" in body else path,
            "E030",
            f"metric '{name}' has type {mtype!r}",
            did_you_mean(str(mtype), METRIC_TYPES) or f"one of: {', '.join(METRIC_TYPES)}",
        )
        return None
    mtype = cast(MetricType, mtype)
    for key in REQUIRED[mtype]:
        value, _ = _merged(body, defaults, key) if key == "source" else (body.get(key), True)
        if value is None:
            out.add(doc, path, "E031", f"metric '{name}' of type {mtype} needs '{key}'")
    for key in TYPE_SPECIFIC:
        if key in body and key not in ALLOWED_SPECIFIC[mtype]:
            out.add(doc, (*path, key), "E032", f"'{key}' does not apply to a {mtype} metric")
    if mtype == "derived" and "source" in body:
        out.add(doc, (*path, "source"), "E032", "'source' does not apply to a derived metric")
    description = (
        _text(doc, (*path, "description"), body.get("description"), out)
        if "description" in body
        else ""
    )
    if "description" not in body:
        out.add(doc, path, "E031", f"metric '{name}' needs a 'description'")
    owner_value, _ = _merged(body, defaults, "owner")
    if owner_value is None:
        out.add(
            doc, path, "E031", f"metric '{name}' needs an 'owner' (or a file-level defaults.owner)"
        )
    unit = body.get("unit", "ratio" if mtype in ("ratio",) else "count")
    direction = body.get("good_direction", "none")
    if direction not in ("up", "down", "none"):
        out.add(
            doc,
            (*path, "good_direction"),
            "E004",
            f"good_direction must be up, down or none, got {direction!r}",
        )
    grain_value, grain_local = _merged(body, defaults, "grain")
    grain = grain_value or "day"
    if grain not in ("day", "hour"):
        grain_doc = doc if grain_local else defaults.get("__doc__", doc)
        out.add(
            grain_doc,
            (*path, "grain") if grain_local else ("defaults", "grain"),
            "E004",
            f"grain must be day or hour, got {grain!r}",
        )
        grain = "day"
    windows = _metric_windows(doc, path, body, defaults, settings, grain, out)
    slices = _metric_slices(doc, path, body, defaults, raw, out)
    ci = _merged(body, defaults, "ci")[0] or "auto"
    if ci not in CI_METHODS:
        out.add(
            doc, (*path, "ci"), "E004", f"ci must be one of {', '.join(CI_METHODS)}, got {ci!r}"
        )
        ci = "none"
    min_cell = _merged(body, defaults, "min_cell_size")[0]
    if min_cell is not None:
        min_cell = _int(doc, (*path, "min_cell_size"), min_cell, out, 1)
    tags = _merged(body, defaults, "tags")[0] or []
    source_value, source_local = _merged(body, defaults, "source")
    metric_source: str | None = None
    if mtype != "derived" and source_value is not None:
        metric_source = _source_ref(
            doc, (*path, "source") if source_local else path, source_value, sources, out
        )
    metric_filter = body.get("filter")
    if metric_filter is not None and (
        not isinstance(metric_filter, str) or not metric_filter.strip()
    ):
        out.add(doc, (*path, "filter"), "E004", "filter must be a SQL boolean expression")
        metric_filter = None

    numerator = denominator = None
    quantile_part = None
    quantile = None
    per = 1.0
    proportion = False
    expression = None
    depends: tuple[str, ...] = ()
    value = body.get("value")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        out.add(doc, (*path, "value"), "E004", "value must be a SQL expression")
        value = None
    if metric_source is not None or mtype in ("ratio", "rate"):
        src = metric_source or ""
        if mtype == "count":
            numerator = Part(src, "count", None, metric_filter)
        elif mtype == "sum" and value:
            numerator = Part(src, "sum", value, metric_filter)
        elif mtype == "mean" and value:
            numerator = Part(src, "sum", value, metric_filter)
            denominator = Part(src, "count", None, _and(metric_filter, f"({value}) IS NOT NULL"))
        elif mtype in ("distinct_count", "approx_distinct_count") and value:
            numerator = Part(src, cast(AggKind, mtype), value, metric_filter)
        elif mtype == "quantile" and value:
            quantile_part = QuantilePart(src, value, metric_filter)
            q = body.get("quantile")
            if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
                out.add(
                    doc,
                    (*path, "quantile"),
                    "E004",
                    f"quantile must be a number in (0, 1), e.g. 0.9; got {q!r}",
                )
            else:
                quantile = float(q)
        elif mtype in ("ratio", "rate"):
            numerator = _part(
                doc,
                (*path, "numerator"),
                body.get("numerator"),
                metric_source,
                metric_filter,
                sources,
                out,
            )
            denominator = _part(
                doc,
                (*path, "denominator"),
                body.get("denominator"),
                metric_source,
                metric_filter,
                sources,
                out,
            )
            raw_num: dict[str, Any] = body.get("numerator") or {}
            raw_den: dict[str, Any] = body.get("denominator") or {}
            proportion = (
                numerator is not None
                and denominator is not None
                and numerator.agg == denominator.agg == "count"
                and numerator.source == denominator.source
                and raw_num.get("filter") is not None
                and raw_den.get("filter") is None
            )
    if "per" in body:
        p = body["per"]
        if isinstance(p, bool) or not isinstance(p, int | float) or p <= 0:
            out.add(
                doc, (*path, "per"), "E004", f"per must be a positive number (e.g. 1000), got {p!r}"
            )
        else:
            per = float(p)
    if mtype == "derived":
        expression = body.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            expression = None
        else:
            depends = tuple(
                dict.fromkeys(t for t in IDENTIFIER.findall(expression) if t in raw.metrics)
            )
            if not depends:
                out.add(
                    doc,
                    (*path, "expression"),
                    "E033",
                    "a derived expression must refer to other metrics by name",
                    did_you_mean(IDENTIFIER.findall(expression)[0], raw.metrics)
                    if IDENTIFIER.findall(expression)
                    else None,
                )
    ci = _resolve_ci(
        doc, path, name, cast(CiMethod, ci), mtype, proportion, numerator, denominator, sources, out
    )
    if len(out.problems) > before:
        return None
    return MetricDef(
        name=name,
        type=mtype,
        description=description,
        owner=str(owner_value),
        unit=str(unit),
        good_direction=cast(GoodDirection, direction),
        slices=slices,
        windows=windows,
        grain=cast(Grain, grain),
        ci=ci,
        source=metric_source,
        numerator=numerator,
        denominator=denominator,
        quantile=quantile,
        quantile_part=quantile_part,
        per=per,
        expression=expression,
        depends_on=depends,
        min_cell_size=min_cell,
        proportion=proportion,
        tags=tuple(str(t) for t in tags),
        where=doc.where(path),
    )


def _and(a: str | None, b: str | None) -> str | None:
    if a and b:
        return f"({a}) AND ({b})"
    return a or b


def _source_ref(
    doc: LocatedDocument, path: YamlPath, value: Any, sources: dict[str, SourceDef], out: _Collector
) -> str | None:
    if not isinstance(value, str) or value not in sources:
        out.add(
            doc,
            path,
            "E021",
            f"unknown source {value!r}",
            did_you_mean(str(value), sources)
            or f"defined sources: {', '.join(sorted(sources)) or 'none'}",
        )
        return None
    return value


def _part(
    doc: LocatedDocument,
    path: YamlPath,
    value: Any,
    metric_source: str | None,
    metric_filter: str | None,
    sources: dict[str, SourceDef],
    out: _Collector,
) -> Part | None:
    if value is None:
        return None
    body = out.mapping(doc, path, value, _label(path))
    if body is None:
        return None
    out.keys(doc, path, body, PART_KEYS)
    agg = body.get("agg", "count")
    if agg not in AGG_KINDS:
        out.add(
            doc,
            (*path, "agg"),
            "E004",
            f"agg must be one of {', '.join(AGG_KINDS)}, got {agg!r}",
            did_you_mean(str(agg), AGG_KINDS),
        )
        return None
    src = metric_source
    if "source" in body:
        src = _source_ref(doc, (*path, "source"), body["source"], sources, out)
    elif src is None:
        out.add(doc, path, "E031", f"{_label(path)} needs a 'source' (or the metric one)")
    part_value = body.get("value")
    if agg == "count" and part_value is not None:
        out.add(doc, (*path, "value"), "E032", "'value' does not apply to agg count; use a filter")
    if agg != "count" and (not isinstance(part_value, str) or not part_value.strip()):
        out.add(doc, path, "E031", f"agg {agg} needs a 'value' expression")
        return None
    part_filter = body.get("filter")
    if part_filter is not None and (not isinstance(part_filter, str) or not part_filter.strip()):
        out.add(doc, (*path, "filter"), "E004", "filter must be a SQL boolean expression")
        return None
    if src is None:
        return None
    return Part(src, cast(AggKind, agg), part_value, _and(metric_filter, part_filter))


def _resolve_ci(
    doc: LocatedDocument,
    path: YamlPath,
    name: str,
    ci: CiMethod,
    mtype: MetricType,
    proportion: bool,
    numerator: Part | None,
    denominator: Part | None,
    sources: dict[str, SourceDef],
    out: _Collector,
) -> CiMethod:
    additive_ratio = (
        mtype in ("ratio", "rate", "mean")
        and numerator is not None
        and denominator is not None
        and numerator.additive
        and denominator.additive
    )
    if ci == "auto":
        if not additive_ratio:
            return "none"
        independent = numerator is not None and sources[numerator.source].independent_rows
        return "wilson" if proportion and independent else "delta"
    if ci == "wilson" and not proportion:
        out.add(
            doc,
            (*path, "ci"),
            "E034",
            f"metric '{name}': a Wilson interval needs a proportion "
            "(a count with a filter over a count of the same source)",
            "use ci: delta",
        )
    if ci == "delta" and not additive_ratio:
        out.add(
            doc,
            (*path, "ci"),
            "E034",
            f"metric '{name}': the delta method needs a ratio, rate or mean of counts and sums",
            "use ci: none",
        )
    return ci


def _windows(
    doc: LocatedDocument, path: YamlPath, value: Any, grain: str, out: _Collector
) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        out.add(doc, path, "E004", f"{_label(path)} must be a non-empty list like [1d, 7d, 28d]")
        return ("1d",)
    result = []
    for i, item in enumerate(value):
        match = WINDOW.match(str(item))
        if not match:
            out.add(
                doc,
                (*path, i),
                "E004",
                f"window {item!r} is not like 1d, 7d, 28d (or 1h for hourly)",
            )
        elif grain == "hour" and str(item) != "1h":
            out.add(doc, (*path, i), "E004", f"hourly metrics have one window, 1h; got {item!r}")
        elif grain == "day" and match.group(2) != "d":
            out.add(
                doc,
                (*path, i),
                "E004",
                f"daily metrics take windows in days (1d, 7d, 28d); got {item!r}",
            )
        elif grain == "day" and int(match.group(1)) > 366:
            out.add(doc, (*path, i), "E004", f"window {item!r} is longer than a year")
        elif str(item) in result:
            out.add(doc, (*path, i), "E014", f"window {item!r} is listed twice")
        else:
            result.append(str(item))
    return tuple(result)


def _metric_windows(
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    settings: Settings,
    grain: str,
    out: _Collector,
) -> tuple[str, ...]:
    value, local = _merged(body, defaults, "windows")
    if value is None:
        return ("1h",) if grain == "hour" else settings.default_windows
    where_doc = doc if local else defaults.get("__doc__", doc)
    return _windows(
        where_doc, (*path, "windows") if local else ("defaults", "windows"), value, grain, out
    )


def _metric_slices(
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    raw: _Raw,
    out: _Collector,
) -> tuple[tuple[str, ...], ...]:
    value, local = _merged(body, defaults, "slices")
    where_doc: LocatedDocument = doc if local else defaults.get("__doc__", doc)
    where: YamlPath = (*path, "slices") if local else ("defaults", "slices")
    if value is None:
        return ((),)
    if isinstance(value, str):
        if value not in raw.slice_sets:
            out.add(
                where_doc,
                where,
                "E023",
                f"unknown slice set '{value}'",
                did_you_mean(value, raw.slice_sets)
                or f"defined slice sets: {', '.join(sorted(raw.slice_sets)) or 'none'}",
            )
            return ((),)
        set_doc, set_path, set_value = raw.slice_sets[value]
        return _slice_list(set_doc, set_path, set_value, raw, out)
    return _slice_list(where_doc, where, value, raw, out)


def _slice_list(
    doc: LocatedDocument, path: YamlPath, value: Any, raw: _Raw, out: _Collector
) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not value:
        out.add(doc, path, "E004", "slices must be a list of dimension lists, e.g. [[], [country]]")
        return ((),)
    result: list[tuple[str, ...]] = []
    for i, item in enumerate(value):
        if not isinstance(item, list) or not all(isinstance(d, str) for d in item):
            out.add(doc, (*path, i), "E004", f"a slice is a list of dimension names, got {item!r}")
            continue
        for j, dim in enumerate(item):
            if dim not in raw.dimensions:
                out.add(
                    doc,
                    (*path, i, j),
                    "E020",
                    f"unknown dimension '{dim}'",
                    did_you_mean(dim, raw.dimensions)
                    or f"declared dimensions: {', '.join(raw.dimensions)}",
                )
        if len(set(item)) != len(item):
            out.add(doc, (*path, i), "E014", f"slice {item} names a dimension twice")
        key = tuple(sorted(item))
        if key in result:
            out.add(doc, (*path, i), "E014", f"slice {item} is listed twice")
        else:
            result.append(key)
    return tuple(result)


def _check_derived(raw: _Raw, metrics: dict[str, MetricDef], out: _Collector) -> None:
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


def _check_slices_against_sources(
    raw: _Raw, metrics: dict[str, MetricDef], sources: dict[str, SourceDef], out: _Collector
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


def _check_sql(
    raw: _Raw,
    sources: dict[str, SourceDef],
    metrics: dict[str, MetricDef],
    checker: ExpressionChecker,
    out: _Collector,
) -> None:
    """Every SQL expression resolves against its source's columns, with the right type."""
    for name, source in sources.items():
        doc, path, _ = raw.sources[name]
        out.problems.extend(checker.source_problems(doc, path, source))
    for name, metric in metrics.items():
        doc, path, body, _ = raw.metrics[name]
        if metric.type == "derived":
            error = checker.derived_problem(metric.expression or "", sorted(metrics))
            if error:
                out.add(doc, (*path, "expression"), "E041", f"expression: {error}")
            continue
        src = metric.source or ""
        value_expect: Literal["numeric", "any"] = "any" if "distinct" in metric.type else "numeric"
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
                    out.add(doc, where, "E041", f"{_label(where[2:])}: {error}")

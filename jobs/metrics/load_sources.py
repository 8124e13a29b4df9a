"""Read the catalog's settings, dimensions and sources, with their joins.

These are the parts of the definitions that metrics refer to, so they are read first: each
source becomes a `SourceDef`, and joins are checked once every source is known. Problems go
to the shared `Collector`; nothing here needs Spark.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.contract_defs import Contract
from jobs.metrics.definitions import MAX_DECIMALS, JoinDef, Settings, SourceDef
from jobs.metrics.load_contracts import read_contract
from jobs.metrics.source_schema import read_schema
from jobs.metrics.spec_problems import NAME, Collector, Raw, checked_int, checked_text, kind, label
from jobs.metrics.windows_slices import windows

SETTINGS_KEYS = (
    "min_cell_size",
    "confidence_level",
    "default_windows",
    "gates",
    "suppression_rounds",
    "decimals",
)
GATES_KEYS = ("on_failure", "volume_history_days", "volume_min_ratio", "volume_max_ratio")
SOURCE_KEYS = (
    "description",
    "table",
    "path",
    "format",
    "catalog_table",
    "schema",
    "time_column",
    "date_column",
    "unit",
    "independent_rows",
    "may_be_empty",
    "filter",
    "join",
    "columns",
    "dimensions",
    "unit_attributes",
    "contract",
)
JOIN_KEYS = ("source", "on", "columns", "how")


def read_settings(raw: Raw, out: Collector) -> Settings:
    if raw.settings is None:
        return Settings()
    doc, body = raw.settings
    out.keys(doc, ("settings",), body, SETTINGS_KEYS)
    base = Settings()
    values: dict[str, Any] = {}
    if "min_cell_size" in body:
        values["min_cell_size"] = checked_int(
            doc, ("settings", "min_cell_size"), body["min_cell_size"], out, 1
        )
    if "suppression_rounds" in body:
        values["suppression_rounds"] = checked_int(
            doc, ("settings", "suppression_rounds"), body["suppression_rounds"], out, 1
        )
    if "decimals" in body:
        d = body["decimals"]
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_DECIMALS:
            out.add(
                doc,
                ("settings", "decimals"),
                "E004",
                f"decimals must be an integer from 0 to {MAX_DECIMALS}, got {d!r}",
            )
        else:
            values["decimals"] = d
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
        values["default_windows"] = windows(
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
            values["volume_history_days"] = checked_int(
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


#: Columns of metric_values and of a pass's internal rows, which dimensions must not shadow.
RESERVED_DIMENSION_NAMES = frozenset(
    {
        "date", "period", "period_start", "grain", "window", "metric", "slice_set", "slice_id",
        "value", "numerator", "denominator", "units", "ci_lower", "ci_upper", "ci_method",
        "suppressed", "definition_version", "run_id", "computed_at", "s", "k", "u", "dk", "qv",
        "rows",
    }
)  # fmt: skip


def read_dimensions(doc: LocatedDocument, value: Any, raw: Raw, out: Collector) -> None:
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
        elif name in RESERVED_DIMENSION_NAMES:
            out.add(
                doc,
                path,
                "E015",
                f"dimension name '{name}' is reserved (a column of metric_values or of a pass)",
                f"rename it, e.g. '{name}_name'",
            )
        else:
            raw.dimensions[name] = doc.where(path)


def read_source(
    name: str,
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    raw: Raw,
    out: Collector,
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
        location = checked_text(doc, (*path, key), body[key], out)
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
    schema = (
        read_schema(name, doc, (*path, "schema"), body["schema"], out) if "schema" in body else ()
    )
    attributes = _unit_attributes(name, doc, path, body, [d for d, _ in dim_pairs], out)
    contract = Contract()
    if "contract" in body:
        named = {
            "unit": body.get("unit"),
            "time": body.get("time_column"),
            "date": body.get("date_column"),
        }
        contract = read_contract(name, doc, (*path, "contract"), body["contract"], named, out)
    return SourceDef(
        name=name,
        format=cast(Any, fmt),
        location=location,
        time_column=str(body.get("time_column", "")),
        unit=str(body.get("unit", "")),
        date_column=body.get("date_column"),
        independent_rows=_flag(doc, path, body, "independent_rows", out),
        may_be_empty=_flag(doc, path, body, "may_be_empty", out),
        filter=body.get("filter"),
        joins=joins,
        columns=columns,
        dimensions=dim_pairs,
        unit_attributes=attributes,
        contract=contract,
        schema=schema,
        where=doc.where(path),
    )


def _flag(
    doc: LocatedDocument, path: YamlPath, body: dict[str, Any], key: str, out: Collector
) -> bool:
    """A true/false key of a source (false when absent)."""
    value = body.get(key, False)
    if isinstance(value, bool):
        return value
    out.add(doc, (*path, key), "E004", f"{key} must be true or false, got {value!r}")
    return False


def _unit_attributes(
    name: str,
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    dimensions: list[str],
    out: Collector,
) -> tuple[str, ...]:
    """The source's declared unit attributes: a list of its own dimensions."""
    value = body.get("unit_attributes", [])
    apath: YamlPath = (*path, "unit_attributes")
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        out.add(
            doc,
            apath,
            "E004",
            f"unit_attributes must be a list of dimension names, got {value!r}",
            "e.g. unit_attributes: [country]",
        )
        return ()
    kept = []
    for i, attribute in enumerate(value):
        if attribute not in dimensions:
            out.add(
                doc,
                (*apath, i),
                "E025",
                f"source '{name}' declares unit attribute '{attribute}', "
                "which is not one of its dimensions",
                did_you_mean(attribute, dimensions)
                or f"list it under the source's dimensions ({', '.join(dimensions) or 'none'})",
            )
        elif attribute not in kept:
            kept.append(attribute)
    return tuple(kept)


def _expr_mapping(
    doc: LocatedDocument, path: YamlPath, value: Any, out: Collector
) -> tuple[tuple[str, str], ...]:
    body = out.mapping(doc, path, value, label(path))
    if body is None:
        return ()
    pairs = []
    for key, expr in body.items():
        if not isinstance(key, str) or not NAME.match(key):
            out.add(doc, (*path, key), "E012", f"column name must be snake_case text, got {key!r}")
        elif not isinstance(expr, str) or not expr.strip():
            out.add(doc, (*path, key), "E004", f"{label((*path, key))} must be a SQL expression")
        else:
            pairs.append((key, expr.strip()))
    return tuple(pairs)


def _joins(
    name: str, doc: LocatedDocument, path: YamlPath, value: Any, out: Collector
) -> tuple[JoinDef, ...]:
    if not isinstance(value, list):
        out.add(doc, (*path, "join"), "E003", f"join must be a list, got {kind(value)}")
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


def check_joins(raw: Raw, sources: dict[str, SourceDef], out: Collector) -> None:
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

"""Read one metric definition into a `MetricDef`.

A metric's keys depend on its type (which keys it needs, which do not apply), its parts may
name their own sources and filters, and its confidence-interval method is chosen or checked
from its shape. This is the longest step of loading, so it has its own module; checks that
need every metric at once are in `cross_checks`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, cast

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.definitions import (
    AGG_KINDS,
    CI_METHODS,
    MAX_DECIMALS,
    METRIC_TYPES,
    AggKind,
    CiMethod,
    GoodDirection,
    Grain,
    MetricDef,
    MetricType,
    MonitorDirection,
    MonitoringDef,
    Part,
    QuantilePart,
    Settings,
    SourceDef,
)
from jobs.metrics.spec_problems import IDENTIFIER, Collector, Raw, checked_int, checked_text, label
from jobs.metrics.windows_slices import merged, metric_slices, metric_windows

#: Division by anything but a number literal, e.g. `a / b` or `a / (b + c)`.
UNSAFE_DIVISION = re.compile(r"/\s*[^\s0-9.]")
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
    "decimals",
    "quantile",
    "expression",
    "slices",
    "windows",
    "grain",
    "ci",
    "min_cell_size",
    "tags",
    "monitoring",
)
MONITORING_KEYS = ("enabled", "sensitivity", "min_volume", "direction")
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


def read_metric(
    name: str,
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    raw: Raw,
    sources: dict[str, SourceDef],
    settings: Settings,
    out: Collector,
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
        value, _ = merged(body, defaults, key) if key == "source" else (body.get(key), True)
        if value is None:
            out.add(doc, path, "E031", f"metric '{name}' of type {mtype} needs '{key}'")
    for key in TYPE_SPECIFIC:
        if key in body and key not in ALLOWED_SPECIFIC[mtype]:
            out.add(doc, (*path, key), "E032", f"'{key}' does not apply to a {mtype} metric")
    if mtype == "derived" and "source" in body:
        out.add(doc, (*path, "source"), "E032", "'source' does not apply to a derived metric")
    description = (
        checked_text(doc, (*path, "description"), body.get("description"), out)
        if "description" in body
        else ""
    )
    if "description" not in body:
        out.add(doc, path, "E031", f"metric '{name}' needs a 'description'")
    owner_value, _ = merged(body, defaults, "owner")
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
    grain_value, grain_local = merged(body, defaults, "grain")
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
    windows = metric_windows(doc, path, body, defaults, settings, grain, out)
    slices = metric_slices(doc, path, body, defaults, raw, out)
    ci = merged(body, defaults, "ci")[0] or "auto"
    if ci not in CI_METHODS:
        out.add(
            doc, (*path, "ci"), "E004", f"ci must be one of {', '.join(CI_METHODS)}, got {ci!r}"
        )
        ci = "none"
    min_cell = merged(body, defaults, "min_cell_size")[0]
    if min_cell is not None:
        min_cell = checked_int(doc, (*path, "min_cell_size"), min_cell, out, 1)
    tags = merged(body, defaults, "tags")[0] or []
    source_value, source_local = merged(body, defaults, "source")
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
            if UNSAFE_DIVISION.search(expression):
                out.add(
                    doc,
                    (*path, "expression"),
                    "E037",
                    "a derived expression divides by a value that can be 0, which fails the "
                    "whole run (Spark's ANSI mode)",
                    "use try_divide(a, b), which gives null for a zero divisor",
                )
    ci = _resolve_ci(
        doc, path, name, cast(CiMethod, ci), mtype, proportion, numerator, denominator, sources, out
    )
    monitoring = _monitoring(doc, (*path, "monitoring"), body.get("monitoring"), out)
    decimals = _decimals(doc, path, merged(body, defaults, "decimals")[0], settings, out)
    numerator = _with_decimals(numerator, decimals)
    denominator = _with_decimals(denominator, decimals)
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
        monitoring=monitoring,
        where=doc.where(path),
    )


def _decimals(
    doc: LocatedDocument, path: YamlPath, value: Any, settings: Settings, out: Collector
) -> int:
    """The decimals a metric's summed values keep (`decimals`, else the catalog's)."""
    if value is None:
        return settings.decimals
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DECIMALS:
        out.add(
            doc,
            (*path, "decimals"),
            "E004",
            f"decimals must be an integer from 0 to {MAX_DECIMALS}, got {value!r}",
        )
        return settings.decimals
    return value


def _with_decimals(part: Part | None, decimals: int) -> Part | None:
    """A sum part rounds its values to the metric's decimals; other parts are unchanged."""
    return replace(part, decimals=decimals) if part is not None and part.agg == "sum" else part


def _and(a: str | None, b: str | None) -> str | None:
    if a and b:
        return f"({a}) AND ({b})"
    return a or b


def _source_ref(
    doc: LocatedDocument, path: YamlPath, value: Any, sources: dict[str, SourceDef], out: Collector
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
    out: Collector,
) -> Part | None:
    if value is None:
        return None
    body = out.mapping(doc, path, value, label(path))
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
        out.add(doc, path, "E031", f"{label(path)} needs a 'source' (or the metric one)")
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
    out: Collector,
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


def _monitoring(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> MonitoringDef:
    """The metric's `monitoring:` overrides: enabled, sensitivity, min_volume, direction."""
    if value is None:
        return MonitoringDef()
    body = out.mapping(doc, path, value, "monitoring") or {}
    out.keys(doc, path, body, MONITORING_KEYS)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        out.add(doc, (*path, "enabled"), "E004", f"enabled must be true or false, got {enabled!r}")
    numbers: dict[str, float | None] = {"sensitivity": None, "min_volume": None}
    for key, low in (("sensitivity", 0.0), ("min_volume", -1e-300)):
        raw_value = body.get(key)
        if raw_value is None:
            continue
        if (
            isinstance(raw_value, bool)
            or not isinstance(raw_value, int | float)
            or raw_value <= low
        ):
            what = "a positive number" if key == "sensitivity" else "a number >= 0"
            out.add(doc, (*path, key), "E004", f"{key} must be {what}, got {raw_value!r}")
        else:
            numbers[key] = float(raw_value)
    direction = body.get("direction")
    if direction is not None and direction not in ("up", "down", "both"):
        out.add(
            doc,
            (*path, "direction"),
            "E004",
            f"direction must be up, down or both, got {direction!r}",
            did_you_mean(str(direction), ("up", "down", "both")),
        )
        direction = None
    return MonitoringDef(
        enabled=bool(enabled),
        sensitivity=numbers["sensitivity"],
        min_volume=numbers["min_volume"],
        direction=cast(MonitorDirection | None, direction),
    )

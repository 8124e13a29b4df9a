"""Read one metric definition into a `MetricDef`.

The keys every metric has are read here; what depends on its type (which keys it needs,
which do not apply, the statistics it needs) is its type's (`jobs.metrics.types`). Its
confidence-interval method is chosen or checked from its traits and parts. Checks that need
every metric at once are in `cross_checks`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.definitions import (
    CI_METHODS,
    MAX_DECIMALS,
    CiMethod,
    GoodDirection,
    Grain,
    MetricDef,
    MonitorDirection,
    MonitoringDef,
    Part,
    Settings,
    SourceDef,
)
from jobs.metrics.spec_problems import Collector, Raw, checked_int, checked_text
from jobs.metrics.types import REGISTRY, TYPE_NAMES, TYPE_SPECIFIC
from jobs.metrics.types.protocol import BuildContext, Traits
from jobs.metrics.types.yaml_parts import source_ref
from jobs.metrics.windows_slices import merged, metric_slices, metric_windows

COMMON_KEYS = (
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
#: Every key a metric may have: the common ones, then what its types add (`cap`, ...).
METRIC_KEYS = (*COMMON_KEYS, *[k for k in TYPE_SPECIFIC if k not in COMMON_KEYS])
MONITORING_KEYS = ("enabled", "sensitivity", "min_volume", "direction")


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
    if mtype not in REGISTRY:
        out.add(
            doc,
            (*path, "type") if "type" in body else path,
            "E030",
            f"metric '{name}' has type {mtype!r}",
            did_you_mean(str(mtype), TYPE_NAMES) or f"one of: {', '.join(TYPE_NAMES)}",
        )
        return None
    mtype = str(mtype)
    kind = REGISTRY[mtype]
    for key in kind.required:
        value, _ = merged(body, defaults, key) if key == "source" else (body.get(key), True)
        if value is None:
            out.add(doc, path, "E031", f"metric '{name}' of type {mtype} needs '{key}'")
    for key in TYPE_SPECIFIC:
        if key in body and key not in kind.allowed:
            out.add(doc, (*path, key), "E032", f"'{key}' does not apply to a {mtype} metric")
    if not kind.takes_source and "source" in body:
        out.add(doc, (*path, "source"), "E032", f"'source' does not apply to a {mtype} metric")
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
    unit = body.get("unit", kind.traits.default_unit)
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
    if kind.takes_source and source_value is not None:
        metric_source = source_ref(
            doc, (*path, "source") if source_local else path, source_value, sources, out
        )
    metric_filter = body.get("filter")
    if metric_filter is not None and (
        not isinstance(metric_filter, str) or not metric_filter.strip()
    ):
        out.add(doc, (*path, "filter"), "E004", "filter must be a SQL boolean expression")
        metric_filter = None

    per = 1.0
    value = body.get("value")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        out.add(doc, (*path, "value"), "E004", "value must be a SQL expression")
        value = None
    built = kind.build(
        BuildContext(name, doc, path, body, metric_source, metric_filter, value, sources, raw, out)
    )
    numerator, denominator = built.numerator, built.denominator
    if "per" in body:
        p = body["per"]
        if isinstance(p, bool) or not isinstance(p, int | float) or p <= 0:
            out.add(
                doc, (*path, "per"), "E004", f"per must be a positive number (e.g. 1000), got {p!r}"
            )
        else:
            per = float(p)
    ci = _resolve_ci(
        doc,
        path,
        name,
        cast(CiMethod, ci),
        kind.traits,
        built.proportion,
        numerator,
        denominator,
        sources,
        out,
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
        quantile=built.quantile,
        quantile_part=built.quantile_part,
        per=per,
        expression=built.expression,
        depends_on=built.depends_on,
        min_cell_size=min_cell,
        proportion=built.proportion,
        tags=tuple(str(t) for t in tags),
        monitoring=monitoring,
        version_extra=tuple(kind.version_extra().items()),
        caps=built.caps,
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


def _resolve_ci(
    doc: LocatedDocument,
    path: YamlPath,
    name: str,
    ci: CiMethod,
    traits: Traits,
    proportion: bool,
    numerator: Part | None,
    denominator: Part | None,
    sources: dict[str, SourceDef],
    out: Collector,
) -> CiMethod:
    additive_ratio = (
        traits.ratio_interval
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

"""A metric's references to sources and its `numerator:` / `denominator:` parts, read from
YAML with located problems (shared by the types that take parts)."""

from __future__ import annotations

from typing import Any, cast

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.definitions import AGG_KINDS, AggKind, Part, SourceDef
from jobs.metrics.spec_problems import Collector, label
from jobs.metrics.types.protocol import BuildContext, conjoined

PART_KEYS = ("agg", "value", "filter", "source")


def source_ref(
    doc: LocatedDocument, path: YamlPath, value: Any, sources: dict[str, SourceDef], out: Collector
) -> str | None:
    """The source named at `path`, or None (a located problem) if there is none such."""
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


def read_part(ctx: BuildContext, key: str) -> Part | None:
    """The part under `key` (numerator or denominator): an aggregate of a source (the
    metric's unless it names its own), filtered by the metric's filter and its own."""
    value = ctx.body.get(key)
    if value is None:
        return None
    doc, out, path = ctx.doc, ctx.out, (*ctx.path, key)
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
    src = ctx.source
    if "source" in body:
        src = source_ref(doc, (*path, "source"), body["source"], ctx.sources, out)
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
    return Part(src, cast(AggKind, agg), part_value, conjoined(ctx.filter, part_filter))

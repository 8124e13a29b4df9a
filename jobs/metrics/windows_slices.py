"""Read the windows and slices a metric is computed over, with file-level defaults.

Both the catalog settings (`default_windows`) and each metric name windows, and a metric's
windows and slices may come from its file's `defaults`; the rules for reading them, and for
reporting a problem where the value was written, live here so settings and metrics share them.
"""

from __future__ import annotations

from typing import Any

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.definitions import Settings
from jobs.metrics.spec_problems import WINDOW, Collector, Raw, label


def merged(body: dict[str, Any], defaults: dict[str, Any], key: str) -> tuple[Any, bool]:
    """A metric's value for `key`, falling back to its file's defaults; and whether it is local."""
    if key in body:
        return body[key], True
    return defaults.get(key), False


def windows(
    doc: LocatedDocument, path: YamlPath, value: Any, grain: str, out: Collector
) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        out.add(doc, path, "E004", f"{label(path)} must be a non-empty list like [1d, 7d, 28d]")
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


def metric_windows(
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    settings: Settings,
    grain: str,
    out: Collector,
) -> tuple[str, ...]:
    value, local = merged(body, defaults, "windows")
    if value is None:
        return ("1h",) if grain == "hour" else settings.default_windows
    where_doc = doc if local else defaults.get("__doc__", doc)
    return windows(
        where_doc, (*path, "windows") if local else ("defaults", "windows"), value, grain, out
    )


def metric_slices(
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    defaults: dict[str, Any],
    raw: Raw,
    out: Collector,
) -> tuple[tuple[str, ...], ...]:
    value, local = merged(body, defaults, "slices")
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
    doc: LocatedDocument, path: YamlPath, value: Any, raw: Raw, out: Collector
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

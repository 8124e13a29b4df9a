"""Shared pieces of the catalog loader: the problem collector and the raw definitions.

Reading the definition files is split over several modules (`loader`, `load_sources`,
`windows_slices`, `load_metrics`, `cross_checks`); they all add located problems to one
`Collector`, read from one `Raw` holder, and use the same name patterns and value checks.
Keeping those here (and the protocol of the SQL checker) lets each step import them without
importing the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from jobs.core.located_yaml import (
    LocatedDocument,
    Location,
    Problem,
    YamlPath,
    unknown_key_problems,
)
from jobs.metrics.definitions import SourceDef

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
WINDOW = re.compile(r"^([1-9][0-9]*)([dh])$")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Collector:
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
        self.add(doc, path, "E003", f"{what} must be a mapping, got {kind(value)}")
        return None

    def keys(
        self, doc: LocatedDocument, path: YamlPath, value: dict[str, Any], allowed: Iterable[str]
    ) -> None:
        self.problems.extend(unknown_key_problems(doc, path, value, allowed))


def kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def label(path: YamlPath) -> str:
    return ".".join(str(p) for p in path)


@dataclass
class Raw:
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


def checked_int(
    doc: LocatedDocument, path: YamlPath, value: Any, out: Collector, minimum: int
) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        out.add(doc, path, "E004", f"{label(path)} must be an integer >= {minimum}, got {value!r}")
        return minimum
    return value


def checked_text(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> str:
    if not isinstance(value, str) or not value.strip():
        out.add(doc, path, "E004", f"{label(path)} must be non-empty text, got {value!r}")
        return ""
    return value.strip()


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

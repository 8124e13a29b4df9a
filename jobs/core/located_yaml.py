"""YAML loading that remembers where every key and value came from.

Errors in configuration and metric definitions must name the file, line and key, not just
the document. `load_located` returns plain Python data plus a map from each value's path
(a tuple of keys and list indices) to its position in the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

YamlPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """A position in a file, 1-based like editors show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, reported with all the others at once."""

    location: Location
    code: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.location}: {self.code} {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


class InputError(ValueError):
    """Raised with every problem found in an input, each one located."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found:\n{lines}")


@dataclass(frozen=True)
class LocatedDocument:
    """Parsed YAML data together with the location of every node in it."""

    data: Any
    locations: dict[YamlPath, Location]
    file: str

    def where(self, path: YamlPath) -> Location:
        """The location of `path`, or of its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            found = self.locations.get(path[:cut])
            if found is not None:
                return found
        return Location(self.file, 1, 1)


def _key(node: yaml.Node) -> Any:
    """A mapping key; YAML 1.1 booleans (on, yes, off, ...) stay text, as users mean them."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
        return node.value
    return yaml.safe_load(yaml.serialize(node))


def _walk(node: yaml.Node, path: YamlPath, file: str, out: dict[YamlPath, Location]) -> Any:
    out[path] = Location(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            child = (*path, key)
            result[key] = _walk(value_node, child, file, out)
            # Point a key's problems at the key itself, not at its value.
            out[child] = Location(
                file, key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), file, out) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return None  # an empty value (`key:` or `{key: }`) serializes to no document at all
    try:
        return yaml.safe_load(yaml.serialize(node))
    except ValueError:
        # Looks like a date or time but is not one (2026-13-01): keep the text, so that the
        # key's own check reports it with its location instead of the parser crashing.
        return node.value


def parse_located(text: str, file: str) -> LocatedDocument:
    """Parse YAML text; a syntax error becomes an `InputError` at the offending line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise InputError(
            [Problem(Location(file, line, col), "E001", f"invalid YAML: {exc.problem}")]
        ) from exc
    locations: dict[YamlPath, Location] = {}
    data = _walk(node, (), file, locations) if node is not None else None
    return LocatedDocument(data=data, locations=locations, file=file)


def load_located(path: Path) -> LocatedDocument:
    """Read and parse a YAML file, keeping locations."""
    return parse_located(path.read_text(encoding="utf-8"), str(path))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def unknown_key_problems(
    doc: LocatedDocument, path: YamlPath, mapping: dict[str, Any], allowed: Iterable[str]
) -> list[Problem]:
    """One problem per key of `mapping` (found at `path`) that is not in `allowed`."""
    allowed = sorted(allowed)
    where = ".".join(str(p) for p in path) or "the top level"
    return [
        Problem(
            doc.where((*path, key)),
            "E002",
            f"unknown key '{key}' in {where}",
            did_you_mean(str(key), allowed) or f"allowed keys: {', '.join(allowed)}",
        )
        for key in mapping
        if key not in allowed
    ]

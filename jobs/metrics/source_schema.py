"""A source's declared schema (`schema:` in its YAML): column name -> Spark SQL type.

Declared schemas let `validate` check every expression without the data (a pull request
has no warehouse): the SQL checker resolves expressions over an empty frame of the declared
columns, and compares the declaration with the real table whenever the table exists. This
module reads and checks the declaration itself, without Spark: names, and types against
Spark's type grammar (`bigint`, `decimal(18,2)`, `array<string>`, `map<string,bigint>`,
`struct<a:int,b:string>`).
"""

from __future__ import annotations

import re
from typing import Any

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.spec_problems import Collector

#: Spark SQL's atomic type names (with their aliases).
ATOMIC_TYPES = (
    "string",
    "boolean",
    "tinyint",
    "byte",
    "smallint",
    "short",
    "int",
    "integer",
    "bigint",
    "long",
    "float",
    "double",
    "date",
    "timestamp",
    "timestamp_ltz",
    "timestamp_ntz",
    "binary",
    "decimal",
    "dec",
    "numeric",
    "real",
    "variant",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DECIMAL = re.compile(r"(?:decimal|dec|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
_CHARS = re.compile(r"(?:char|varchar)\s*\(\s*\d+\s*\)")

Schema = tuple[tuple[str, str], ...]


def type_problem(text: str) -> str | None:
    """Why `text` is not a Spark SQL type, or None if it is one."""
    try:
        rest = _parse(text.strip().lower())
    except ValueError as exc:
        return str(exc)
    return None if not rest.strip() else f"unexpected '{rest.strip()}' in type '{text}'"


def _parse(text: str) -> str:
    """Parse one type at the start of `text`; return what follows it."""
    text = text.lstrip()
    decimal = _DECIMAL.match(text)
    if decimal:
        precision, scale = int(decimal.group(1)), int(decimal.group(2) or 0)
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"decimal({precision},{scale}): precision 1-38, scale <= precision")
        return text[decimal.end() :]
    chars = _CHARS.match(text)
    if chars:
        return text[chars.end() :]
    for generic, arity in (("array<", 1), ("map<", 2)):
        if text.startswith(generic):
            rest = text[len(generic) :]
            for i in range(arity):
                rest = _parse(rest).lstrip()
                rest = _expect(rest, "," if i < arity - 1 else ">")
            return rest
    if text.startswith("struct<"):
        rest = text[len("struct<") :].lstrip()
        while True:
            name = _NAME.match(rest)
            if not name:
                raise ValueError(f"a struct field needs a name, at '{rest[:20]}'")
            rest = _parse(_expect(rest[name.end() :].lstrip(), ":")).lstrip()
            if rest.startswith(">"):
                return rest[1:]
            rest = _expect(rest, ",").lstrip()
    word = _NAME.match(text)
    if not word or word.group(0) not in ATOMIC_TYPES:
        found = word.group(0) if word else text[:20]
        hint = did_you_mean(found, ATOMIC_TYPES)
        raise ValueError(f"unknown type '{found}'" + (f" ({hint})" if hint else ""))
    return text[word.end() :]


def _expect(text: str, token: str) -> str:
    if not text.startswith(token):
        raise ValueError(f"expected '{token}' at '{text[:20] or 'the end'}'")
    return text[len(token) :]


def read_schema(
    source: str, doc: LocatedDocument, path: YamlPath, value: Any, out: Collector
) -> Schema:
    """The declared (column, type) pairs of `source` in order; each bad entry is a located
    problem (E045)."""
    if not isinstance(value, dict) or not value:
        out.add(
            doc,
            path,
            "E045",
            f"schema of source '{source}' must map column names to Spark SQL types",
            "e.g. schema: {view_id: bigint, viewed_at: timestamp, country: string}",
        )
        return ()
    pairs = []
    for column, kind in value.items():
        where = (*path, column)
        if not isinstance(column, str) or not _NAME.fullmatch(column):
            out.add(doc, where, "E045", f"schema: '{column}' is not a column name")
            continue
        if not isinstance(kind, str):
            out.add(doc, where, "E045", f"schema.{column}: the type must be text, got {kind!r}")
            continue
        problem = type_problem(kind)
        if problem:
            out.add(doc, where, "E045", f"schema.{column}: {problem}")
            continue
        pairs.append((column, kind.strip()))  # struct field names keep their case
    return tuple(pairs)


def schema_ddl(schema: Schema) -> str:
    """The schema as Spark DDL (`a bigint, b string`), for an empty frame of it."""
    return ", ".join(f"`{column}` {kind}" for column, kind in schema)

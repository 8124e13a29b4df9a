"""Helpers for the Delta sink tests: read tables back independently of the sink."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable


def delta_rows(path: str, version: int | None = None) -> list[tuple[Any, ...]]:
    """The table's rows, read by delta-rs (not by the sink), sorted, columns by name."""
    table = pa.table(DeltaTable(path, version=version).to_pyarrow_table())
    names = sorted(table.column_names)
    rows = table.select(names).to_pylist()
    return sorted((tuple(_naive_utc(r[n]) for n in names) for r in rows), key=repr)


def _naive_utc(value: Any) -> Any:
    """delta-rs gives aware UTC timestamps; Spark gives naive ones (the suite runs in UTC)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def spark_rows(df: Any) -> list[tuple[Any, ...]]:
    """A Spark DataFrame's rows, sorted, columns by name (same shape as `delta_rows`)."""
    names = sorted(df.columns)
    return sorted((tuple(r[n] for n in names) for r in df.select(*names).collect()), key=repr)

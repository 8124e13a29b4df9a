"""Table schemas: Spark's JSON schema is Delta's schema format, so no type mapping is needed."""

from __future__ import annotations

import json
from typing import Any

from deltalake import Schema as DeltaSchema
from pyspark.sql.types import StructType

from jobs.core.delta.model import SchemaMismatchError


def _as_nullable(node: Any) -> Any:
    """Mark every field nullable, as Delta on Spark does when a DataFrame creates a table."""
    if isinstance(node, dict):
        out = {k: _as_nullable(v) for k, v in node.items()}
        if "nullable" in out:
            out["nullable"] = True
        if out.get("type") == "array":
            out["containsNull"] = True
        if out.get("type") == "map":
            out["valueContainsNull"] = True
        return out
    if isinstance(node, list):
        return [_as_nullable(v) for v in node]
    return node


def delta_schema(spark_schema: StructType) -> DeltaSchema:
    """The Delta schema of a DataFrame, every field nullable."""
    return DeltaSchema.from_json(json.dumps(_as_nullable(json.loads(spark_schema.json()))))


def _type_name(data_type: object) -> str:
    """'long', 'date', or the full form for nested types."""
    simple = getattr(data_type, "type", None)
    return simple if isinstance(simple, str) else repr(data_type)


def _field_types(schema: DeltaSchema) -> dict[str, str]:
    return {f.name: _type_name(f.type) for f in schema.fields}


def schema_differences(table: DeltaSchema, data: DeltaSchema) -> list[str]:
    """Human-readable differences between a table's columns and the data's (empty if equal)."""
    have, want = _field_types(table), _field_types(data)
    out = [f"column '{c}' is missing from the data" for c in have if c not in want]
    out += [f"column '{c}' is not in the table" for c in want if c not in have]
    out += [
        f"column '{c}' is {have[c]} in the table but {want[c]} in the data"
        for c in have
        if c in want and have[c] != want[c]
    ]
    return out


def check_schema(path: str, table: DeltaSchema, data: DeltaSchema) -> None:
    """Raise `SchemaMismatchError` naming the table and every mismatched column."""
    problems = schema_differences(table, data)
    if problems:
        raise SchemaMismatchError(
            f"cannot write to Delta table {path}: "
            + "; ".join(problems)
            + " (to change a table's schema, write the new schema to a new table)"
        )


def check_partitioning(path: str, table_partitions: list[str], requested: tuple[str, ...]) -> None:
    """Writes must use the table's own partition columns."""
    if list(requested) != list(table_partitions):
        raise SchemaMismatchError(
            f"Delta table {path} is partitioned by {table_partitions}, "
            f"but the write asked for {list(requested)}"
        )

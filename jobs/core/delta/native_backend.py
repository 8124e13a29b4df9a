"""The native backend: Spark's own Delta writer (clusters with the Delta extension, Spark
Connect servers such as Databricks or pysail).

Delta on Spark makes each write one atomic commit and honours txnAppId/txnVersion itself.
Some engines ignore those two options (pysail 0.7 does): after such a write the sink records
the transaction in a follow-up commit, so repeats are still skipped (that record is then a
second commit rather than part of the first; the log says so).
"""

from __future__ import annotations

import datetime as dt
import logging

from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.delta.model import ConcurrentWriteError, PartitionValue, WriteRequest, WriteResult
from jobs.core.delta.table_state import (
    already_applied,
    commit_properties,
    conflict_message,
    load_table,
    replaced_files,
)

log = logging.getLogger(__name__)
NAME = "native"
MAX_WRITE_ATTEMPTS = 5
_SPARK_MODES = {
    "create": "error",
    "append": "append",
    "replace": "overwrite",
    "overwrite": "overwrite",
}


def sql_literal(value: PartitionValue) -> str:
    """A partition value as a Spark SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return f"DATE'{value.isoformat()}'"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def replace_where(request: WriteRequest) -> str:
    """The replaceWhere predicate naming exactly the replaced partitions."""
    clauses = []
    for column, values in request.replace.items():
        non_null = [v for v in values if v is not None]
        parts = []
        if non_null:
            parts.append(f"`{column}` IN ({', '.join(sql_literal(v) for v in non_null)})")
        if len(non_null) < len(values):
            parts.append(f"`{column}` IS NULL")
        clauses.append("(" + " OR ".join(parts) + ")")
    return " AND ".join(clauses)


def guard_replaced_rows(df: DataFrame, request: WriteRequest) -> DataFrame:
    """Fail the write on the first row outside the replaced partitions.

    Delta on Spark checks this itself; not every engine does, and silently dropping or
    writing such rows would lose or duplicate data.
    """
    message = (
        f"replace into {request.path}: a row falls outside the replaced partitions "
        f"{ {k: [str(v) for v in vs] for k, vs in request.replace.items()} }"
    )
    inside = F.expr(replace_where(request))
    return df.where(F.when(inside, F.lit(True)).otherwise(F.raise_error(F.lit(message))))


def is_commit_conflict(exc: Exception) -> bool:
    """Delta's Concurrent*Exception family, or an engine's failed optimistic commit."""
    text = str(exc)
    return "Concurrent" in text or "Failed to commit transaction" in text


def record_transaction(uri: str, request: WriteRequest) -> None:
    """Record the app transaction in a commit of its own (for engines that ignore it)."""
    table = DeltaTable(uri)
    table.create_write_transaction(
        [],
        mode="append",
        schema=table.schema(),
        partition_by=table.metadata().partition_columns or None,
        commit_properties=commit_properties(request.txn, "record-txn"),
    )


class NativeBackend:
    """Spark's `format("delta")` writer."""

    name = NAME

    def write(self, df: DataFrame, request: WriteRequest, uri: str) -> WriteResult:
        pinned = load_table(uri)
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            try:
                self._save(df, request, uri)
                break
            except Exception as exc:
                if not is_commit_conflict(exc):
                    raise
                latest = load_table(uri)
                retry = (
                    request.mode == "replace"
                    and attempt < MAX_WRITE_ATTEMPTS
                    and pinned is not None
                    and latest is not None
                    and replaced_files(pinned, request) == replaced_files(latest, request)
                )
                if not retry:
                    version = latest.version() if latest is not None else None
                    raise ConcurrentWriteError(conflict_message(request, version)) from exc
                log.info("%s: commit raced a writer of other partitions; retrying", uri)
        return self._result(request, uri)

    def _save(self, df: DataFrame, request: WriteRequest, uri: str) -> None:
        if request.mode == "replace":
            df = guard_replaced_rows(df, request)
        writer = df.write.format("delta").mode(_SPARK_MODES[request.mode])
        if request.partition_by:
            writer = writer.partitionBy(*request.partition_by)
        if request.mode == "replace":
            writer = writer.option("replaceWhere", replace_where(request))
        if request.txn:
            writer = writer.option("txnAppId", request.txn.app_id)
            writer = writer.option("txnVersion", str(request.txn.version))
        writer.save(uri)

    def _result(self, request: WriteRequest, uri: str) -> WriteResult:
        table = load_table(uri)
        rows, files = _written_counts(table)
        if request.txn and not already_applied(table, request.txn):
            log.warning(
                "%s: this Spark engine did not record %s; recording it in a separate commit",
                uri,
                request.txn,
            )
            record_transaction(uri, request)
            table = load_table(uri)
        return WriteResult(
            path=request.path,
            mode=request.mode,
            backend=NAME,
            version=table.version() if table is not None else None,
            files_added=files,
            rows_added=rows,
        )


def _written_counts(table: DeltaTable | None) -> tuple[int | None, int | None]:
    """Rows and files the latest commit added, from its operation metrics, when recorded."""
    if table is None:
        return None, None
    history = table.history(1)
    metrics = history[0].get("operationMetrics", {}) if history else {}
    rows, files = metrics.get("numOutputRows"), metrics.get("numFiles")
    return (int(rows) if rows is not None else None, int(files) if files is not None else None)

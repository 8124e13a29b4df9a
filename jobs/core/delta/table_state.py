"""What the driver needs to know about an existing table, read from its log with delta-rs.

Only metadata is read here (the transaction log), never data, so it is cheap on any size.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import CommitProperties, Transaction

from jobs.core.delta.model import AppTxn, WriteRequest, partition_literal


def load_table(uri: str, version: int | None = None) -> DeltaTable | None:
    """The table at `uri` (at `version` if given), or None when there is no Delta table."""
    if not DeltaTable.is_deltatable(uri):
        return None
    try:
        return DeltaTable(uri, version=version)
    except TableNotFoundError:
        return None


def applied_version(table: DeltaTable | None, app_id: str) -> int | None:
    """The highest txnVersion recorded for `app_id`, or None."""
    if table is None:
        return None
    version = table.transaction_version(app_id)
    return int(version) if version is not None else None


def already_applied(table: DeltaTable | None, txn: AppTxn | None) -> bool:
    """True when the table has recorded `txn` (or a later version of the same app id)."""
    if txn is None:
        return False
    recorded = applied_version(table, txn.app_id)
    return recorded is not None and recorded >= txn.version


def commit_properties(txn: AppTxn | None, operation: str) -> CommitProperties:
    """Commit metadata: the app transaction, when given, and who wrote the commit."""
    return CommitProperties(
        # Off: delta-rs would otherwise rebase a commit past a concurrent one on its own,
        # skipping the sink's checks of replaced files and app transactions.
        max_commit_retries=0,
        custom_metadata={"writer": "safety-metrics", "writerOperation": operation},
        app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
    )


def _file_rows(table: DeltaTable) -> list[dict[str, object]]:
    """Path and partition values of each live file (the stats columns are left out)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    keep = [c for c in actions.column_names if c == "path" or c.startswith("partition.")]
    rows: list[dict[str, object]] = actions.select(keep).to_pylist()
    return rows


def live_paths(table: DeltaTable) -> list[str]:
    """Paths (as in the log) of the table's live files."""
    return [str(r["path"]) for r in _file_rows(table)]


def replaced_files(table: DeltaTable, request: WriteRequest) -> set[str]:
    """Live files in the partitions `request` replaces (all files for an overwrite)."""
    wanted = {c: {partition_literal(v) for v in vals} for c, vals in request.replace.items()}
    return {
        str(r["path"])
        for r in _file_rows(table)
        if all(partition_literal(r.get(f"partition.{c}")) in wanted[c] for c in wanted)  # type: ignore[arg-type]
    }


def conflict_message(request: WriteRequest, version: int | None) -> str:
    """The error for a write that lost a race with another writer."""
    at = f" (now at version {version})" if version is not None else ""
    scope = f"partitions {dict(request.replace)}" if request.replace else "the table"
    return (
        f"another writer changed {scope} of Delta table {request.path}{at} during this "
        f"{request.mode}; nothing of this write was committed, re-run it to retry"
    )

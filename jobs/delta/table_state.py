"""What the driver needs to know about an existing table, read from its log with delta-rs.

Only metadata is read here (the transaction log), never data, so it is cheap on any size.
"""

from __future__ import annotations

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import CommitProperties, Transaction

from jobs.delta.model import AppTxn


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
        custom_metadata={"writer": "safety-metrics", "writerOperation": operation},
        app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
    )

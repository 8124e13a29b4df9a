"""The vocabulary of the Delta sink: what a write asks for and what it did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

WriteMode = Literal["create", "append", "replace", "overwrite"]
WRITE_MODES: tuple[WriteMode, ...] = ("create", "append", "replace", "overwrite")
PartitionValue = str | int | bool | dt.date | None


@dataclass(frozen=True)
class AppTxn:
    """An idempotency token, Delta's txnAppId/txnVersion: a repeated (id, version) is skipped.

    Versions of one app id must grow: a write whose version is at or below the table's
    recorded version for that id has already been applied.
    """

    app_id: str
    version: int

    def __post_init__(self) -> None:
        if not self.app_id:
            raise ValueError("AppTxn.app_id must be a non-empty string")
        if self.version < 0:
            raise ValueError(f"AppTxn.version must be >= 0, got {self.version}")


@dataclass(frozen=True)
class WriteRequest:
    """One write of a DataFrame into a Delta table at `path`.

    - create: a new table; fails if one exists.
    - append: add rows (creates the table when missing).
    - replace: atomically replace the rows of the partitions named in `replace` (e.g.
      {"date": [2026-11-01]}); every written row must fall in those partitions.
    - overwrite: atomically replace the whole table's content.
    """

    path: str
    mode: WriteMode
    partition_by: tuple[str, ...] = ()
    replace: Mapping[str, Sequence[PartitionValue]] = field(default_factory=dict)
    txn: AppTxn | None = None

    def __post_init__(self) -> None:
        if self.mode not in WRITE_MODES:
            raise ValueError(f"unknown write mode {self.mode!r}; use one of {WRITE_MODES}")
        if self.mode == "replace":
            if not self.replace:
                raise ValueError(
                    f"{self.path}: mode 'replace' needs the partitions to replace, "
                    "e.g. replace={'date': [date]}"
                )
            outside = sorted(set(self.replace) - set(self.partition_by))
            if outside:
                raise ValueError(
                    f"{self.path}: can only replace by partition columns "
                    f"{list(self.partition_by)}, not {outside}"
                )
            for values in self.replace.values():
                for value in values:
                    partition_literal(value)  # rejects unsupported values before any work
            empty = sorted(k for k, v in self.replace.items() if len(v) == 0)
            if empty:
                raise ValueError(f"{self.path}: no values given to replace for {empty}")
        elif self.replace:
            raise ValueError(f"{self.path}: 'replace' values are only allowed in mode 'replace'")


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the table version it produced, or that it was skipped."""

    path: str
    mode: WriteMode
    backend: str
    version: int | None
    skipped: bool = False
    files_added: int | None = None
    rows_added: int | None = None


class DeltaWriteError(RuntimeError):
    """A write that was refused or failed; the table is left at its previous version."""


class SchemaMismatchError(DeltaWriteError):
    """The data's columns do not match the existing table's."""


class ConcurrentWriteError(DeltaWriteError):
    """Another writer committed a conflicting change first; nothing was committed. Retry."""


def partition_literal(value: PartitionValue) -> str | None:
    """A partition value as Delta stores it in the log (a string; None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        raise TypeError("timestamp partition values are not supported; partition by date")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)

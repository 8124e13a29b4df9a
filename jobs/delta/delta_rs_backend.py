"""The delta-rs backend: Spark executors write Parquet, the driver commits atomically.

Used where the Spark session has no Delta extension (here: Delta's jars are unreachable).
Steps: pin the table snapshot, let Spark write the data into a fresh folder inside the
table, list what was written, then commit add (and, for replace/overwrite, remove) actions
in one Delta transaction against the pinned snapshot. Until that commit, readers see the
previous version; if anything fails, the written folder is deleted and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame

from jobs.delta.location import filesystem
from jobs.delta.model import (
    ConcurrentWriteError,
    DeltaWriteError,
    WriteRequest,
    WriteResult,
    partition_literal,
)
from jobs.delta.schema import delta_schema
from jobs.delta.staged_files import StagedFile, list_staged_files
from jobs.delta.table_state import (
    already_applied,
    commit_properties,
    conflict_message,
    load_table,
    replaced_files,
)

log = logging.getLogger(__name__)
NAME = "delta-rs"
MAX_COMMIT_ATTEMPTS = 5


def staging_dir_name() -> str:
    """A fresh, sortable, non-hidden folder name (Delta's VACUUM skips hidden ones)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"write-{stamp}-{uuid.uuid4().hex[:12]}"


def rows_outside_replaced(
    request: WriteRequest, files: list[StagedFile]
) -> list[dict[str, str | None]]:
    """Partition values written by a replace that are not among the partitions it replaces."""
    allowed = {
        column: {partition_literal(v) for v in values} for column, values in request.replace.items()
    }
    bad = []
    for f in files:
        if any(f.partition_values[c] not in allowed[c] for c in allowed):
            bad.append(f.partition_values)
    return bad


def _partition_filters(request: WriteRequest) -> list[tuple[str, str, list[str | None]]]:
    return [
        (column, "in", [partition_literal(v) for v in values])
        for column, values in request.replace.items()
    ]


class DeltaRsBackend:
    """Spark writes Parquet into the table folder; delta-rs commits it atomically."""

    name = NAME

    def stage(
        self, df: DataFrame, request: WriteRequest, uri: str, folder: str
    ) -> list[StagedFile]:
        """Run the Spark job that writes the data files into `folder`; list them."""
        writer = df.write.mode("errorifexists")
        if request.partition_by:
            writer = writer.partitionBy(*request.partition_by)
        writer.parquet(f"{uri}/{folder}")
        fs, root = filesystem(uri)
        return list_staged_files(fs, root, folder, request.partition_by)

    def discard(self, uri: str, folder: str) -> None:
        """Delete a staged folder that will not be committed (best effort)."""
        fs, root = filesystem(uri)
        try:
            fs.delete_dir(f"{root}/{folder}")
        except OSError as exc:  # pragma: no cover - cleanup must not hide the real error
            log.warning("could not delete staged files %s/%s: %s", uri, folder, exc)

    def write(self, df: DataFrame, request: WriteRequest, uri: str) -> WriteResult:
        pinned = load_table(uri)
        folder = staging_dir_name()
        try:
            files = self.stage(df, request, uri, folder)
            return self.commit(df, request, uri, pinned, files)
        except _AlreadyApplied:
            self.discard(uri, folder)
            log.info("%s: %s was committed by another writer meanwhile; skipped", uri, request.txn)
            return WriteResult(request.path, request.mode, NAME, DeltaTable(uri).version(), True)
        except BaseException:
            self.discard(uri, folder)
            raise

    def commit(
        self,
        df: DataFrame,
        request: WriteRequest,
        uri: str,
        pinned: DeltaTable | None,
        files: list[StagedFile],
    ) -> WriteResult:
        """Commit staged files against the snapshot `pinned` was loaded at."""
        if request.mode == "replace":
            outside = rows_outside_replaced(request, files)
            if outside:
                raise DeltaWriteError(
                    f"replace into {request.path}: data has rows in partitions "
                    f"{outside[:3]} outside the replaced ones {dict(request.replace)}"
                )
        if request.txn and already_applied(load_table(uri), request.txn):
            raise _AlreadyApplied()
        adds = [f.add_action() for f in files]
        schema = delta_schema(df.schema)
        props = commit_properties(request.txn, request.mode)
        if pinned is None:
            self._create(request, uri, schema, adds, props)
        else:
            self._commit_to(request, uri, pinned, schema, adds, props)
        version = DeltaTable(uri).version()
        return WriteResult(
            path=request.path,
            mode=request.mode,
            backend=NAME,
            version=version,
            files_added=len(files),
            rows_added=sum(f.num_records for f in files),
        )

    def _create(
        self,
        request: WriteRequest,
        uri: str,
        schema: DeltaSchema,
        adds: list[AddAction],
        props: CommitProperties,
    ) -> None:
        try:
            create_table_with_add_actions(
                uri,
                schema,
                adds,
                mode="error",
                partition_by=list(request.partition_by) or None,
                commit_properties=props,
            )
        except DeltaError as exc:
            if DeltaTable.is_deltatable(uri):
                raise ConcurrentWriteError(
                    f"another writer created Delta table {request.path} during this write; "
                    "nothing was committed, re-run it to retry"
                ) from exc
            raise

    def _commit_to(
        self,
        request: WriteRequest,
        uri: str,
        pinned: DeltaTable,
        schema: DeltaSchema,
        adds: list[AddAction],
        props: CommitProperties,
    ) -> None:
        """Commit, unless another writer changed what this write replaces since `pinned`.

        delta-rs commits an overwrite against the newest snapshot, so the sink itself checks
        that the files this replace removes are still the ones it saw when it started; a
        concurrent commit to other partitions only makes it try again.
        """
        actions: list[AddAction | RemoveAction] = list(adds)
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            latest = load_table(uri) or pinned
            if request.mode != "append" and replaced_files(pinned, request) != replaced_files(
                latest, request
            ):
                raise ConcurrentWriteError(conflict_message(request, latest.version()))
            try:
                latest.create_write_transaction(
                    actions,
                    mode="append" if request.mode == "append" else "overwrite",
                    schema=schema,
                    partition_by=list(request.partition_by) or None,
                    partition_filters=_partition_filters(request) or None,
                    commit_properties=props,
                )
                return
            except CommitFailedError as exc:
                if attempt == MAX_COMMIT_ATTEMPTS:
                    raise ConcurrentWriteError(conflict_message(request, None)) from exc
                log.info("%s: commit raced another writer (%s); checking again", request.path, exc)


class _AlreadyApplied(Exception):
    """Internal signal: the app transaction was committed while this write was staging."""

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

from jobs.core.delta.commit_gate import wait_at_commit_gate
from jobs.core.delta.location import filesystem
from jobs.core.delta.model import (
    ConcurrentWriteError,
    DeltaWriteError,
    WriteRequest,
    WriteResult,
    partition_literal,
)
from jobs.core.delta.schema import check_partitioning, check_schema, delta_schema
from jobs.core.delta.staged_files import StagedFile, list_staged_files
from jobs.core.delta.table_state import (
    already_applied,
    commit_properties,
    conflict_message,
    live_paths,
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
        if any(v is None for values in request.replace.values() for v in values):
            raise DeltaWriteError(
                f"{request.path}: the delta-rs backend cannot replace the null partition "
                "(delta-rs partition filters take no nulls); use the native backend"
            )
        pinned = load_table(uri)
        pinned_files = replaced_files(pinned, request) if pinned is not None else set()
        folder = staging_dir_name()
        try:
            files = self.stage(df, request, uri, folder)
            wait_at_commit_gate(uri)
            self.commit(df, request, uri, pinned_files, files)
        except _AlreadyApplied:
            self.discard(uri, folder)
            log.info("%s: %s was committed by another writer meanwhile; skipped", uri, request.txn)
            return WriteResult(request.path, request.mode, NAME, DeltaTable(uri).version(), True)
        except BaseException:
            # A commit can land and still raise (a post-commit hook, an interrupt): never
            # delete files that the table now references.
            if not references_folder(uri, folder):
                self.discard(uri, folder)
            raise
        return WriteResult(
            path=request.path,
            mode=request.mode,
            backend=NAME,
            version=DeltaTable(uri).version(),
            files_added=len(files),
            rows_added=sum(f.num_records for f in files),
        )

    def commit(
        self,
        df: DataFrame,
        request: WriteRequest,
        uri: str,
        pinned_files: set[str],
        files: list[StagedFile],
    ) -> None:
        """Commit staged files, unless the replaced files changed since `pinned_files`."""
        if request.mode == "replace":
            outside = rows_outside_replaced(request, files)
            if outside:
                raise DeltaWriteError(
                    f"replace into {request.path}: data has rows in partitions "
                    f"{outside[:3]} outside the replaced ones {dict(request.replace)}"
                )
        adds = [f.add_action() for f in files]
        props = commit_properties(request.txn, request.mode)
        if load_table(uri) is None:
            try:
                self._create(request, uri, delta_schema(df.schema), adds, props)
                return
            except ConcurrentWriteError:
                if request.mode == "create":
                    raise
                log.info("%s: created by another writer meanwhile; committing to it", uri)
        self._commit_to(request, uri, pinned_files, df, adds, props)

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
        pinned_files: set[str],
        df: DataFrame,
        adds: list[AddAction],
        props: CommitProperties,
    ) -> None:
        """Commit to the newest snapshot after checking it again, one attempt at a time.

        delta-rs commits an overwrite against the newest snapshot and does not see a
        concurrent append as a conflict, so the sink checks before every attempt that the
        files this write replaces are still those it saw when it started, that its app
        transaction is still new, and that the schema still matches; delta-rs's own retries
        are off (see `commit_properties`) so every race comes back here.
        """
        actions: list[AddAction | RemoveAction] = list(adds)
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            latest = load_table(uri)
            if latest is None:
                raise DeltaWriteError(f"Delta table {request.path} disappeared during the write")
            if request.mode == "create":
                raise DeltaWriteError(f"Delta table {request.path} already exists (mode 'create')")
            if already_applied(latest, request.txn):
                raise _AlreadyApplied()
            check_partitioning(
                request.path, list(latest.metadata().partition_columns), request.partition_by
            )
            check_schema(request.path, latest.schema(), delta_schema(df.schema))
            if request.mode != "append" and replaced_files(latest, request) != pinned_files:
                raise ConcurrentWriteError(conflict_message(request, latest.version()))
            try:
                latest.create_write_transaction(
                    actions,
                    mode="append" if request.mode == "append" else "overwrite",
                    schema=latest.schema(),
                    partition_by=list(request.partition_by) or None,
                    partition_filters=_partition_filters(request) or None,
                    commit_properties=props,
                )
                return
            except CommitFailedError as exc:
                if attempt == MAX_COMMIT_ATTEMPTS:
                    raise ConcurrentWriteError(conflict_message(request, None)) from exc
                log.info("%s: commit raced another writer (%s); checking again", request.path, exc)


def references_folder(uri: str, folder: str) -> bool:
    """Whether the table's current version has live files in `folder`."""
    try:
        table = load_table(uri)
    except Exception:  # pragma: no cover - when in doubt, keep the files
        return True
    if table is None:
        return False
    return any(path.startswith(f"{folder}/") for path in live_paths(table))


class _AlreadyApplied(Exception):
    """Internal signal: the app transaction was committed while this write was staging."""

"""The Delta sink: the one interface every job uses to write and read Delta tables.

    sink = DeltaSink.for_session(spark, config.delta_backend)
    sink.write(df, path, mode="replace", partition_by=("date",), replace={"date": [day]},
               txn=AppTxn("daily-metrics", 20261101))
    sink.read(path)

Two interchangeable backends do the work (see `native_backend` and `delta_rs_backend`);
either way the result is a standard Delta table. Checks common to both run first, on the
driver, from the table's log: the schema and partitioning match, and a repeated app
transaction is skipped rather than written twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import TimestampNTZType, TimestampType

from jobs.core.config import DeltaBackendChoice
from jobs.core.delta.delta_rs_backend import DeltaRsBackend
from jobs.core.delta.location import table_uri
from jobs.core.delta.model import (
    AppTxn,
    DeltaWriteError,
    PartitionValue,
    WriteMode,
    WriteRequest,
    WriteResult,
)
from jobs.core.delta.native_backend import NativeBackend
from jobs.core.delta.reader import read_delta_files
from jobs.core.delta.schema import check_partitioning, check_schema, delta_schema
from jobs.core.delta.table_state import already_applied, load_table
from jobs.core.logs import quiet_spark_errors

log = logging.getLogger(__name__)
#: Called with every write's result (the run log counts rows written per table).
WRITE_LISTENERS: list[Callable[[WriteResult], None]] = []


class Backend(Protocol):
    name: str

    def write(self, df: DataFrame, request: WriteRequest, uri: str) -> WriteResult: ...


def session_has_delta(spark: SparkSession) -> bool:
    """Whether Spark itself can read Delta: ask it to resolve a Delta scan of a missing path.

    Without the extension the error is DATA_SOURCE_NOT_FOUND; with it, a 'path does not
    exist' or 'not a Delta table' error (or none) comes back instead.
    """
    probe = f"/tmp/safety-metrics-delta-probe-{uuid.uuid4().hex}"
    try:
        with quiet_spark_errors():
            spark.read.format("delta").load(probe).schema  # noqa: B018 - forces analysis
    except Exception as exc:
        text = str(exc)
        return "DATA_SOURCE_NOT_FOUND" not in text and "Failed to find the data source" not in text
    return True


def check_partition_columns(path: str, df: DataFrame, partition_by: tuple[str, ...]) -> None:
    """Partition columns must exist, have plain names, and not be timestamps (their folder
    names would be written in the session time zone but read as UTC)."""
    types = {f.name: f.dataType for f in df.schema.fields}
    for column in partition_by:
        if column not in types:
            raise DeltaWriteError(f"{path}: partition column '{column}' is not in the data")
        if column.startswith(("_", ".")):
            raise DeltaWriteError(
                f"{path}: partition column '{column}' starts with '_' or '.', which readers "
                "treat as hidden; rename it"
            )
        if isinstance(types[column], TimestampType | TimestampNTZType):
            raise DeltaWriteError(
                f"{path}: partition column '{column}' is a timestamp; partition by a date "
                "(e.g. to_date(ts)) instead"
            )


def choose_backend(spark: SparkSession, choice: DeltaBackendChoice) -> Backend:
    """The configured backend, or for `auto` the native one when Spark has Delta."""
    if choice == "native":
        return NativeBackend()
    if choice == "delta-rs":
        return DeltaRsBackend()
    return NativeBackend() if session_has_delta(spark) else DeltaRsBackend()


def _tell(result: WriteResult) -> None:
    for listener in list(WRITE_LISTENERS):
        listener(result)


class DeltaSink:
    """Writes and reads Delta tables through one backend."""

    def __init__(self, spark: SparkSession, backend: Backend) -> None:
        self.spark = spark
        self.backend = backend

    @classmethod
    def for_session(cls, spark: SparkSession, choice: DeltaBackendChoice = "auto") -> DeltaSink:
        sink = cls(spark, choose_backend(spark, choice))
        log.info("Delta sink: %s backend (configured: %s)", sink.backend.name, choice)
        return sink

    def write(
        self,
        df: DataFrame,
        path: str,
        *,
        mode: WriteMode,
        partition_by: Sequence[str] = (),
        replace: Mapping[str, Sequence[PartitionValue]] | None = None,
        txn: AppTxn | None = None,
    ) -> WriteResult:
        """Write `df` to the Delta table at `path` in one atomic commit (see `WriteRequest`)."""
        request = WriteRequest(
            path=path, mode=mode, partition_by=tuple(partition_by), replace=replace or {}, txn=txn
        )
        uri = table_uri(path)
        check_partition_columns(path, df, request.partition_by)
        existing = load_table(uri)
        if existing is not None:
            if mode == "create":
                raise DeltaWriteError(f"Delta table {path} already exists (mode 'create')")
            if already_applied(existing, txn):
                log.info("%s: %s already committed; skipped", path, txn)
                skipped = WriteResult(path, mode, self.backend.name, existing.version(), True)
                _tell(skipped)
                return skipped
            check_partitioning(
                path, list(existing.metadata().partition_columns), request.partition_by
            )
            check_schema(path, existing.schema(), delta_schema(df.schema))
        result = self.backend.write(df, request, uri)
        log.info(
            "%s: %s -> version %s (%s backend%s)",
            path,
            mode,
            result.version,
            result.backend,
            ", skipped" if result.skipped else "",
        )
        _tell(result)
        return result

    def add_missing_columns(self, path: str, df: DataFrame) -> list[str]:
        """Add to the existing table at `path` the columns of `df` that it lacks (nullable,
        at the end, in one metadata-only commit; older rows read them as null), so that a
        job whose output gained columns keeps writing to the table it wrote before. The
        names added; none when the table does not exist. The write that follows still
        checks every other column."""
        table = load_table(table_uri(path))
        if table is None:
            return []
        have = {f.name for f in table.schema().fields}
        new = [f for f in delta_schema(df.schema).fields if f.name not in have]
        if new:
            table.alter.add_columns(new)
            log.info("%s: added columns %s", path, ", ".join(f.name for f in new))
        return [f.name for f in new]

    def read(self, path: str, version: int | None = None) -> DataFrame:
        """The table's rows (at `version` when given) as a DataFrame."""
        uri = table_uri(path)
        if isinstance(self.backend, NativeBackend):
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(uri)
        return read_delta_files(self.spark, uri, version)

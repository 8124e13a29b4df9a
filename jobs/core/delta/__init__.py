"""Writing and reading Delta tables, with a native-Spark and a delta-rs backend."""

from jobs.core.delta.model import (
    AppTxn,
    ConcurrentWriteError,
    DeltaWriteError,
    SchemaMismatchError,
    WriteMode,
    WriteResult,
)
from jobs.core.delta.sink import DeltaSink

__all__ = [
    "AppTxn",
    "ConcurrentWriteError",
    "DeltaSink",
    "DeltaWriteError",
    "SchemaMismatchError",
    "WriteMode",
    "WriteResult",
]

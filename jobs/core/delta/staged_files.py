"""Turn the Parquet files that Spark's executors wrote into Delta add actions.

Spark writes a partitioned Parquet dataset into a fresh folder inside the table; the driver
lists that folder (metadata only), reads partition values from the `col=value` folder names
and per-file statistics from the Parquet footers, and commits them with delta-rs.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
#: Longest string kept as a min/max statistic; longer values get no statistic.
MAX_STAT_STRING = 32


@dataclass(frozen=True)
class StagedFile:
    """One data file written by Spark, relative to the table root."""

    relative_path: str
    size: int
    modification_time_ms: int
    partition_values: dict[str, str | None]
    num_records: int
    stats: dict[str, Any]

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.relative_path,  # delta-rs percent-encodes it in the log
            size=self.size,
            partition_values=self.partition_values,
            modification_time=self.modification_time_ms,
            data_change=True,
            stats=json.dumps(self.stats),
        )


def partition_values_from_path(
    relative_path: str, partition_by: tuple[str, ...]
) -> dict[str, str | None]:
    """Read `col=value` folder names (Spark escapes them like Hive; unquote reverses it)."""
    found: dict[str, str | None] = {}
    for part in relative_path.split("/")[:-1]:
        key, sep, raw = part.partition("=")
        if sep and key in partition_by:
            value = unquote(raw)
            found[key] = None if value == HIVE_NULL else value
    missing = [c for c in partition_by if c not in found]
    if missing:
        raise ValueError(f"file {relative_path} has no folder for partition column(s) {missing}")
    return {c: found[c] for c in partition_by}


def _stat_value(value: Any) -> Any:
    """A footer min/max as Delta writes it in stats JSON, or None when it must be left out."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # Footers may leave NaN out of min/max while Spark orders NaN above everything, so a
        # float max could wrongly let a reader skip a file holding NaN.
        return None
    if isinstance(value, dt.datetime):
        # Truncating microseconds could make a max too small and skip matching files.
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value if len(value) <= MAX_STAT_STRING else None
    return None


def _column_stats(chunks: list[Any]) -> tuple[int | None, Any, Any]:
    """(null count, min, max) of one column over all its row groups; None where unknown."""
    if any(c.statistics is None for c in chunks):
        return None, None, None
    stats = [c.statistics for c in chunks]
    nulls = sum(s.null_count for s in stats) if all(s.has_null_count for s in stats) else None
    lows, highs = [], []
    for chunk, st in zip(chunks, stats, strict=True):
        if st.has_min_max:
            lows.append(_stat_value(st.min))
            highs.append(_stat_value(st.max))
        elif not (st.has_null_count and st.null_count == chunk.num_values):
            return nulls, None, None  # values present but no min/max recorded
    if not lows or any(v is None for v in lows + highs):
        return nulls, None, None
    return nulls, min(lows), max(highs)


def footer_stats(metadata: pq.FileMetaData) -> tuple[int, dict[str, Any]]:
    """numRecords, minValues, maxValues and nullCount of top-level columns, from a footer."""
    chunks: dict[str, list[Any]] = {}
    for rg in range(metadata.num_row_groups):
        group = metadata.row_group(rg)
        for ci in range(group.num_columns):
            column = group.column(ci)
            if "." not in column.path_in_schema:  # nested leaves get no statistic
                chunks.setdefault(column.path_in_schema, []).append(column)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, column_chunks in chunks.items():
        null_count, low, high = _column_stats(column_chunks)
        if null_count is not None:
            nulls[name] = null_count
        if low is not None and high is not None:
            mins[name], maxs[name] = low, high
    stats = {
        "numRecords": metadata.num_rows,
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    }
    return metadata.num_rows, stats


def list_staged_files(
    fs: pafs.FileSystem, table_root: str, staging_dir: str, partition_by: tuple[str, ...]
) -> list[StagedFile]:
    """Every Parquet data file under `staging_dir` (skipping Spark's `_SUCCESS` and the like)."""
    selector = pafs.FileSelector(f"{table_root}/{staging_dir}", recursive=True)
    files: list[StagedFile] = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(table_root) + 1 :]
        parts = relative.split("/")
        if parts[-1].startswith(("_", ".")) or "_temporary" in parts:
            continue
        if not relative.endswith(".parquet"):
            continue
        with fs.open_input_file(info.path) as handle:
            metadata = pq.read_metadata(handle)
        num_records, stats = footer_stats(metadata)
        mtime = info.mtime
        files.append(
            StagedFile(
                relative_path=relative,
                size=int(info.size or 0),
                modification_time_ms=int(mtime.timestamp() * 1000) if mtime else 0,
                partition_values=partition_values_from_path(relative, partition_by),
                num_records=num_records,
                stats=stats,
            )
        )
    return sorted(files, key=lambda f: f.relative_path)

"""Reading a user's unit-level table (`experiment --units PATH`: CSV, Parquet or Delta) with
every row's location (a CSV's file line, a Parquet or Delta row number), so that each
problem found later names its file, line or row, and column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from jobs.core.delta import DeltaSink
from jobs.core.failures import UsageError

#: Location columns added to the user's columns.
FILE = "__file"

SPLIT = "__split"

POS = "__pos"

Kind = Literal["csv", "parquet", "delta"]


class UnitTableError(UsageError):
    """A user's unit-level table cannot be analysed as it is (the message says where)."""


@dataclass(frozen=True)
class LocatedTable:
    """The user's rows under their own column names, with FILE, SPLIT and POS beside them
    (null where the format gives no location) and the flags `__header`, `__blank` and
    `__extra` (a CSV's header line, blank lines, and a field beyond the header's)."""

    path: str
    kind: Kind
    rows: DataFrame
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Locator:
    """Turns a row's (FILE, SPLIT, POS) into 'file:line' (CSV) or 'file row N'."""

    kind: Kind
    #: CSV: (file, split start) -> (line number of the split's first line, its position).
    split_lines: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    @staticmethod
    def of_splits(kind: Kind, splits: Sequence[Row]) -> Locator:
        """From one row per split with its FILE, SPLIT, `lines` and `first` position."""
        split_lines: dict[tuple[str, int], tuple[int, int]] = {}
        next_line: dict[str, int] = {}
        for row in sorted(splits, key=lambda r: (str(r[FILE]), int(r[SPLIT] or 0))):
            if row[FILE] is None:
                continue
            file = str(row[FILE])
            split_lines[(file, int(row[SPLIT]))] = (next_line.get(file, 1), int(row["first"]))
            next_line[file] = next_line.get(file, 1) + int(row["lines"])
        return Locator(kind, split_lines)

    def where(self, file: str | None, split: int | None, pos: int | None) -> str:
        if file is None or pos is None:
            return ""
        shown = shown_path(str(file))
        if self.kind == "csv":
            first_line, first_pos = self.split_lines[(str(file), int(split or 0))]
            return f"{shown}:{first_line + int(pos) - first_pos}"
        return f"{shown} row {int(pos) + 1}"

    def of(self, row: Row) -> str:
        return self.where(row[FILE], row[SPLIT], row[POS])


def shown_path(uri: str) -> str:
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            return uri[len(prefix) :]
    return uri


def _cannot_read(path: str, exc: AnalysisException) -> UnitTableError:
    first = (str(exc).strip().splitlines() or [""])[0]
    return UnitTableError(f"{path}: cannot read it as a unit table: {first}")


def _no_flags() -> list[Column]:
    return [
        F.lit(False).alias("__header"),
        F.lit(False).alias("__blank"),
        F.lit(None).cast("string").alias("__extra"),
    ]


def _parquet_rows(scan: DataFrame) -> DataFrame:
    """A Parquet scan's rows with their file and row index (selected on the scan itself)."""
    return scan.select(
        *[F.col(f"`{c}`") for c in scan.columns],
        F.col("_metadata.file_path").alias(FILE),
        F.lit(0).cast("long").alias(SPLIT),
        F.col("_metadata.row_index").alias(POS),
        *_no_flags(),
    )


def read_located(spark: SparkSession, sink: DeltaSink, path: str) -> LocatedTable:
    """A Delta folder, a Parquet file or folder, or a CSV file (with a header), with every
    row's location."""
    try:
        if os.path.isdir(os.path.join(path, "_delta_log")):
            return _read_delta(spark, sink, path)
        if path.endswith(".csv"):
            return _read_csv(spark, path)
        if path.endswith(".parquet") or os.path.isdir(path):
            scan = spark.read.parquet(path)
            return LocatedTable(path, "parquet", _parquet_rows(scan), tuple(scan.columns))
    except AnalysisException as exc:
        raise _cannot_read(path, exc) from None
    raise UnitTableError(f"{path}: not a Delta table, a .parquet file or folder, or a .csv file")


def _read_delta(spark: SparkSession, sink: DeltaSink, path: str) -> LocatedTable:
    """An unpartitioned table through the delta-rs backend: its live Parquet files with row
    locations; otherwise the sink's reader, without locations."""
    from deltalake import DeltaTable

    from jobs.core.delta.native_backend import NativeBackend

    table = DeltaTable(path)
    plain = not table.metadata().partition_columns and not (table.protocol().reader_features or [])
    files = table.file_uris() if plain and not isinstance(sink.backend, NativeBackend) else []
    if files:
        scan = spark.read.parquet(*files)
        return LocatedTable(path, "delta", _parquet_rows(scan), tuple(scan.columns))
    rows = sink.read(path)
    located = rows.select(
        "*",
        F.lit(None).cast("string").alias(FILE),
        F.lit(None).cast("long").alias(SPLIT),
        F.lit(None).cast("long").alias(POS),
        *_no_flags(),
    )
    return LocatedTable(path, "delta", located, tuple(rows.columns))


def _read_csv(spark: SparkSession, path: str) -> LocatedTable:
    """Every line of the file with its split and position, parsed as text with the
    header's names (see the module docstring for how lines are numbered)."""
    names = spark.read.option("header", True).csv(path).columns
    if not names:
        raise UnitTableError(f"{path}: the file is empty (expected a header line first)")
    lines = spark.read.text(path).select(
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(SPLIT),
        F.monotonically_increasing_id().alias(POS),
        # A spreadsheet's UTF-8 byte order mark is not part of the first name.
        F.regexp_replace(F.col("value"), "^\ufeff", "").alias("__line"),
    )
    fields = [*names, "__extra"]
    ddl = ", ".join(f"`{n.replace('`', '``')}` STRING" for n in fields)
    parsed = lines.select(FILE, SPLIT, POS, "__line", F.from_csv(F.col("__line"), ddl).alias("r"))
    # The header line: its fields are the names (Spark calls a blank name _c<i>).
    matches = [
        F.col("r").getField(n).eqNullSafe(F.lit(n))
        | (F.lit(n == f"_c{i}") & F.col("r").getField(n).isNull())
        for i, n in enumerate(names)
    ]
    rows = parsed.select(
        *[F.col("r").getField(n).alias(n) for n in names],
        FILE,
        SPLIT,
        POS,
        ((F.col(SPLIT) == 0) & all_of(matches)).alias("__header"),
        (F.trim(F.col("__line")) == "").alias("__blank"),
        F.col("r").getField("__extra").alias("__extra"),
    )
    return LocatedTable(path, "csv", rows, tuple(names))


def all_of(conditions: Sequence[Column]) -> Column:
    out = F.lit(True)
    for c in conditions:
        out = out & c
    return out

"""Read a source's table and prepare its rows for a metric pass.

Preparation is the same for validation (analysis only) and execution: join the lookup
sources' columns, add the derived columns in order, apply the source filter, and add one
string column per dimension (nulls become `(none)`, so a real null never reads as "all").
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass

from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from jobs.core.delta import DeltaSink
from jobs.metrics.definitions import NONE_VALUE, SourceDef

TableReader = Callable[[SourceDef], DataFrame]


def dim_column(name: str) -> str:
    """The internal column that holds dimension `name` inside a pass."""
    return f"__dim_{name}"


def table_reader(spark: SparkSession, sink: DeltaSink, warehouse: str) -> TableReader:
    """A function that reads a source's table (Delta, Parquet or a catalog table)."""

    def read(source: SourceDef) -> DataFrame:
        if source.format == "catalog":
            return spark.table(source.location)
        path = source_path(source, warehouse)
        if source.format == "parquet":
            return spark.read.parquet(path)
        return sink.read(path)

    return read


def estimated_rows(source: SourceDef, warehouse: str, first: str, last: str) -> int | None:
    """Rows of a Delta source between two ISO dates, from its log's file statistics (no
    Spark work); None where unknown (Parquet and catalog sources, files without stats)."""
    if source.format != "delta":
        return None
    try:
        adds = DeltaTable(source_path(source, warehouse)).get_add_actions(flatten=True)
    except Exception:  # unreadable by delta-rs here (another engine's store): unknown
        return None
    records = [None if r is None else int(r) for r in list(adds.column("num_records").to_pylist())]
    partition = f"partition.{source.date_column}"
    if source.date_column and partition in adds.schema.names:
        dates = [str(d) if d is not None else None for d in adds.column(partition).to_pylist()]
        records = [
            r for r, d in zip(records, dates, strict=True) if d is None or first <= d <= last
        ]
    known = [r for r in records if r is not None]
    return sum(known) if len(known) == len(records) else None


@dataclass(frozen=True)
class SourceDates:
    """The last date a source has rows for up to today (None: none), and its last date
    after today (None: none, as it should be: rows in the future break its contract)."""

    latest: dt.date | None
    future: dt.date | None


def source_dates(
    source: SourceDef, read: TableReader, warehouse: str, today: dt.date
) -> SourceDates:
    """The source's last date up to `today` and after it: from the Delta log's partition
    values when the source is partitioned by its date column (no data read), else from one
    Spark aggregate."""
    if source.format == "delta" and source.date_column:
        try:
            adds = DeltaTable(source_path(source, warehouse)).get_add_actions(flatten=True)
        except Exception:  # unreadable by delta-rs here: ask Spark below
            adds = None
        partition = f"partition.{source.date_column}"
        if adds is not None and partition in adds.schema.names:
            days = [
                dt.date.fromisoformat(str(day)[:10])
                for day, rows in zip(
                    adds.column(partition).to_pylist(),
                    adds.column("num_records").to_pylist(),
                    strict=True,
                )
                if day is not None and rows != 0
            ]
            return SourceDates(
                max((d for d in days if d <= today), default=None),
                max((d for d in days if d > today), default=None),
            )
    day = F.to_date(F.col(source.date_column or source.time_column))
    row = (
        read(source)
        .agg(
            F.max(F.when(day <= F.lit(today), day)).alias("latest"),
            F.max(F.when(day > F.lit(today), day)).alias("future"),
        )
        .collect()[0]
    )
    return SourceDates(row["latest"], row["future"])


def source_path(source: SourceDef, warehouse: str) -> str:
    """A path-based source's table location (relative ones are under the warehouse)."""
    if os.path.isabs(source.location):
        return source.location
    return os.path.join(warehouse, source.location)


def source_exists(source: SourceDef, warehouse: str) -> bool:
    """Whether a path-based source's table is there (catalog tables are assumed present)."""
    if source.format == "catalog":
        return True
    path = source_path(source, warehouse)
    if source.format == "delta":
        return os.path.isdir(os.path.join(path, "_delta_log")) or "://" in path
    return os.path.exists(path) or "://" in path


def with_joins(
    df: DataFrame,
    source: SourceDef,
    read: Callable[[str], DataFrame],
    narrowed: frozenset[str] = frozenset(),
) -> DataFrame:
    """`df` with each join's columns added (a lookup: one row of the right side per key).

    Where `on` is not unique on the right, the key's first row by the joined columns
    (`one_row_per_key`) is used, so the result never depends on partitioning. A lookup
    named in `narrowed` (one much larger than the rows it serves) is first cut down to the
    keys `df` has, so that only those rows are deduplicated and broadcast."""
    for join in source.joins:
        on = list(join.on)
        right = read(join.source).select(*on, *join.columns)
        if join.source in narrowed:
            right = right.join(df.select(*on).distinct(), on=on, how="left_semi")
        df = df.join(one_row_per_key(right, on, list(join.columns)), on=on, how=join.how)
    return df


def one_row_per_key(df: DataFrame, keys: list[str], columns: list[str]) -> DataFrame:
    """Per key, the row that sorts first by `columns` in their order (ascending, nulls
    last): a deterministic pick. Map columns cannot be sorted and do not take part."""
    sortable = [c for c in columns if not isinstance(df.schema[c].dataType, MapType)]
    order = [F.col(c).asc_nulls_last() for c in sortable] or [F.lit(0)]
    first = F.row_number().over(Window.partitionBy(*keys).orderBy(*order))
    return df.withColumn("__pick", first).where(F.col("__pick") == 1).drop("__pick")


NARROW_MAX_ROWS = 2_000_000  # the most rows whose keys a lookup is narrowed to
NARROW_RATIO = 4  # narrow a lookup this many times larger than the rows it serves


def lookups_to_narrow(
    source: SourceDef,
    sources: dict[str, SourceDef],
    rows: int | None,
    rows_of: Callable[[SourceDef], int | None],
) -> frozenset[str]:
    """The lookups of `source` (with `rows` rows to serve) worth narrowing to its keys (see
    `with_joins`): those known to be `NARROW_RATIO` times larger, where the source's keys
    are few enough to broadcast."""
    if rows is None or rows > NARROW_MAX_ROWS:
        return frozenset()
    larger = set()
    for join in source.joins:
        lookup_rows = rows_of(sources[join.source])
        if lookup_rows is not None and lookup_rows >= NARROW_RATIO * max(rows, 1):
            larger.add(join.source)
    return frozenset(larger)


def with_derived_columns(df: DataFrame, source: SourceDef) -> DataFrame:
    for name, expr in source.columns:
        df = df.withColumn(name, F.expr(expr))
    return df


def dimension_value(expr: str) -> Column:
    """A dimension as text, with nulls shown as `(none)`."""
    return F.coalesce(F.expr(expr).cast("string"), F.lit(NONE_VALUE))


def source_rows(
    source: SourceDef,
    sources: dict[str, SourceDef],
    read: TableReader,
    date_range: tuple[str, str] | None = None,
    narrowed: frozenset[str] = frozenset(),
    checked: bool = False,
) -> DataFrame:
    """The source's rows in `date_range` (inclusive ISO dates), joined and derived.

    The range prunes by the date column when the source has one and filters on the time
    column's date. Rows a contract checks (`checked`) keep what it must see: rows without a
    time, and rows of the partitions read whose time is outside the range; the contract's
    screen filters them (`Screen`)."""
    df = read(source)
    if date_range is not None:
        start, end = (F.lit(d).cast("date") for d in date_range)
        if source.date_column:
            df = df.where(F.col(source.date_column).between(start, end))
        in_range = F.to_date(F.col(source.time_column)).between(start, end)
        if not checked:
            df = df.where(in_range)
        elif not source.date_column:
            df = df.where(in_range | F.col(source.time_column).isNull())
    df = with_joins(df, source, lambda name: read(sources[name]), narrowed)
    return with_derived_columns(df, source)


#: A source contract's screen of a pass's rows (see `contracts.PassContract`).
Screen = Callable[[DataFrame], DataFrame]


def prepare(
    source: SourceDef,
    sources: dict[str, SourceDef],
    read: TableReader,
    date_range: tuple[str, str] | None = None,
    narrowed: frozenset[str] = frozenset(),
    screen: Screen | None = None,
) -> DataFrame:
    """The source's rows, joined, derived, screened, filtered and with dimension columns.

    `date_range` (inclusive ISO dates): see `source_rows`; `narrowed`: see `with_joins`;
    `screen`: a contract's screen of the joined and derived rows (it leaves out the rows
    outside `date_range` itself).
    """
    df = source_rows(source, sources, read, date_range, narrowed, checked=screen is not None)
    if screen is not None:
        df = screen(df)
    if source.filter:
        df = df.where(F.expr(source.filter))
    return df.select(
        "*", *[dimension_value(expr).alias(dim_column(name)) for name, expr in source.dimensions]
    )

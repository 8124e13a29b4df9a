"""Read a Delta table into Spark without the Delta extension.

The log (read with delta-rs on the driver) says which Parquet files are live and their
partition values; Spark reads the files, one scan per partition, and adds the partition
columns as typed literals. Used by the delta-rs backend; the native backend lets Spark's
Delta reader do all of this.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import reduce
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.core.delta.model import DeltaWriteError

#: Reader features that plain Parquet reads cannot honour.
UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping", "v2Checkpoint"}


def _check_readable(uri: str, table: DeltaTable) -> None:
    features = set(table.protocol().reader_features or [])
    # Reader version 2 tables enable column mapping by configuration, without features.
    if table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        features.add("columnMapping")
    blocked = sorted(features & UNSUPPORTED_READER_FEATURES)
    if blocked:
        raise DeltaWriteError(
            f"Delta table {uri} uses reader features {blocked} that need Spark's Delta "
            "extension; run with delta_backend: native on a cluster that has it"
        )


def _partition_literal(value: str | None, name: str, schema: StructType) -> Column:
    data_type = schema[name].dataType
    return F.lit(value).cast(data_type).alias(name)


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _hive_layout(
    adds: list[dict[str, Any]], partition_cols: list[str]
) -> dict[str, list[str]] | None:
    """Files grouped by the folder above their `col=value/` folders, when every file sits in
    folders that spell out exactly its partition values (the usual Hive layout); else None."""
    if not partition_cols:
        return None
    groups: dict[str, list[str]] = defaultdict(list)
    for add in adds:
        path = str(add["path"])
        parts = path.split("/")
        if len(parts) < len(partition_cols) + 1:
            return None
        segments = parts[-1 - len(partition_cols) : -1]
        for column, segment in zip(partition_cols, segments, strict=True):
            name, _, raw = segment.partition("=")
            value = add.get(f"partition.{column}")
            text = None if unquote(raw) == HIVE_NULL else unquote(unquote(raw))
            if unquote(name) != column or text != (None if value is None else str(value)):
                return None
        groups["/".join(parts[: -1 - len(partition_cols)])].append(unquote(path))
    return groups


def read_delta_files(spark: SparkSession, uri: str, version: int | None = None) -> DataFrame:
    """The table's current (or `version`'s) rows as a Spark DataFrame."""
    table = DeltaTable(uri, version=version)
    _check_readable(uri, table)
    schema = StructType.fromJson(json.loads(table.schema().to_json()))
    partition_cols = list(table.metadata().partition_columns)
    data_schema = StructType([f for f in schema.fields if f.name not in partition_cols])
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    if not adds:
        return spark.createDataFrame([], schema)

    by_base = _hive_layout(adds, partition_cols)
    if by_base is not None:
        # One scan per folder the writers used (usually one), with Spark reading the
        # partition values from the paths as the table's declared types.
        scans = [
            spark.read.schema(schema).option("basePath", f"{uri}/{base}" if base else uri)
            .parquet(*[f"{uri}/{f}" for f in files]).select(*schema.names)
            for base, files in sorted(by_base.items())
        ]  # fmt: skip
        return reduce(DataFrame.unionAll, scans)

    groups: dict[tuple[str | None, ...], list[str]] = defaultdict(list)
    for add in adds:
        key = tuple(add.get(f"partition.{c}") for c in partition_cols)
        groups[key].append(f"{uri}/{unquote(add['path'])}")

    scans = []
    for key, files in sorted(groups.items(), key=lambda kv: str(kv[0])):
        scan = spark.read.schema(data_schema).parquet(*files)
        literals = [
            _partition_literal(value, name, schema)
            for name, value in zip(partition_cols, key, strict=True)
        ]
        scans.append(scan.select(*scan.columns, *literals).select(*schema.names))
    return reduce(DataFrame.unionAll, scans)

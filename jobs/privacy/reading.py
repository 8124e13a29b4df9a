"""Published rows' metadata for the audit: from a frame of `metric_values` rows, from the
table's current version, and from the files its history still holds (rows that a later
write replaced, still readable by time travel).

Only keys, the suppressed flag, the published units and the version reach the driver:
one small row per published cell, never raw data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from functools import reduce
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.core.delta.location import filesystem, table_uri
from jobs.privacy.publication import Row

log = logging.getLogger(__name__)
#: Numbers of shown rows the audit compares across table versions.
NUMBERS = ("value", "numerator", "denominator")


def metadata_frame(
    frame: DataFrame,
    dimensions: Iterable[str],
    start: dt.date | None = None,
    end: dt.date | None = None,
    metrics: Iterable[str] | None = None,
) -> DataFrame:
    """The columns the audit reads, for rows in [start, end] of `metrics` (None: all)."""
    if start is not None:
        frame = frame.where(F.col("date") >= F.lit(start))
    if end is not None:
        frame = frame.where(F.col("date") <= F.lit(end))
    if metrics is not None:
        frame = frame.where(F.col("metric").isin(list(metrics)))
    epoch = F.lit(dt.date(1970, 1, 1))
    hours = F.floor(F.unix_timestamp(F.col("period_start")) / 3600).cast("long")
    period = F.when(F.col("grain") == "hour", hours).otherwise(
        F.datediff(F.col("date"), epoch).cast("long")
    )
    return frame.select(
        "metric",
        "grain",
        "window",
        period.alias("period"),
        "slice_set",
        *[F.col(d).cast("string").alias(d) for d in dimensions],
        "suppressed",
        F.col("units").cast("long").alias("units"),
        F.coalesce(F.col("definition_version"), F.lit("")).alias("version"),
        *[F.col(c).cast("double").alias(c) for c in NUMBERS],
    )


def collect_rows(
    frame: DataFrame, history: bool = False, table: pa.Table | None = None
) -> list[Row]:
    """The metadata frame's rows as `Row`s (one small row per cell reaches the driver;
    `table`: the frame already collected)."""
    if table is None:
        table = frame.toArrow()
    out = []
    for r in table.to_pylist():
        slice_set = r["slice_set"]
        names = () if slice_set in ("overall", "", None) else tuple(sorted(slice_set.split(",")))
        values = tuple(str(r[d]) for d in names) if names else ()
        out.append(
            Row(
                r["metric"],
                r["grain"],
                r["window"],
                int(r["period"]),
                (names, values),
                bool(r["suppressed"]),
                None if r["units"] is None else int(r["units"]),
                r["version"],
                history,
                numbers=() if r["suppressed"] else tuple(r.get(c) for c in NUMBERS),
            )
        )
    return out


def has_table(path: str) -> bool:
    return "://" in path or os.path.isdir(os.path.join(path, "_delta_log"))


def history_files(path: str) -> list[tuple[str, dict[str, str | None]]]:
    """(file URI, partition values) of each data file that some older version of the table
    holds and the current one does not, and that is still there (not vacuumed)."""
    uri = table_uri(path)
    table = DeltaTable(uri)
    current = {unquote(str(a["path"])) for a in pa.table(table.get_add_actions()).to_pylist()}
    fs, root = filesystem(uri)
    log_dir = f"{root}/_delta_log"
    added: dict[str, dict[str, str | None]] = {}
    infos = fs.get_file_info(pafs.FileSelector(log_dir))
    for info in sorted(infos, key=lambda i: i.path):
        if not info.path.endswith(".json"):
            continue
        with fs.open_input_stream(info.path) as stream:
            for line in stream.read().decode().splitlines():
                if '"add"' not in line:
                    continue
                action = json.loads(line).get("add")
                if action:
                    added[unquote(action["path"])] = action.get("partitionValues") or {}
    old = [p for p in added if p not in current]
    exists = fs.get_file_info([f"{root}/{p}" for p in old]) if old else []
    return [
        (f"{uri}/{p}", added[p])
        for p, info in zip(old, exists, strict=True)
        if info.type == pafs.FileType.File
    ]


def history_frame(spark: SparkSession, path: str) -> DataFrame | None:
    """The rows of the files in `history_files`, with their partition columns (None if
    there are none)."""
    files = history_files(path)
    if not files:
        return None
    table = DeltaTable(table_uri(path))
    schema = StructType.fromJson(json.loads(table.schema().to_json()))
    partition_cols = list(table.metadata().partition_columns)
    data_schema = StructType([f for f in schema.fields if f.name not in partition_cols])
    groups: dict[tuple[str | None, ...], list[str]] = defaultdict(list)
    for file, values in files:
        groups[tuple(values.get(c) for c in partition_cols)].append(file)
    scans = []
    for key, paths in sorted(groups.items(), key=lambda kv: str(kv[0])):
        scan = spark.read.schema(data_schema).parquet(*paths)
        literals = [
            F.lit(value).cast(schema[name].dataType).alias(name)
            for name, value in zip(partition_cols, key, strict=True)
        ]
        scans.append(scan.select(*scan.columns, *literals).select(*schema.names))
    log.info("%s: %d files of older versions still readable", path, len(files))
    return reduce(DataFrame.unionAll, scans)

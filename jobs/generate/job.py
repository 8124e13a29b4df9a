"""The `generate` job: build the synthetic dataset and write it as Delta tables.

Each table is written with one atomic overwrite, so a re-run replaces it whole and a failed
run leaves the previous data readable. The planted truth goes to `_ground_truth.json` beside
the tables, written last (and atomically), so its presence means the dataset is complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.delta import DeltaSink, WriteResult
from jobs.core.logs import stage
from jobs.generate.params import GeneratorParams
from jobs.generate.tables import TABLE_BUILDERS, build_tables, ground_truth, partition_columns

log = logging.getLogger(__name__)
GROUND_TRUTH_FILE = "_ground_truth.json"


@dataclass(frozen=True)
class GenerateSummary:
    """What `generate` wrote: table -> rows, where, and how long it took."""

    output: str
    rows: dict[str, int]
    seconds: float
    skipped: bool = False


def raw_dir(warehouse: str) -> str:
    """Where the raw synthetic tables live inside a warehouse."""
    return os.path.join(warehouse, "raw")


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary file and rename it over `path` (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def existing_truth(output: str) -> dict[str, Any] | None:
    """The ground truth of a complete dataset already at `output`, if any."""
    path = Path(output) / GROUND_TRUTH_FILE
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def generate(
    spark: SparkSession,
    sink: DeltaSink,
    params: GeneratorParams,
    output: str,
    *,
    only_if_missing: bool = False,
    tables: Collection[str] | None = None,
) -> GenerateSummary:
    """Build every table (or only `tables`, for a benchmark that reads a few) and write it
    under `output`; return what was written."""
    truth = ground_truth(params)
    if tables is not None:
        unknown = sorted(set(tables) - set(TABLE_BUILDERS))
        if unknown:
            raise ValueError(
                f"unknown tables {unknown}; the generator writes {list(TABLE_BUILDERS)}"
            )
        if only_if_missing:
            raise ValueError("only_if_missing checks the whole dataset: give no table subset")
    if only_if_missing:
        found = existing_truth(output)
        if found is not None and found.get("params") == truth.get("params"):
            log.info("dataset with these parameters already at %s; nothing to do", output)
            return GenerateSummary(output, {}, 0.0, skipped=True)
    started = time.perf_counter()
    partitions = partition_columns()
    rows: dict[str, int] = {}
    built = {
        name: df
        for name, df in build_tables(spark, params).items()
        if tables is None or name in tables
    }
    for i, (name, df) in enumerate(built.items(), start=1):
        with stage(log, f"[{i}/{len(built)}] writing raw.{name}"):
            result: WriteResult = sink.write(
                df, os.path.join(output, name), mode="overwrite", partition_by=partitions[name]
            )
            rows[name] = result.rows_added if result.rows_added is not None else -1
            if result.rows_added is not None:
                log.info("raw.%s: %s rows", name, f"{result.rows_added:,}")
    write_json_atomically(Path(output) / GROUND_TRUTH_FILE, truth)
    return GenerateSummary(output, rows, time.perf_counter() - started)

"""A digest of every published table, to show that a refactor changes no published number.

    .venv/bin/python -m tests.published_digest --warehouse W --run   # fill W, then digest
    .venv/bin/python -m tests.published_digest --warehouse W > before.txt
    ... change the code ...
    .venv/bin/python -m tests.published_digest --warehouse W2 --run > after.txt
    diff before.txt after.txt                                      # nothing: bit for bit

`--run` fills the warehouse on the default data (it reads `raw/` from `--raw`, the README's
warehouse by default): the metric catalog over two weeks, every active experiment, and
monitoring over the same two weeks. The digest reads the tables with delta-rs (no Spark):
per table its row count and a SHA-256 of its rows sorted, floats written with `repr` (every
bit), without the columns that name a run (`run_id`, `computed_at`, `written_at`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

TABLES = (
    "metrics/metric_values",
    "experiments/experiment_results",
    "experiments/experiment_units",
    "experiments/experiment_replicates",
    "monitoring/metric_anomalies",
    "monitoring/anomaly_root_causes",
)
RUN_COLUMNS = frozenset({"run_id", "computed_at", "written_at", "started_at", "finished_at"})
START, END = "2026-10-13", "2026-10-26"


def table_digest(path: Path) -> tuple[int, str]:
    """(rows, SHA-256 of the rows in a canonical order) of the Delta table at `path`."""
    from deltalake import DeltaTable

    table = DeltaTable(str(path)).to_pyarrow_table()
    table = table.select(sorted(c for c in table.column_names if c not in RUN_COLUMNS))
    keys = [(c, "ascending") for c in table.column_names if _sortable(table.schema.field(c))]
    table = table.take(pc.sort_indices(table, sort_keys=keys))
    digest = hashlib.sha256(",".join(table.column_names).encode())
    for row in table.to_pylist():
        digest.update(repr(sorted(row.items())).encode())
    return table.num_rows, digest.hexdigest()


def _sortable(field: pa.Field) -> bool:
    return not (pa.types.is_nested(field.type) or pa.types.is_map(field.type))


def fill(warehouse: Path, raw: Path) -> None:
    """Run the catalog, the experiments and monitoring into `warehouse` on `raw`'s data."""
    warehouse.mkdir(parents=True, exist_ok=True)
    if not (warehouse / "raw").exists():
        os.symlink(raw.resolve(), warehouse / "raw")
    cli = [sys.executable, "-m", "jobs.cli"]
    where = ["--warehouse", str(warehouse)]
    for args in (
        ["run", "--start", START, "--end", END],
        ["experiment"],
        ["monitor", "--start", START, "--end", END],
    ):
        subprocess.run([*cli, *args, *where], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--run", action="store_true", help="fill the warehouse first")
    parser.add_argument("--raw", type=Path, default=Path("warehouse/raw"))
    args = parser.parse_args(argv)
    if args.run:
        fill(args.warehouse, args.raw)
    for name in TABLES:
        path = args.warehouse / name
        if not (path / "_delta_log").exists():
            print(f"{name}: missing")
            continue
        rows, digest = table_digest(path)
        print(f"{name}: {rows} rows, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

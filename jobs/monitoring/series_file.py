"""Read a user's series file without Spark: CSV (pandas, every cell as text), Parquet
(pyarrow) or a Delta table (delta-rs), with what a problem's location is called."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd  # type: ignore[import-untyped]


@dataclass(frozen=True)
class SeriesFile:
    """A file's rows as read (CSV cells stay text), and how to name a row in a message:
    CSV rows are file lines (the header is line 1), Parquet and Delta rows count from 1."""

    path: str
    frame: pd.DataFrame
    is_csv: bool

    def where(self, position: int) -> str:
        """'line 7' (CSV) or 'row 6' (Parquet, Delta) for the row at `position` (0-based)."""
        return f"line {position + 2}" if self.is_csv else f"row {position + 1}"


def is_delta(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "_delta_log"))


def read_series_file(path: str) -> SeriesFile:
    """A Delta folder, a Parquet file or folder, or a CSV file with a header."""
    if is_delta(path):
        from deltalake import DeltaTable

        return SeriesFile(path, DeltaTable(path).to_pyarrow_table().to_pandas(), False)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.endswith(".csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        return SeriesFile(path, frame, True)
    if path.endswith(".parquet") or os.path.isdir(path):
        import pyarrow.parquet as pq

        return SeriesFile(path, pq.read_table(path).to_pandas(), False)
    raise FileNotFoundError(f"{path}: not a Delta table, a .parquet file or folder, or a .csv file")

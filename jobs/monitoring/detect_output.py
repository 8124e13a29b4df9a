"""Write `detect`'s scored points without Spark: one CSV file (pandas) or a Delta table
(delta-rs), the same bytes whichever path scored them."""

from __future__ import annotations

import os
import tempfile

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa

#: Arrow types of the output (OUTPUT_SCHEMA): timestamps are UTC, as Spark writes them.
OUTPUT_ARROW = pa.schema(
    [
        ("series_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("value", pa.float64()),
        ("expected", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("score", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("direction", pa.string()),
        ("severity", pa.string()),
        ("detector", pa.string()),
        ("history", pa.int32()),
        ("status", pa.string()),
    ]
)


def as_csv_text(scored: pd.DataFrame) -> pd.DataFrame:
    """The columns as written to CSV: ISO 8601 UTC times, lowercase booleans."""
    out = scored.copy()
    out["ts"] = pd.to_datetime(out["ts"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out["is_anomaly"] = out["is_anomaly"].map({True: "true", False: "false"})
    return out


def write_scored(scored: pd.DataFrame, path: str) -> None:
    """A .csv path: one CSV file (written aside, moved into place); else a Delta table
    (overwritten in one commit)."""
    if path.endswith(".csv"):
        folder = os.path.dirname(os.path.abspath(path))
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".csv", delete=False) as f:
            as_csv_text(scored).to_csv(f, index=False)
        os.replace(f.name, path)
        return
    from deltalake import write_deltalake

    frame = scored.copy()
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC")
    table = pa.Table.from_pandas(frame, schema=OUTPUT_ARROW, preserve_index=False)
    write_deltalake(path, table, mode="overwrite", schema_mode="overwrite")

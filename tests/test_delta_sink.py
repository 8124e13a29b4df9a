"""The Delta sink on both backends: delta-rs on local Spark, native through pysail.

Every table written is read back with delta-rs and compared row for row.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from jobs.core.config import load_config
from jobs.core.delta import AppTxn, ConcurrentWriteError, DeltaSink, DeltaWriteError
from jobs.core.delta.delta_rs_backend import DeltaRsBackend, _AlreadyApplied
from jobs.core.delta.location import table_uri
from jobs.core.delta.model import SchemaMismatchError, WriteRequest
from jobs.core.delta.native_backend import NativeBackend
from jobs.core.delta.sink import session_has_delta
from jobs.core.delta.table_state import replaced_files
from jobs.core.session import build_session
from tests.conftest import REPO_ROOT
from tests.delta_helpers import delta_rows, spark_rows

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)


#: This module runs twice: in the main run against the delta-rs backend on the suite's
#: local Spark, and, from `test_native_backend_through_pysail`, in a child process against
#: the native backend on an embedded pysail server. A process is either classic Spark or
#: Spark Connect (PySpark's functions pick their flavour per process), hence the child.
BACKEND = os.environ.get("SAFETY_METRICS_TEST_SINK_BACKEND", "delta-rs")
delta_rs_only = pytest.mark.skipif(BACKEND != "delta-rs", reason="delta-rs backend internals")


@pytest.fixture(scope="module")
def sail() -> Iterator[SparkSession]:
    """A Spark Connect session on an embedded pysail server, built by the session factory."""
    config = load_config("test", conf_dir=REPO_ROOT / "conf", environ={})
    session = build_session(replace(config, spark=replace(config.spark, remote="sail")))
    yield session
    session.stop()


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> DeltaSink:
    if BACKEND == "delta-rs":
        return DeltaSink(request.getfixturevalue("spark"), DeltaRsBackend())
    return DeltaSink(request.getfixturevalue("sail"), NativeBackend())


@delta_rs_only
def test_native_backend_through_pysail() -> None:
    """Every backend-generic test below, again, on the native backend through pysail."""
    env = {**os.environ, "SAFETY_METRICS_TEST_SINK_BACKEND": "native"}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ""
    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary, summary


def events(spark: SparkSession, days: list[dt.date], n: int = 30, bump: float = 0.0) -> DataFrame:
    """`n` rows per day with a few types, including nulls and a string partition value."""
    rows = [
        (day, i, f"c{i % 3}" if i % 5 else None, float(i) + bump, i % 2 == 0)
        for day in days
        for i in range(n)
    ]
    return spark.createDataFrame(
        rows, "date date, id long, country string, value double, flag boolean"
    )


def test_session_backend_detection(sink: DeltaSink) -> None:
    # Local Spark here has no Delta jars; pysail has Delta built in.
    assert session_has_delta(sink.spark) is (BACKEND == "native")
    assert DeltaSink.for_session(sink.spark).backend.name == BACKEND
    assert DeltaSink.for_session(sink.spark, "native").backend.name == "native"
    assert DeltaSink.for_session(sink.spark, "delta-rs").backend.name == "delta-rs"


def test_create_then_read_back_exactly(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    df = events(sink.spark, [D1, D2])
    result = sink.write(df, path, mode="create", partition_by=["date"])
    assert result.version == 0 and not result.skipped
    assert result.rows_added == 60
    assert delta_rows(path) == spark_rows(df)
    assert spark_rows(sink.read(path)) == spark_rows(df)
    assert DeltaTable(path).metadata().partition_columns == ["date"]
    with pytest.raises(DeltaWriteError, match="already exists"):
        sink.write(df, path, mode="create", partition_by=["date"])


def test_append_and_idempotent_app_transactions(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    first, second = events(sink.spark, [D1]), events(sink.spark, [D2])
    sink.write(first, path, mode="append", partition_by=["date"], txn=AppTxn("daily", 1))
    repeat = sink.write(first, path, mode="append", partition_by=["date"], txn=AppTxn("daily", 1))
    assert repeat.skipped
    older = sink.write(first, path, mode="append", partition_by=["date"], txn=AppTxn("daily", 0))
    assert older.skipped
    assert delta_rows(path) == spark_rows(first)
    sink.write(second, path, mode="append", partition_by=["date"], txn=AppTxn("daily", 2))
    assert delta_rows(path) == sorted(spark_rows(first) + spark_rows(second), key=repr)
    assert DeltaTable(path).transaction_version("daily") == 2
    # Another app id is independent.
    other = sink.write(first, path, mode="append", partition_by=["date"], txn=AppTxn("other", 1))
    assert not other.skipped
    assert len(delta_rows(path)) == 90


def test_replace_partition_is_atomic_and_leaves_others(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink.write(events(sink.spark, [D1, D2, D3]), path, mode="create", partition_by=["date"])
    before = DeltaTable(path).version()
    new_d2 = events(sink.spark, [D2], n=7, bump=1000.0)
    sink.write(new_d2, path, mode="replace", partition_by=["date"], replace={"date": [D2]})
    expected = spark_rows(events(sink.spark, [D1, D3])) + spark_rows(new_d2)
    assert delta_rows(path) == sorted(expected, key=repr)
    assert DeltaTable(path).version() == before + 1  # one commit: no partial state visible
    # Readers of the previous version still see the old rows.
    assert delta_rows(path, version=before) == spark_rows(events(sink.spark, [D1, D2, D3]))


def test_replace_rejects_rows_outside_replaced_partitions(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    original = events(sink.spark, [D1, D2])
    sink.write(original, path, mode="create", partition_by=["date"])
    with pytest.raises(Exception, match=r"(?i)replace|partition|predicate"):
        sink.write(
            events(sink.spark, [D2, D3]),
            path,
            mode="replace",
            partition_by=["date"],
            replace={"date": [D2]},
        )
    assert DeltaTable(path).version() == 0
    assert delta_rows(path) == spark_rows(original)


def test_overwrite_replaces_everything(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink.write(events(sink.spark, [D1, D2]), path, mode="create", partition_by=["date"])
    new = events(sink.spark, [D3], n=5)
    sink.write(new, path, mode="overwrite", partition_by=["date"])
    assert delta_rows(path) == spark_rows(new)


def test_schema_mismatch_names_table_and_column(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink.write(events(sink.spark, [D1]), path, mode="create", partition_by=["date"])
    wrong = events(sink.spark, [D2]).selectExpr("date", "id", "country", "id AS value", "flag")
    with pytest.raises(
        SchemaMismatchError, match="t: column 'value' is double in the table but long in the data"
    ):
        sink.write(wrong, path, mode="append", partition_by=["date"])
    extra = events(sink.spark, [D2]).withColumnRenamed("country", "cntry")
    with pytest.raises(SchemaMismatchError, match="column 'country' is missing from the data"):
        sink.write(extra, path, mode="append", partition_by=["date"])
    with pytest.raises(SchemaMismatchError, match="partitioned by"):
        sink.write(events(sink.spark, [D2]), path, mode="append", partition_by=[])
    assert DeltaTable(path).version() == 0


def test_failure_mid_write_leaves_previous_version(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    original = events(sink.spark, [D1, D2])
    sink.write(original, path, mode="create", partition_by=["date"])
    # Fails on executors part-way through the data, after some files may be written.
    poisoned = events(sink.spark, [D2, D3], n=200).selectExpr(
        "date",
        "id",
        "country",
        "if(date = DATE'2026-11-03' AND id = 150, raise_error('boom'), value) AS value",
        "flag",
    )
    with pytest.raises(Exception, match="boom"):
        sink.write(poisoned, path, mode="append", partition_by=["date"])
    with pytest.raises(Exception, match="boom"):
        sink.write(poisoned, path, mode="overwrite", partition_by=["date"])
    assert DeltaTable(path).version() == 0
    assert delta_rows(path) == spark_rows(original)
    leftovers = [p for p in os.listdir(path) if p.startswith("write-")]
    assert len(leftovers) <= 1  # only the committed write's folder (delta-rs backend)


def test_concurrent_writers_to_different_partitions_both_succeed(
    sink: DeltaSink, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    sink.write(events(sink.spark, [D1, D2]), path, mode="create", partition_by=["date"])
    errors: list[BaseException] = []
    new = {D1: events(sink.spark, [D1], n=4, bump=10.0), D2: events(sink.spark, [D2], n=6)}

    def replace(day: dt.date) -> None:
        try:
            sink.write(
                new[day], path, mode="replace", partition_by=["date"], replace={"date": [day]}
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replace, args=(d,)) for d in (D1, D2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert delta_rows(path) == sorted(spark_rows(new[D1]) + spark_rows(new[D2]), key=repr)


@delta_rs_only
def test_conflicting_writer_fails_cleanly_and_can_retry(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Two replaces of the same partition from the same snapshot: the second must not commit."""
    path = str(tmp_path / "t")
    backend = DeltaRsBackend()
    sink = DeltaSink(spark, backend)
    sink.write(events(spark, [D1, D2]), path, mode="create", partition_by=["date"])
    uri = table_uri(path)
    a, b = events(spark, [D2], n=3, bump=1.0), events(spark, [D2], n=5, bump=2.0)
    request = WriteRequest(path, "replace", ("date",), {"date": [D2]})
    pinned = replaced_files(DeltaTable(uri), request)  # both writers start from here
    files_a = backend.stage(a, request, uri, "write-a")
    files_b = backend.stage(b, request, uri, "write-b")
    backend.commit(a, request, uri, pinned, files_a)
    with pytest.raises(ConcurrentWriteError, match="re-run it to retry"):
        backend.commit(b, request, uri, pinned, files_b)
    backend.discard(uri, "write-b")
    assert delta_rows(path) == sorted(spark_rows(events(spark, [D1])) + spark_rows(a), key=repr)
    # The retry starts from the new snapshot and wins.
    sink.write(b, path, mode="replace", partition_by=["date"], replace={"date": [D2]})
    assert delta_rows(path) == sorted(spark_rows(events(spark, [D1])) + spark_rows(b), key=repr)


@delta_rs_only
def test_awkward_partition_values_round_trip(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink = DeltaSink(spark, DeltaRsBackend())
    values = ["plain", "with space", "a=b/c%d", "ünï", None]
    df = spark.createDataFrame([(v, i) for i, v in enumerate(values)], "k string, i long")
    sink.write(df, path, mode="create", partition_by=["k"])
    assert delta_rows(path) == spark_rows(df)
    assert spark_rows(sink.read(path)) == spark_rows(df)
    sink.write(
        df.filter("k = 'a=b/c%d'"),
        path,
        mode="replace",
        partition_by=["k"],
        replace={"k": ["a=b/c%d"]},
    )
    assert delta_rows(path) == spark_rows(df)


@delta_rs_only
def test_empty_write_creates_table_with_schema(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink = DeltaSink(spark, DeltaRsBackend())
    empty = events(spark, [D1]).limit(0)
    sink.write(empty, path, mode="create", partition_by=["date"])
    assert delta_rows(path) == []
    assert sorted(f.name for f in DeltaTable(path).schema().fields) == sorted(empty.columns)
    assert sink.read(path).count() == 0


@delta_rs_only
def test_replace_conflicts_with_a_concurrent_append_to_its_partition(
    spark: SparkSession, tmp_path: Path
) -> None:
    """An append landing between a replace's start and its commit must not survive it
    silently, nor be deleted unseen: the replace fails and can re-run."""
    path = str(tmp_path / "t")
    backend = DeltaRsBackend()
    sink = DeltaSink(spark, backend)
    sink.write(events(spark, [D1, D2]), path, mode="create", partition_by=["date"])
    uri = table_uri(path)
    request = WriteRequest(path, "replace", ("date",), {"date": [D2]})
    pinned = replaced_files(DeltaTable(uri), request)
    new = events(spark, [D2], n=3, bump=5.0)
    files = backend.stage(new, request, uri, "write-r")
    appended = events(spark, [D2], n=2, bump=9.0)
    sink.write(appended, path, mode="append", partition_by=["date"])
    with pytest.raises(ConcurrentWriteError):
        backend.commit(new, request, uri, pinned, files)
    expected = spark_rows(events(spark, [D1, D2])) + spark_rows(appended)
    assert delta_rows(path) == sorted(expected, key=repr)


@delta_rs_only
def test_app_transaction_committed_meanwhile_is_not_committed_twice(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    backend = DeltaRsBackend()
    sink = DeltaSink(spark, backend)
    sink.write(events(spark, [D1]), path, mode="create", partition_by=["date"])
    uri = table_uri(path)
    day2 = events(spark, [D2])
    txn = AppTxn("daily", 7)
    request = WriteRequest(path, "append", ("date",), txn=txn)
    files = backend.stage(day2, request, uri, "write-late")
    sink.write(day2, path, mode="append", partition_by=["date"], txn=txn)  # the other writer
    with pytest.raises(_AlreadyApplied):
        backend.commit(day2, request, uri, set(), files)
    assert delta_rows(path) == sorted(spark_rows(events(spark, [D1, D2])), key=repr)


def test_overwrite_cannot_silently_change_partitioning(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    original = events(sink.spark, [D1])
    sink.write(original, path, mode="create", partition_by=["date"])
    with pytest.raises(SchemaMismatchError, match="partitioned by"):
        sink.write(original, path, mode="overwrite", partition_by=[])
    assert delta_rows(path) == spark_rows(original)


def test_replace_keeps_the_table_schema(sink: DeltaSink, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    sink.write(events(sink.spark, [D1, D2]), path, mode="create", partition_by=["date"])
    columns = [f.name for f in DeltaTable(path).schema().fields]
    reordered = events(sink.spark, [D2], n=4).select("flag", "value", "country", "id", "date")
    sink.write(reordered, path, mode="replace", partition_by=["date"], replace={"date": [D2]})
    assert [f.name for f in DeltaTable(path).schema().fields] == columns
    expected = spark_rows(events(sink.spark, [D1])) + spark_rows(reordered)
    assert delta_rows(path) == sorted(expected, key=repr)


def test_unsafe_partition_columns_are_refused_before_any_work(
    sink: DeltaSink, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    df = events(sink.spark, [D1]).selectExpr("*", "timestamp'2026-11-01 10:00:00' AS ts")
    with pytest.raises(DeltaWriteError, match="partition column 'ts' is a timestamp"):
        sink.write(df, path, mode="create", partition_by=["ts"])
    hidden = events(sink.spark, [D1]).withColumnRenamed("country", "_country")
    with pytest.raises(DeltaWriteError, match="'_country' starts with '_'"):
        sink.write(hidden, path, mode="create", partition_by=["_country"])
    with pytest.raises(TypeError, match="timestamp partition values"):
        sink.write(
            df,
            path,
            mode="replace",
            partition_by=["date"],
            replace={"date": [dt.datetime(2026, 11, 1, 10)]},
        )
    assert not os.path.exists(path)

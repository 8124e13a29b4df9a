"""The run log: one row per job run in the Delta table `runs/job_runs`, failed runs included.

    with recorded_run(config, "metrics", argv, run_id) as run:
        run.dates = [...]; run.definitions_version = "..."
        ...                                   # every sink write and stage is noted

Each row holds the run id, job, command, dates, definitions version, rows written per table,
stage timings, duration, status and exit code (with the error for a failed run). The row is
appended when the run ends, whatever the outcome, from the driver with delta-rs: it needs no
Spark, so a run whose Spark session broke is still recorded. A driver killed outright
(SIGKILL) writes nothing; its scheduler's record shows the kill, and every table it was
writing stays at its previous version.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import shlex
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from jobs.core.config import AppConfig
from jobs.core.delta.location import table_uri
from jobs.core.delta.model import WriteResult
from jobs.core.failures import EXIT_OK, outcome_of
from jobs.core.logs import RUN_CONTEXT, STAGE_LISTENERS

log = logging.getLogger(__name__)
JOB_RUNS = "runs/job_runs"
WRITE_ATTEMPTS = 5

JOB_RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("status", pa.string()),
        ("exit_code", pa.int32()),
        ("error", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.float64()),
        ("first_date", pa.date32()),
        ("last_date", pa.date32()),
        ("dates", pa.list_(pa.date32())),
        ("definitions_version", pa.string()),
        ("rows_written", pa.map_(pa.string(), pa.int64())),
        (
            "stages",
            pa.list_(
                pa.struct([("name", pa.string()), ("seconds", pa.float64()), ("ok", pa.bool_())])
            ),
        ),
        ("command", pa.string()),
        ("env", pa.string()),
        ("master", pa.string()),
        ("delta_backend", pa.string()),
        ("host", pa.string()),
        ("user", pa.string()),
    ]
)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 8 random hex digits."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class JobRun:
    """What one run did, filled in as it goes; `row` turns it into a job_runs row."""

    run_id: str
    job: str
    command: str
    config: AppConfig
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    dates: list[dt.date] = field(default_factory=list)
    definitions_version: str | None = None
    rows_written: dict[str, int] = field(default_factory=dict)
    stages: list[tuple[str, float, bool]] = field(default_factory=list)
    #: The command's own exit status when it returns one without raising.
    exit_code: int = EXIT_OK
    #: The Delta backend that did the writes (the configured choice until one is made).
    backend: str | None = None
    #: The master the session really has (spark-submit's --master when the conf has none).
    master: str | None = None

    def note_write(self, result: WriteResult) -> None:
        """Add a sink write's rows to its table's total (tables named within the warehouse)."""
        table = _within(result.path, self.config.warehouse)
        rows = 0 if result.skipped else (result.rows_added or 0)
        self.rows_written[table] = self.rows_written.get(table, 0) + rows
        self.backend = result.backend

    def note_stage(self, name: str, seconds: float, ok: bool) -> None:
        self.stages.append((name, round(seconds, 3), ok))

    def row(self, exit_code: int, error: str | None, seconds: float) -> dict[str, object]:
        dates = sorted(set(self.dates))
        return {
            "run_id": self.run_id,
            "job": self.job,
            "status": "succeeded" if exit_code == EXIT_OK else "failed",
            "exit_code": exit_code,
            "error": error,
            "started_at": self.started_at,
            "finished_at": dt.datetime.now(dt.UTC),
            "duration_s": round(seconds, 3),
            "first_date": dates[0] if dates else None,
            "last_date": dates[-1] if dates else None,
            "dates": dates,
            "definitions_version": self.definitions_version,
            "rows_written": sorted(self.rows_written.items()),
            "stages": [{"name": n, "seconds": s, "ok": ok} for n, s, ok in self.stages],
            "command": self.command,
            "env": self.config.name,
            "master": self.master or self.config.spark.remote or self.config.spark.master,
            "delta_backend": self.backend or self.config.delta_backend,
            "host": socket.gethostname(),
            "user": getpass.getuser(),
        }


def _within(path: str, warehouse: str) -> str:
    """`path` relative to the warehouse when it lies inside it, else unchanged."""
    uri, root = table_uri(path), table_uri(warehouse)
    return uri[len(root) + 1 :] if uri.startswith(root + "/") else path


_active: list[JobRun] = []


def current_run() -> JobRun | None:
    """The run being recorded in this process, if any (library calls in tests have none)."""
    return _active[-1] if _active else None


def note(
    *,
    dates: list[dt.date] | None = None,
    definitions_version: str | None = None,
    master: str | None = None,
) -> None:
    """Record the run's dates, definitions version or master (a no-op outside a recorded
    run)."""
    run = current_run()
    if run is None:
        return
    if master:
        run.master = master
    if dates:
        run.dates.extend(dates)
    if definitions_version:
        run.definitions_version = definitions_version


@contextmanager
def recorded_run(
    config: AppConfig, job: str, argv: list[str], run_id: str | None = None
) -> Iterator[JobRun]:
    """Record the run in `job_runs` when it ends, successfully or not; re-raises."""
    from jobs.core.delta.sink import WRITE_LISTENERS

    run = JobRun(run_id or new_run_id(), job, shlex.join(["safety-metrics", *argv]), config)
    started = time.perf_counter()
    _active.append(run)
    WRITE_LISTENERS.append(run.note_write)
    STAGE_LISTENERS.append(run.note_stage)
    RUN_CONTEXT.run_id, RUN_CONTEXT.job = run.run_id, job
    log.info("run %s: %s", run.run_id, run.command)
    code, error = EXIT_OK, None
    try:
        yield run
        code = run.exit_code
    except BaseException as exc:
        outcome = outcome_of(exc)
        code, error = outcome.exit_code, outcome.message
        raise
    finally:
        _active.remove(run)
        WRITE_LISTENERS.remove(run.note_write)
        STAGE_LISTENERS.remove(run.note_stage)
        RUN_CONTEXT.run_id = RUN_CONTEXT.job = None
        append_run(config.warehouse, run.row(code, error, time.perf_counter() - started))


def append_run(warehouse: str, row: dict[str, object]) -> None:
    """Append one row to `job_runs` (created on first use); a failure here is logged, never
    raised, so it cannot mask the run's own outcome."""
    try:
        append_rows(warehouse, JOB_RUNS, [row], JOB_RUNS_SCHEMA)
        log.info("run %s recorded in %s (%s)", row["run_id"], JOB_RUNS, row["status"])
    except Exception as exc:  # a broken warehouse must not hide the job's own result
        log.error("could not record run %s in %s: %s", row["run_id"], JOB_RUNS, exc)


def append_rows(
    warehouse: str, table: str, rows: list[dict[str, object]], schema: pa.Schema
) -> None:
    """Append driver-side rows (run metadata, never data) to a small Delta table with
    delta-rs; appends never conflict, and a race to create the table is retried."""
    uri = table_uri(os.path.join(warehouse, table))
    data = pa.Table.from_pylist(rows, schema=schema)
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            write_deltalake(uri, data, mode="append")
            return
        except (CommitFailedError, DeltaError):
            if attempt == WRITE_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)

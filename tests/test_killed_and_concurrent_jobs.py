"""Jobs as a scheduler runs them, in their own processes: a driver killed in the middle of
its write leaves every table at its previous version and the re-run writes exactly once;
two jobs writing different dates of the same table at the same time both succeed, with no
lost rows.

The commit gate (`jobs.core.delta.commit_gate`) holds a write after its data files are staged
and before they are committed, so the kill lands mid-write and the two commits race.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.cli import main
from jobs.core.delta.commit_gate import GATE_VARIABLE
from jobs.core.run_log import JOB_RUNS
from jobs.metrics.job import METRIC_VALUES

pytestmark = pytest.mark.slow

LAST_DAY = dt.date(2026, 9, 28)
METRICS = "views,violative_view_rate"
KEY = ["date", "metric", "window", "slice_id", "period_start"]


@pytest.fixture
def warehouse(fresh_warehouse: str) -> str:
    return fresh_warehouse


def start_job(warehouse: str, day: dt.date, gate: Path, run_id: str) -> subprocess.Popen[bytes]:
    """`safety-metrics run` for one date in a process group of its own (driver + JVM)."""
    env = dict(os.environ, **{GATE_VARIABLE: str(gate), "SAFETY_METRICS_MASTER": "local[1]"})
    command = [
        sys.executable, "-m", "jobs.cli", "run", "--env", "test", "--warehouse", warehouse,
        "--date", str(day), "--metrics", METRICS, "--run-id", run_id,
    ]  # fmt: skip
    log = open(gate / f"{run_id}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def wait_for_staged(gate: Path, count: int, jobs: list[subprocess.Popen[bytes]]) -> list[Path]:
    """Wait until `count` writes are staged and held at the gate."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        staged = sorted(gate.glob("staged-*"))
        if len(staged) >= count:
            return staged
        exited = [job.args for job in jobs if job.poll() is not None]
        assert not exited, f"a job exited before its commit (logs in {gate}): {exited}"
        time.sleep(0.2)
    raise TimeoutError(f"{count} staged writes never reached {gate}")


def snapshot(warehouse: str, table: str) -> tuple[int, list[str]]:
    """A table's version and its live files."""
    delta = DeltaTable(os.path.join(warehouse, table))
    return delta.version(), sorted(delta.file_uris())


def test_a_job_killed_mid_write_changes_nothing_and_its_rerun_writes_once(
    warehouse: str, tmp_path: Path
) -> None:
    args = [
        "--env",
        "test",
        "--warehouse",
        warehouse,
        "--date",
        str(LAST_DAY),
        "--metrics",
        METRICS,
    ]
    assert main(["run", *args, "--run-id", "before"]) == 0
    values_before, runs_before = snapshot(warehouse, METRIC_VALUES), snapshot(warehouse, JOB_RUNS)
    rows_before = DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pandas()

    gate = tmp_path / "gate"
    gate.mkdir()
    job = start_job(warehouse, LAST_DAY, gate, "killed")
    (staged,) = wait_for_staged(gate, 1, [job])
    table_dir = Path(staged.read_text())
    assert any(table_dir.glob("write-*/date=*/metric=*/*.parquet"))  # its data is written
    os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, no chance to clean up
    assert job.wait(timeout=60) == -signal.SIGKILL

    assert snapshot(warehouse, METRIC_VALUES) == values_before
    assert snapshot(warehouse, JOB_RUNS) == runs_before  # a killed driver records nothing
    reread = DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pandas()
    assert set(reread["run_id"]) == {"before"} and len(reread) == len(rows_before)

    assert main(["run", *args, "--run-id", "rerun"]) == 0
    version, _ = snapshot(warehouse, METRIC_VALUES)
    assert version == values_before[0] + 1  # exactly one commit
    after = DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pandas()
    assert set(after["run_id"]) == {"rerun"}
    assert len(after) == len(rows_before) and not after.duplicated(KEY).any()
    compare = ["metric", "window", "slice_id", "period_start", "value", "units", "suppressed"]
    left = rows_before[compare].sort_values(compare[:4]).reset_index(drop=True)
    right = after[compare].sort_values(compare[:4]).reset_index(drop=True)
    assert left.equals(right)


def test_two_jobs_writing_different_dates_at_once_both_land_in_full(
    warehouse: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    days = [LAST_DAY - dt.timedelta(days=1), LAST_DAY]
    jobs = [start_job(warehouse, day, gate, f"job-{i}") for i, day in enumerate(days)]
    try:
        wait_for_staged(gate, 2, jobs)  # both staged against a table that does not exist yet
        (gate / "open").touch()  # now both commit at once
        codes = [job.wait(timeout=300) for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    assert codes == [0, 0], [(gate / f"job-{i}.log").read_text()[-3000:] for i in range(2)]

    values = DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pandas()
    runs = DeltaTable(os.path.join(warehouse, JOB_RUNS)).to_pandas()
    assert sorted(runs["run_id"]) == ["job-0", "job-1"] and set(runs["status"]) == {"succeeded"}
    written = {r["run_id"]: dict(r["rows_written"])[METRIC_VALUES] for _, r in runs.iterrows()}
    for i, day in enumerate(days):
        on_day = values[values["date"] == day]
        assert set(on_day["run_id"]) == {f"job-{i}"}
        assert len(on_day) == written[f"job-{i}"] > 0  # every row each job wrote is there
    assert not values.duplicated(KEY).any()
    assert sorted(set(values["date"])) == days

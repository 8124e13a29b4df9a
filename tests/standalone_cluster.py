"""A real Spark standalone cluster on the loopback interface, from the pip `pyspark`.

    with StandaloneCluster(workers=2, cores=1, work_dir=tmp) as cluster:
        done = cluster.submit(package, "daily_metrics", ["--warehouse", wh]).wait()

One master and `workers` worker JVMs (`spark-class org.apache.spark.deploy.master.Master`
and `...deploy.worker.Worker spark://127.0.0.1:PORT`), each in its own process group, all
stopped on exit, also when the block fails. Jobs go in with `spark-submit` in client mode,
their executors run this interpreter (`spark.pyspark.python`), so they import the same
NumPy and pandas. Used by the cluster test and the scaling benchmark.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def loopback_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every cluster process: loopback only, UTC, this interpreter."""
    env = dict(os.environ)
    env.update(
        {
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_MASTER_HOST": "127.0.0.1",
            "TZ": "UTC",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
    )
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Submitted:
    """A finished spark-submit: exit status, seconds, and where its output went."""

    returncode: int
    seconds: float
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class StandaloneCluster:
    """A master and workers started on entry and stopped on exit."""

    def __init__(
        self, work_dir: Path, workers: int = 2, cores: int = 1, memory: str = "1g"
    ) -> None:
        self.work_dir = work_dir
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.port = free_port()
        self.ui_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def __enter__(self) -> StandaloneCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> None:
        out = open(self.work_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open with the process
        self.processes.append(
            subprocess.Popen(
                [str(BIN / "spark-class"), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=loopback_env({"SPARK_WORKER_DIR": str(self.work_dir / "work")}),
                start_new_session=True,  # its own process group: stop() kills the JVM tree
            )
        )

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--webui-port", str(self.ui_port),
            ],
        )  # fmt: skip
        self._wait(lambda state: state.get("status") == "ALIVE", "the master")
        for i in range(self.workers):
            self._spawn(
                f"worker-{i + 1}",
                [
                    "org.apache.spark.deploy.worker.Worker", self.url,
                    "--host", "127.0.0.1",
                    "--cores", str(self.cores),
                    "--memory", self.memory,
                    "--webui-port", str(free_port()),
                    "--work-dir", str(self.work_dir / "work"),
                ],
            )  # fmt: skip
        self._wait(
            lambda state: (
                sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) == self.workers
            ),
            f"{self.workers} workers",
        )

    def state(self) -> dict[str, object]:
        """The master's JSON status page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as page:
            state: dict[str, object] = json.load(page)
            return state

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a cluster process exited early; see {self.work_dir}")
            try:
                if ready(self.state()):  # type: ignore[operator]
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"{what} did not come up in {START_TIMEOUT_S:.0f} s; see {self.work_dir}"
        )

    def stop(self) -> None:
        """Stop workers, then the master: SIGTERM to each process group, then SIGKILL."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def submit(
        self,
        package: Path,
        entry_point: str,
        args: list[str],
        *,
        log_name: str | None = None,
        cores: int | None = None,
        executor_memory: str = "768m",
        env: dict[str, str] | None = None,
    ) -> Running:
        """spark-submit `package`'s entry point to this cluster (client mode), in the
        background; `cores` caps the application's executor cores (default: all the
        cluster has, as Spark's standalone scheduler gives them)."""
        log = self.work_dir / f"{log_name or entry_point}.log"
        limit = ["--conf", f"spark.cores.max={cores}"] if cores else []
        command = [
            str(BIN / "spark-submit"),
            "--master", self.url,
            "--driver-memory", "1g",
            "--executor-memory", executor_memory,
            *limit,
            "--conf", f"spark.pyspark.python={sys.executable}",
            "--py-files", str(package / "safety_metrics.zip"),
            str(package / "entrypoints" / f"{entry_point}.py"),
            *args,
        ]  # fmt: skip
        out = open(log, "wb")  # noqa: SIM115 - closed by Running.wait
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=loopback_env(env), cwd=self.work_dir
        )
        return Running(process, out, log, time.perf_counter())


@dataclass
class Running:
    """A spark-submit in progress."""

    process: subprocess.Popen[bytes]
    out: IO[bytes]
    log: Path
    started: float

    def wait(self, timeout_s: float = 900) -> Submitted:
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self.out.close()
        return Submitted(self.process.returncode, time.perf_counter() - self.started, self.log)

"""Shared fixtures: one SparkSession for the whole run, built by the project's own factory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import load_config
from jobs.core.session import build_session

REPO_ROOT = Path(__file__).resolve().parent.parent

# Spark hands timestamps to Python in the process's local zone; pin it so that rows compare
# equal to delta-rs's UTC values on any machine.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The suite's single local Spark session (conf/test.yaml: local[2], no UI)."""
    config = load_config("test", conf_dir=REPO_ROOT / "conf", environ={})
    session = build_session(config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def generated_warehouse(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A warehouse holding a small generated dataset under raw/ (28 days from 2026-09-01)."""
    from jobs.core.delta import DeltaSink
    from jobs.generate.job import generate, raw_dir
    from jobs.generate.params import GeneratorParams

    warehouse = str(tmp_path_factory.mktemp("generated-warehouse"))
    sink = DeltaSink.for_session(spark, "delta-rs")
    generate(spark, sink, GeneratorParams(scale=0.01, days=28), raw_dir(warehouse))
    return warehouse


def linked_warehouse(generated_warehouse: str, root: Path) -> str:
    """A new, empty warehouse at `root` that reads the generated raw tables (a symlink)."""
    root.mkdir()
    os.symlink(os.path.join(generated_warehouse, "raw"), root / "raw")
    return str(root)


@pytest.fixture
def fresh_warehouse(generated_warehouse: str, tmp_path: Path) -> str:
    """An empty warehouse for one test over the generated raw tables."""
    return linked_warehouse(generated_warehouse, tmp_path / "wh")

"""Shared fixtures: one SparkSession for the whole run, built by the project's own factory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.config import load_config
from jobs.session import build_session

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
def spark_session(spark: SparkSession) -> SparkSession:
    """pytest-spark's fixture name, served by the same shared session."""
    return spark

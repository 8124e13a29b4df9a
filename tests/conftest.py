"""Shared fixtures: one SparkSession for the whole run, built by the project's own factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.config import load_config
from jobs.session import build_session

REPO_ROOT = Path(__file__).resolve().parent.parent


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

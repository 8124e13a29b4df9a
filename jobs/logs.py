"""Logging set-up and timed stages: every job says what it is doing and how long it took."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send the project's logs to stderr with timestamps; keep py4j and Spark quiet."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    for noisy in ("py4j", "pyspark", "urllib3", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def quiet_spark_errors() -> Iterator[None]:
    """Silence Spark's log of analysis errors for a block whose errors are expected and
    reported by the caller (probes, expression checks)."""
    quiet = logging.getLogger("SQLQueryContextLogger")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


@contextmanager
def stage(log: logging.Logger, what: str) -> Iterator[None]:
    """Log the start and the end of a stage with its duration (also when it fails)."""
    log.info("%s ...", what)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        log.error("%s failed after %.1fs", what, time.perf_counter() - started)
        raise
    log.info("%s done in %.1fs", what, time.perf_counter() - started)

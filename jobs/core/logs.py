"""Logging set-up and timed stages: every job says what it is doing and how long it took.

Two formats: `text` for people, `json` (one object per line, with `stage` and `seconds` on
the end of each stage and the `run_id`) for log collectors under a scheduler.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: Called with (stage, seconds, ok) when a stage ends; the run log collects them.
STAGE_LISTENERS: list[Callable[[str, float, bool], None]] = []
#: Fields a JSON log line carries when a record has them (`extra=` or the run filter).
_JSON_EXTRAS = ("run_id", "job", "stage", "seconds", "event")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO), level, logger, message and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _JSON_EXTRAS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RunContext(logging.Filter):
    """Stamps every record with the current run id and job (for the JSON format)."""

    run_id: str | None = None
    job: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.run_id and not hasattr(record, "run_id"):
            record.run_id = self.run_id
            record.job = self.job
        return True


RUN_CONTEXT = RunContext()


def configure_logging(level: str = "INFO", fmt: LogFormat = "text") -> None:
    """Send the project's logs to stderr (text with timestamps, or JSON lines); keep py4j
    and Spark quiet."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        handler.addFilter(RUN_CONTEXT)
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
    log.info("%s ...", what, extra={"stage": what, "event": "stage_start"})
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        _ended(log, what, time.perf_counter() - started, ok=False)
        raise
    _ended(log, what, time.perf_counter() - started, ok=True)


def _ended(log: logging.Logger, what: str, seconds: float, *, ok: bool) -> None:
    """Log a stage's end with its duration, and tell the listeners."""
    event = "stage_done" if ok else "stage_failed"
    extra = {"stage": what, "seconds": round(seconds, 3), "event": event}
    if ok:
        log.info("%s done in %.1fs", what, seconds, extra=extra)
    else:
        log.error("%s failed after %.1fs", what, seconds, extra=extra)
    for listener in list(STAGE_LISTENERS):
        listener(what, seconds, ok)

"""How a job ends: exit statuses a scheduler can act on, and the errors behind them.

| status | meaning | what a scheduler should do |
|---:|---|---|
| 0 | every step succeeded | nothing |
| 1 | the job failed (a Spark error, a lost write race, a bug) | alert; re-running is safe |
| 2 | bad arguments, configuration or definitions | fix the input; do not retry |
| 3 | a publish gate stopped the write (data quality) | look at the report first |
| 75 | the date's data has not landed yet (EX_TEMPFAIL) | retry later |
| 130, 143 | interrupted (Ctrl-C, SIGTERM) | re-run |

Whatever the status, a failed job leaves every table at its previous version.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from types import FrameType

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_NOT_READY = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UsageError(ValueError):
    """A command line that cannot run as given (the message says what to change)."""


class PublishRefused(RuntimeError):
    """A check refused to publish (a gate, a source contract, privacy); nothing was written.
    Capabilities raise their own subclasses; the exit status is `EXIT_GATE`."""


class JobInterrupted(BaseException):
    """The process was asked to stop (SIGTERM): unwinds like KeyboardInterrupt, so staged
    files are discarded and the run is recorded as failed."""


@dataclass(frozen=True)
class Outcome:
    """What an exception means for the run: its exit status, a one-line message and
    whether the traceback is worth logging (not for bad input or data not ready)."""

    exit_code: int
    message: str
    traceback: bool


def outcome_of(exc: BaseException) -> Outcome:
    """The exit status and message for a job that raised `exc`."""
    from jobs.core.located_yaml import InputError
    from jobs.core.run_dates import DataNotReadyError

    if isinstance(exc, InputError | UsageError):
        return Outcome(EXIT_USAGE, str(exc), False)
    if isinstance(exc, PublishRefused):
        return Outcome(EXIT_GATE, str(exc), False)
    if isinstance(exc, DataNotReadyError):
        return Outcome(EXIT_NOT_READY, f"data not ready: {exc}", False)
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(EXIT_SIGINT, "interrupted", False)
    if isinstance(exc, JobInterrupted):
        return Outcome(EXIT_SIGTERM, "stopped by SIGTERM", False)
    if isinstance(exc, FileNotFoundError):
        return Outcome(EXIT_FAILED, f"error: {exc}", False)
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return Outcome(EXIT_FAILED, f"error: {type(exc).__name__}: {first_line}", True)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise JobInterrupted()


def raise_on_sigterm() -> None:
    """Turn SIGTERM (what schedulers send on timeout or cancel) into `JobInterrupted`."""
    signal.signal(signal.SIGTERM, _stop)

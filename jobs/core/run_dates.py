"""Which dates a job computes: `--date` values and the check that their data has landed.

Scheduled jobs run without `--date` and compute yesterday (UTC). `--date latest` means the
latest date every source has data for (what a laptop run over a fixed dataset wants). A
date whose data has not landed yet fails with `DataNotReadyError` (exit status 75, "try
again later") instead of publishing zeros.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Literal

DateKeyword = Literal["yesterday", "latest"]
DateSpec = dt.date | DateKeyword
DATE_KEYWORDS: tuple[DateKeyword, ...] = ("yesterday", "latest")


class DataNotReadyError(RuntimeError):
    """A requested date is past the data a source holds: the job should be retried later."""


def run_date(text: str) -> DateSpec:
    """argparse type: YYYY-MM-DD, `yesterday` (UTC) or `latest`."""
    if text in DATE_KEYWORDS:
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date as YYYY-MM-DD, 'yesterday' or 'latest', got {text!r}"
        ) from None


def yesterday_utc(now: dt.datetime | None = None) -> dt.date:
    """The calendar day before `now` (default: the current time) in UTC."""
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.date() - dt.timedelta(days=1)


def today_utc(now: dt.datetime | None = None) -> dt.date:
    """The calendar day of `now` (default: the current time) in UTC."""
    return yesterday_utc(now) + dt.timedelta(days=1)


def resolve_date(
    spec: DateSpec, latest: Callable[[], dt.date], now: dt.datetime | None = None
) -> dt.date:
    """A concrete date: `yesterday` in UTC, `latest` from the data (called only then)."""
    if spec == "yesterday":
        return yesterday_utc(now)
    if spec == "latest":
        return latest()
    assert isinstance(spec, dt.date)
    return spec


def check_landed(day: dt.date, latest_by_source: dict[str, dt.date | None]) -> None:
    """Raise `DataNotReadyError` when some source has no data up to `day`."""
    behind = {name: last for name, last in latest_by_source.items() if last is None or last < day}
    if not behind:
        return
    listing = ", ".join(
        f"{name} (latest {last})" if last else f"{name} (empty)"
        for name, last in sorted(behind.items())
    )
    raise DataNotReadyError(
        f"no data for {day} yet in {listing}; retry once it has landed, or pass --date "
        "YYYY-MM-DD (or --date latest for the latest date every source has)"
    )

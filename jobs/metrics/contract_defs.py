"""Source contracts as typed values: what a source's rows must satisfy, and what to do when
they do not.

A source's `contract:` (parsed by `load_contracts`) declares checks; every source also has
the implicit checks on its unit and time columns. Each check has a policy:
- `fail`: the run stops before anything is written (exit status 3, like the publish gates);
- `quarantine`: the rows that break it are left out of every metric, and counted;
- `warn`: the rows are kept, counted and reported.
The checks run inside each source's metric pass (`contracts`), on the rows the pass reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal, get_args

from jobs.core.located_yaml import Location

Policy = Literal["fail", "quarantine", "warn"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
CheckKind = Literal[
    "unique",
    "not_null",
    "range",
    "allowed",
    "null_unit",
    "null_time",
    "time_outside_partition",
    "future_time",
]
#: A bound of a range check, or an allowed value, as YAML gives it.
Scalar = bool | int | float | str | dt.date | dt.datetime

#: Default policies. A duplicate of a declared key and a time in the future are errors in
#: the feed; a row without a unit is counted in totals (not as a unit), so it is reported;
#: a row without a time, or whose time is not in its date partition, cannot be dated
#: consistently, so it is left out and counted (see docs/metric-definitions.md).
DEFAULT_POLICIES: dict[CheckKind, Policy] = {
    "unique": "fail",
    "not_null": "fail",
    "range": "fail",
    "allowed": "fail",
    "null_unit": "warn",
    "null_time": "quarantine",
    "time_outside_partition": "quarantine",
    "future_time": "fail",
}
DEFAULT_FUTURE_TOLERANCE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Check:
    """One rule over a source's rows, with its policy."""

    kind: CheckKind
    columns: tuple[str, ...]
    policy: Policy
    minimum: Scalar | None = None  # range: inclusive bounds (None: unbounded)
    maximum: Scalar | None = None
    values: tuple[Scalar, ...] = ()  # allowed
    tolerance: dt.timedelta = dt.timedelta(0)  # future_time
    #: Declared in the YAML (False: one of the implicit unit and time checks).
    declared: bool = True
    where: Location | None = field(default=None, compare=False)

    @property
    def column(self) -> str:
        return ", ".join(self.columns)

    @property
    def per_row(self) -> bool:
        """Whether the check is decided row by row (all but `unique`)."""
        return self.kind != "unique"

    def rule(self) -> str:
        """The rule in words, for reports."""
        if self.kind == "unique":
            return f"unique ({self.column})"
        if self.kind in ("not_null", "null_unit", "null_time"):
            return "not null"
        if self.kind == "range":
            low = f">= {self.minimum}" if self.minimum is not None else ""
            high = f"<= {self.maximum}" if self.maximum is not None else ""
            return " and ".join(b for b in (low, high) if b)
        if self.kind == "allowed":
            return "in {" + ", ".join(str(v) for v in self.values) + "}"
        if self.kind == "time_outside_partition":
            return f"to_date({self.columns[0]}) = {self.columns[1]}"
        return f"<= run start + {_duration(self.tolerance)}"

    def describe(self) -> str:
        return f"{self.kind} {self.column}: {self.rule()}"


@dataclass(frozen=True)
class Contract:
    """A source's declared checks and the policies of its implicit ones."""

    checks: tuple[Check, ...] = ()
    null_unit: Policy = DEFAULT_POLICIES["null_unit"]
    null_time: Policy = DEFAULT_POLICIES["null_time"]
    time_outside_partition: Policy = DEFAULT_POLICIES["time_outside_partition"]
    future_time: Policy = DEFAULT_POLICIES["future_time"]
    future_tolerance: dt.timedelta = DEFAULT_FUTURE_TOLERANCE
    where: Location | None = field(default=None, compare=False)

    @property
    def unique(self) -> Check | None:
        return next((c for c in self.checks if c.kind == "unique"), None)

    def all_checks(self, unit: str, time_column: str, date_column: str | None) -> list[Check]:
        """Every check of a source: the implicit ones on its unit and time, then the
        declared ones. The partition check needs a date column."""
        implicit = [
            Check("null_unit", (unit,), self.null_unit, declared=False),
            Check("null_time", (time_column,), self.null_time, declared=False),
        ]
        if date_column:
            implicit.append(
                Check(
                    "time_outside_partition",
                    (time_column, date_column),
                    self.time_outside_partition,
                    declared=False,
                )
            )
        implicit.append(
            Check(
                "future_time",
                (time_column,),
                self.future_time,
                tolerance=self.future_tolerance,
                declared=False,
            )
        )
        return [*implicit, *self.checks]

    def version_payload(self, unit: str, time_column: str, date_column: str | None) -> list[str]:
        """The checks that change published numbers (those that quarantine rows), for a
        metric's definition version."""
        return [
            c.describe()
            for c in self.all_checks(unit, time_column, date_column)
            if c.policy == "quarantine"
        ]


def _duration(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

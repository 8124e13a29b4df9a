"""What a run's source contract checks found: results, the error that stops a run, and the
Delta table `metrics/source_checks` the team reads in BI.

One `CheckResult` per (source, check) of a run, violations or not. They are logged, shown
in the run summary, and appended to `source_checks` once the run's outcome is known: after
the `metric_values` commit (`published` true, the same `run_id` as the metric rows), or
when a contract or a publish gate stopped the run (`published` false; nothing was written
to `metric_values`). A run that fails otherwise (a Spark error, a kill) records no checks;
its `job_runs` row says why.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from jobs.metrics.contract_defs import Check
from jobs.metrics.gate_result import GateResult, PublishGateError

log = logging.getLogger(__name__)
SOURCE_CHECKS = "metrics/source_checks"

SOURCE_CHECKS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("checked_at", pa.timestamp("us", tz="UTC")),
        ("first_date", pa.date32()),  # the run's output dates
        ("last_date", pa.date32()),
        ("read_from", pa.date32()),  # the source's dates the pass read (lookback included)
        ("read_to", pa.date32()),
        ("source", pa.string()),
        ("check", pa.string()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("policy", pa.string()),
        ("rows_checked", pa.int64()),
        ("violations", pa.int64()),  # rows; for `unique`, rows beyond the first per key
        ("keys", pa.int64()),  # `unique`: keys with more than one row (else null)
        ("example_keys", pa.list_(pa.string())),
        ("action", pa.string()),
        ("rows_removed", pa.int64()),
        ("published", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class CheckResult:
    """One check of one source in one run."""

    source: str
    check: Check
    rows_checked: int
    violations: int
    examples: tuple[str, ...] = ()
    keys: int | None = None  # unique: keys with more than one row
    read_from: dt.date | None = None
    read_to: dt.date | None = None

    @property
    def violated(self) -> bool:
        return self.violations > 0

    @property
    def stops_run(self) -> bool:
        return self.violated and self.check.policy == "fail"

    @property
    def rows_removed(self) -> int:
        return self.violations if self.check.policy == "quarantine" else 0

    @property
    def action(self) -> str:
        if not self.violated:
            return "none"
        return {"fail": "run stopped", "quarantine": "rows left out", "warn": "rows kept"}[
            self.check.policy
        ]

    def __str__(self) -> str:
        head = f"{self.source}.{self.check.column} {self.check.kind} ({self.check.rule()})"
        if not self.violated:
            return f"{head}: ok over {self.rows_checked:,} rows"
        what = (
            f"{self.violations:,} duplicate rows over {self.keys or 0:,} keys"
            if self.check.kind == "unique"
            else f"{self.violations:,} of {self.rows_checked:,} rows"
        )
        examples = f"; e.g. {'; '.join(self.examples)}" if self.examples else ""
        return f"{head}: {what} [{self.check.policy}: {self.action}]{examples}"

    def as_gate(self) -> GateResult:
        """The result as a publish-gate line (a failing contract is reported like a gate)."""
        return GateResult(
            f"source contract: {self.source}.{self.check.column} {self.check.kind}",
            not self.stops_run,
            str(self).split(": ", 1)[1],
            self.examples,
        )


class ContractError(PublishGateError):
    """A check with policy `fail` found violations: the run stops before anything is
    written (exit status 3, like a failed publish gate)."""

    def __init__(self, checks: Sequence[CheckResult]) -> None:
        self.checks = tuple(checks)
        failed = [c for c in self.checks if c.stops_run]
        self.results = tuple(c.as_gate() for c in failed)
        lines = "\n".join(f"  {c}" for c in self.checks if c.violated)
        RuntimeError.__init__(
            self,
            f"{len(failed)} source contract check(s) with policy 'fail' found violations; "
            f"nothing was written:\n{lines}",
        )


def summary_lines(checks: Sequence[CheckResult]) -> list[str]:
    """The run summary's lines about the source checks."""
    if not checks:
        return []
    violated = [c for c in checks if c.violated]
    removed = sum(c.rows_removed for c in checks)
    sources = len({c.source for c in checks})
    line = (
        f"  source checks: {len(checks) - len(violated)}/{len(checks)} passed over "
        f"{sources} source{'s' if sources != 1 else ''}"
    )
    if removed:
        line += f", {removed:,} violating rows left out (quarantine)"
    return [line, *[f"    {c}" for c in violated]]


def chunk_lines(checks: Sequence[CheckResult]) -> list[str]:
    """The source checks of a run in several chunks (commits): violations summed per
    (source, check)."""
    if not checks:
        return []
    totals: dict[tuple[str, str], list[int]] = {}
    for c in checks:
        total = totals.setdefault((c.source, c.check.describe()), [0, 0])
        total[0] += c.violations
        total[1] += c.rows_checked
    violated = {k: v for k, v in totals.items() if v[0]}
    lines = [f"  source checks: {len(totals) - len(violated)}/{len(totals)} passed in every chunk"]
    lines += [
        f"    {source} {what}: {n:,} violations over {rows:,} rows checked"
        for (source, what), (n, rows) in sorted(violated.items())
    ]
    return lines


def log_results(checks: Iterable[CheckResult]) -> None:
    """One line per source, and one warning per check that found violations."""
    by_source: dict[str, list[CheckResult]] = {}
    for check in checks:
        by_source.setdefault(check.source, []).append(check)
    for source, found in by_source.items():
        passed = sum(not c.violated for c in found)
        rows = max(c.rows_checked for c in found)
        log.info(
            "%s: %d/%d contract checks passed over %s rows", source, passed, len(found), f"{rows:,}"
        )
        for check in found:
            if check.violated:
                log.warning("source check %s", check)


def table_rows(
    checks: Iterable[CheckResult],
    run_id: str,
    dates: Sequence[dt.date],
    published: bool,
    now: dt.datetime | None = None,
) -> list[dict[str, object]]:
    """The `source_checks` rows of a run."""
    at = now or dt.datetime.now(dt.UTC)
    return [
        {
            "run_id": run_id,
            "checked_at": at,
            "first_date": min(dates),
            "last_date": max(dates),
            "read_from": c.read_from,
            "read_to": c.read_to,
            "source": c.source,
            "check": c.check.kind,
            "column": c.check.column,
            "rule": c.check.rule(),
            "policy": c.check.policy,
            "rows_checked": c.rows_checked,
            "violations": c.violations,
            "keys": c.keys,
            "example_keys": list(c.examples),
            "action": c.action,
            "rows_removed": c.rows_removed,
            "published": published,
        }
        for c in checks
    ]


def record_checks(
    warehouse: str,
    checks: Sequence[CheckResult],
    run_id: str,
    dates: Sequence[dt.date],
    published: bool,
) -> None:
    """Append a run's checks to `source_checks` (small driver-side rows, with delta-rs)."""
    from jobs.core.run_log import append_rows

    if not checks:
        return
    rows = table_rows(checks, run_id, dates, published)
    append_rows(warehouse, SOURCE_CHECKS, rows, SOURCE_CHECKS_SCHEMA)
    log.info("%d source checks recorded in %s (run %s)", len(rows), SOURCE_CHECKS, run_id)

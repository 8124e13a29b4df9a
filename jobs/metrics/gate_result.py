"""What a publish gate reports, and the error that stops a write when one fails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobs.core.failures import PublishRefused


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        lines = [f"[{mark}] {self.name}: {self.detail}"]
        lines.extend(f"       e.g. {e}" for e in self.examples)
        return "\n".join(lines)


class PublishGateError(PublishRefused):
    """A gate failed; nothing was written."""

    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results = tuple(results)
        failed = [r for r in results if not r.passed]
        report = "\n".join(str(r) for r in results)
        super().__init__(f"{len(failed)} publish gate(s) failed; nothing was written:\n{report}")

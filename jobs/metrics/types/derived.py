"""`type: derived`: an expression over other metrics' values in the same cell (e.g. a
product of two rates); its inputs are computed first, and it has no interval."""

from __future__ import annotations

import re
from typing import Any

from jobs.core.located_yaml import did_you_mean
from jobs.metrics.spec_problems import IDENTIFIER
from jobs.metrics.types.protocol import BuildContext, Built, Traits

#: Division by anything but a number literal, e.g. `a / b` or `a / (b + c)`.
UNSAFE_DIVISION = re.compile(r"/\s*[^\s0-9.]")


class Derived:
    name: str = "derived"
    required: tuple[str, ...] = ("expression",)
    allowed: tuple[str, ...] = ("expression",)
    takes_source: bool = False
    traits: Traits = Traits(finish="derived", root_cause="other", series_kind="gauge")

    def build(self, ctx: BuildContext) -> Built:
        expression = ctx.body.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            return Built()
        names = IDENTIFIER.findall(expression)
        depends = tuple(dict.fromkeys(t for t in names if t in ctx.raw.metrics))
        if not depends:
            ctx.add(
                "expression",
                "E033",
                "a derived expression must refer to other metrics by name",
                did_you_mean(names[0], ctx.raw.metrics) if names else None,
            )
        if UNSAFE_DIVISION.search(expression):
            ctx.add(
                "expression",
                "E037",
                "a derived expression divides by a value that can be 0, which fails the "
                "whole run (Spark's ANSI mode)",
                "use try_divide(a, b), which gives null for a zero divisor",
            )
        return Built(expression=expression, depends_on=depends)

    def version_extra(self) -> dict[str, Any]:
        return {}

"""`type: distinct_count`: the exact number of distinct values of an expression per cell
(exact for every window and slice: values are counted per cell, never summed)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import AggKind, Part
from jobs.metrics.types.protocol import BuildContext, Built, Traits

DISTINCT_TRAITS = Traits(
    finish="total", root_cause="other", series_kind="count", counts=True, value_expect="any"
)


def distinct_of(ctx: BuildContext, agg: AggKind) -> Built:
    """A count of the distinct values of the metric's `value` (exactly, or by `agg`'s sketch)."""
    if ctx.source is None or ctx.value is None:
        return Built()
    return Built(numerator=Part(ctx.source, agg, ctx.value, ctx.filter))


class DistinctCount:
    name: str = "distinct_count"
    required: tuple[str, ...] = ("source", "value")
    allowed: tuple[str, ...] = ("value",)
    takes_source: bool = True
    traits: Traits = DISTINCT_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        return distinct_of(ctx, "distinct_count")

    def version_extra(self) -> dict[str, Any]:
        return {}

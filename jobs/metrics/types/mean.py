"""`type: mean`: the mean of a per-row value over the rows where it is not null, as the
ratio of two exact sums (the values, the rows with a value), with a delta-method interval
clustered by unit."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import Part
from jobs.metrics.types.protocol import BuildContext, Built, Traits, conjoined

MEAN_TRAITS = Traits(
    finish="ratio", root_cause="ratio", series_kind="mean", experiments=True, ratio_interval=True
)


def mean_of(ctx: BuildContext, value: str, raw: str | None = None) -> Built:
    """The sum of `value` over the count of the rows where it is not null (where `raw`, the
    expression `value` is computed from, is not null: the same rows, and the same
    statistic as a mean of `raw` with the same filter, so suppression aligns them)."""
    if ctx.source is None:
        return Built()
    present = conjoined(ctx.filter, f"({raw or value}) IS NOT NULL")
    return Built(
        numerator=Part(ctx.source, "sum", value, ctx.filter),
        denominator=Part(ctx.source, "count", None, present),
    )


class Mean:
    name: str = "mean"
    required: tuple[str, ...] = ("source", "value")
    allowed: tuple[str, ...] = ("value",)
    takes_source: bool = True
    traits: Traits = MEAN_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        return Built() if ctx.value is None else mean_of(ctx, ctx.value)

    def version_extra(self) -> dict[str, Any]:
        return {}

"""`type: ratio`: numerator / denominator, each an aggregate of a source (the metric's or
its own), x `per` (default 1). A filtered count over the unfiltered count of the same source
is a proportion (a Wilson interval applies where rows are independent)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.types.protocol import BuildContext, Built, Traits
from jobs.metrics.types.yaml_parts import read_part

RATIO_TRAITS = Traits(
    finish="ratio",
    root_cause="ratio",
    series_kind=None,
    experiments=True,
    ratio_interval=True,
    default_unit="ratio",
)


def ratio_of_parts(ctx: BuildContext) -> Built:
    """The numerator and denominator parts, and whether they make a proportion."""
    numerator = read_part(ctx, "numerator")
    denominator = read_part(ctx, "denominator")
    raw_num: dict[str, Any] = ctx.body.get("numerator") or {}
    raw_den: dict[str, Any] = ctx.body.get("denominator") or {}
    proportion = (
        numerator is not None
        and denominator is not None
        and numerator.agg == denominator.agg == "count"
        and numerator.source == denominator.source
        and raw_num.get("filter") is not None
        and raw_den.get("filter") is None
    )
    return Built(numerator=numerator, denominator=denominator, proportion=proportion)


class Ratio:
    name: str = "ratio"
    required: tuple[str, ...] = ("numerator", "denominator")
    allowed: tuple[str, ...] = ("numerator", "denominator", "per")
    takes_source: bool = True
    traits: Traits = RATIO_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        return ratio_of_parts(ctx)

    def version_extra(self) -> dict[str, Any]:
        return {}

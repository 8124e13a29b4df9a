"""`type: rate`: a ratio that must say its scale: numerator / denominator x `per` (e.g.
reports per 1,000 views)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.metrics.types.protocol import BuildContext, Built, Traits
from jobs.metrics.types.ratio import RATIO_TRAITS, ratio_of_parts


class Rate:
    name: str = "rate"
    required: tuple[str, ...] = ("numerator", "denominator", "per")
    allowed: tuple[str, ...] = ("numerator", "denominator", "per")
    takes_source: bool = True
    traits: Traits = replace(RATIO_TRAITS, default_unit="count")

    def build(self, ctx: BuildContext) -> Built:
        return ratio_of_parts(ctx)

    def version_extra(self) -> dict[str, Any]:
        return {}

"""`type: approx_distinct_count`: distinct values estimated with a HyperLogLog sketch per
cell (mergeable across windows and slices; the sketch's parameters are part of the
definition version, so a change of sketch is a restatement)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import HLL_LG_K, Part
from jobs.metrics.types.distinct_count import DISTINCT_TRAITS
from jobs.metrics.types.protocol import BuildContext, Built, Traits


class ApproxDistinctCount:
    name: str = "approx_distinct_count"
    required: tuple[str, ...] = ("source", "value")
    allowed: tuple[str, ...] = ("value",)
    takes_source: bool = True
    traits: Traits = DISTINCT_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        if ctx.source is None or ctx.value is None:
            return Built()
        return Built(numerator=Part(ctx.source, "approx_distinct_count", ctx.value, ctx.filter))

    def version_extra(self) -> dict[str, Any]:
        return {"sketch": f"datasketches hll lg_k={HLL_LG_K}"}

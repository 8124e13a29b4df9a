"""`type: approx_distinct_count`: distinct values estimated with a HyperLogLog sketch per
cell (mergeable across windows and slices; the sketch's parameters are part of the
definition version, so a change of sketch is a restatement)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import HLL_LG_K
from jobs.metrics.types.distinct_count import DISTINCT_TRAITS, distinct_of
from jobs.metrics.types.protocol import BuildContext, Built, Traits


class ApproxDistinctCount:
    name: str = "approx_distinct_count"
    required: tuple[str, ...] = ("source", "value")
    allowed: tuple[str, ...] = ("value",)
    takes_source: bool = True
    traits: Traits = DISTINCT_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        return distinct_of(ctx, "approx_distinct_count")

    def version_extra(self) -> dict[str, Any]:
        return {"sketch": f"datasketches hll lg_k={HLL_LG_K}"}

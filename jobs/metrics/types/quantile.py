"""`type: quantile`: the exact `quantile` (in (0, 1)) of a per-row value per cell, from
each value's frequency (no sampling, no sketch)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import QuantilePart
from jobs.metrics.types.protocol import BuildContext, Built, Traits


class Quantile:
    name: str = "quantile"
    required: tuple[str, ...] = ("source", "value", "quantile")
    allowed: tuple[str, ...] = ("value", "quantile")
    takes_source: bool = True
    traits: Traits = Traits(
        finish="quantile", root_cause="other", series_kind="latency", experiments=True
    )

    def build(self, ctx: BuildContext) -> Built:
        if ctx.source is None or ctx.value is None:
            return Built()
        part = QuantilePart(ctx.source, ctx.value, ctx.filter)
        q = ctx.body.get("quantile")
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
            ctx.add("quantile", "E004", f"quantile must be a number in (0, 1), e.g. 0.9; got {q!r}")
            return Built(quantile_part=part)
        return Built(quantile_part=part, quantile=float(q))

    def version_extra(self) -> dict[str, Any]:
        return {}

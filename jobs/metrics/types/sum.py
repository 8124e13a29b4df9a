"""`type: sum`: the exact sum of a per-row value (rounded once per row to `decimals`)."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import Part
from jobs.metrics.types.protocol import BuildContext, Built, Traits


class Sum:
    name: str = "sum"
    required: tuple[str, ...] = ("source", "value")
    allowed: tuple[str, ...] = ("value",)
    takes_source: bool = True
    traits: Traits = Traits(
        finish="total", root_cause="additive", series_kind="gauge", experiments=True
    )

    def build(self, ctx: BuildContext) -> Built:
        if ctx.source is None or ctx.value is None:
            return Built()
        return Built(numerator=Part(ctx.source, "sum", ctx.value, ctx.filter))

    def version_extra(self) -> dict[str, Any]:
        return {}

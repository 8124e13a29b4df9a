"""`type: count`: the number of rows (events) of a source, per cell."""

from __future__ import annotations

from typing import Any

from jobs.metrics.definitions import Part
from jobs.metrics.types.protocol import BuildContext, Built, Traits


class Count:
    name: str = "count"
    required: tuple[str, ...] = ("source",)
    allowed: tuple[str, ...] = ()
    takes_source: bool = True
    traits: Traits = Traits(
        finish="total", root_cause="additive", series_kind="count", counts=True, experiments=True
    )

    def build(self, ctx: BuildContext) -> Built:
        if ctx.source is None:
            return Built()
        return Built(numerator=Part(ctx.source, "count", None, ctx.filter))

    def version_extra(self) -> dict[str, Any]:
        return {}

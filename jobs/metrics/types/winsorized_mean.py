"""`type: winsorized_mean`: a mean with each row's value capped, so that a few extreme rows
(a video watched for a day, an action taken after a year) cannot move it.

    - name: watch_seconds_winsorized
      type: winsorized_mean
      source: views
      value: watch_seconds
      cap: 3600                 # values above are counted as 3600
      # or: cap: {min: 0, max: 3600}

Each row's value becomes min(max(value, min), max) (a null stays null and is not counted);
the metric is then a mean of the capped values: two exact sums (capped values, rows with a
value), a delta-method interval clustered by unit, monitored as a mean, split as a ratio by
root cause, and usable in experiments. Caps are fixed numbers in the definition (part of the
definition version): a cap at a percentile of the previous period is not built yet.
"""

from __future__ import annotations

from typing import Any

from jobs.metrics.types.mean import MEAN_TRAITS, mean_of
from jobs.metrics.types.protocol import BuildContext, Built, Traits

CAP_KEYS = ("min", "max")


def _bound(ctx: BuildContext, key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        ctx.add("cap", "E004", f"cap {key} must be a number, got {value!r}")
        return None
    return float(value)


def read_cap(ctx: BuildContext) -> tuple[float | None, float | None] | None:
    """(min, max) of `cap:` (a number is the max), or None with a located problem."""
    raw = ctx.body.get("cap")
    if isinstance(raw, dict):
        unknown = [k for k in raw if k not in CAP_KEYS]
        if unknown or not raw:
            ctx.add("cap", "E004", f"cap takes min and/or max, got {sorted(map(str, raw))}")
            return None
        low = _bound(ctx, "min", raw["min"]) if "min" in raw else None
        high = _bound(ctx, "max", raw["max"]) if "max" in raw else None
        if ("min" in raw and low is None) or ("max" in raw and high is None):
            return None
    else:
        low, high = None, _bound(ctx, "max", raw)
        if high is None:
            return None
    if low is not None and high is not None and low > high:
        ctx.add("cap", "E004", f"cap min {low:g} is above cap max {high:g}")
        return None
    return low, high


def capped(value: str, low: float | None, high: float | None) -> str:
    """SQL: `value` held inside [low, high], null where it is null (Spark's LEAST and
    GREATEST skip nulls, so they are not used on a null)."""
    expr = f"({value})"
    if high is not None:
        expr = f"CASE WHEN {expr} > {high!r} THEN {high!r} ELSE {expr} END"
    if low is not None:
        expr = f"CASE WHEN ({expr}) < {low!r} THEN {low!r} ELSE {expr} END"
    return expr


class WinsorizedMean:
    name: str = "winsorized_mean"
    required: tuple[str, ...] = ("source", "value", "cap")
    allowed: tuple[str, ...] = ("value", "cap")
    takes_source: bool = True
    traits: Traits = MEAN_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        cap = read_cap(ctx) if "cap" in ctx.body else None
        if ctx.value is None or cap is None:
            return Built()
        return mean_of(ctx, capped(ctx.value, *cap), raw=ctx.value)

    def version_extra(self) -> dict[str, Any]:
        return {}

"""`type: winsorized_mean`: a mean with each row's value capped, so that a few extreme rows
(a video watched for a day, an action taken after a year) cannot move it.

    - name: watch_seconds_winsorized
      type: winsorized_mean
      source: views
      value: watch_seconds
      cap: 3600                 # values above are counted as 3600
      # or: cap: {min: 0, max: 3600}
      # or: cap: {percentile: 0.99}   the previous day's 99th percentile

Each row's value becomes min(max(value, min), max) (a null stays null and is not counted);
the metric is then a mean of the capped values: two exact sums (capped values, rows with a
value), a delta-method interval clustered by unit, monitored as a mean, split as a ratio by
root cause. Fixed caps are numbers in the definition (part of its version); such a metric
can be compared in experiments. A percentile cap holds each row's value at the exact
percentile of the metric's values (with its filter) on the day before the row's day
(`PreviousDayCap`, computed before the pass; no cap where that day has no values): rolling
windows stay sums of days, and a backfill gives the numbers daily runs give.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from jobs.metrics.definitions import PreviousDayCap
from jobs.metrics.types.mean import MEAN_TRAITS, mean_of
from jobs.metrics.types.protocol import BuildContext, Built, Traits

CAP_KEYS = ("min", "max")
#: A fixed cap (min, max), or the percentile of the previous day.
Cap = tuple[float | None, float | None] | float


def _bound(ctx: BuildContext, key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        ctx.add("cap", "E004", f"cap {key} must be a finite number, got {value!r}")
        return None
    return float(value)


def read_cap(ctx: BuildContext) -> Cap | None:
    """(min, max) of `cap:` (a number is the max), or the previous day's percentile (a
    float), or None with a located problem."""
    raw = ctx.body.get("cap")
    if raw is None:
        return None  # reported as missing (E031)
    if isinstance(raw, dict) and "percentile" in raw:
        q = raw["percentile"]
        if len(raw) > 1:
            ctx.add("cap", "E004", "cap: {percentile: P} goes alone (no min or max with it)")
            return None
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
            ctx.add("cap", "E004", f"cap percentile must be a number in (0, 1), got {q!r}")
            return None
        return float(q)
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


def capped(value: str, low: float | str | None, high: float | str | None) -> str:
    """SQL: `value` held inside [low, high] (numbers, or columns that may be null: no
    bound), null where it is null (Spark's LEAST and GREATEST skip nulls, so they are not
    used on a null)."""
    expr = f"({value})"
    if high is not None:
        bound = f"`{high}`" if isinstance(high, str) else repr(high)
        expr = f"CASE WHEN {expr} > {bound} THEN {bound} ELSE {expr} END"
    if low is not None:
        bound = f"`{low}`" if isinstance(low, str) else repr(low)
        expr = f"CASE WHEN ({expr}) < {bound} THEN {bound} ELSE {expr} END"
    return expr


class WinsorizedMean:
    name: str = "winsorized_mean"
    required: tuple[str, ...] = ("source", "value", "cap")
    allowed: tuple[str, ...] = ("value", "cap")
    takes_source: bool = True
    traits: Traits = MEAN_TRAITS

    def build(self, ctx: BuildContext) -> Built:
        cap = read_cap(ctx) if "cap" in ctx.body else None
        if ctx.value is None or cap is None or ctx.source is None:
            return Built()
        if isinstance(cap, float):
            previous = PreviousDayCap(ctx.source, ctx.value, ctx.filter, cap)
            built = mean_of(ctx, capped(ctx.value, None, previous.column), raw=ctx.value)
            return replace(built, caps=(previous,))
        return mean_of(ctx, capped(ctx.value, *cap), raw=ctx.value)

    def version_extra(self) -> dict[str, Any]:
        return {}

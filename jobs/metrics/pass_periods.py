"""Output periods and windows of a pass, and the expansion of each row into the cells
(period x window x slice set) it counts in (Spark's Expand, written out).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.pass_columns import UNIT_KIND, kinds
from jobs.metrics.planner import PassPlan, window_days
from jobs.metrics.sources import dim_column


def output_periods(
    df: DataFrame,
    plan: PassPlan,
    time_column: str,
    start: dt.date,
    end: dt.date,
    windows: tuple[str, ...] | None = None,
) -> DataFrame:
    """One row per (row, window, output period) the row counts towards, for the plan's
    `windows` (default: all); periods are timestamps (midnight for daily windows), so both
    grains share one column.

    A row on day d counts towards the periods d .. d+W-1 of a W-day window, and towards its
    hour for the hourly window: a fixed array of (window, day offset) pairs, exploded and
    then filtered to the output dates (no higher-order functions, which Spark does not
    compile)."""
    windows = plan.windows if windows is None else windows
    time = F.col(time_column)
    day = F.to_date(time)
    first, last = F.lit(start), F.lit(end)
    if windows in (("1d",), ("1h",)):  # one period per row: no explosion
        w = windows[0]
        period = F.date_trunc("hour" if w == "1h" else "day", time)
        return df.where(day.between(first, last)).select(
            "*", _window_id(plan, w).alias("__w"), period.alias("__t")
        )
    reach = F.array(
        *[
            F.struct(_window_id(plan, w).alias("__w"), F.lit(offset).alias("__o"))
            for w in windows
            for offset in range(window_days(w))
        ]
    )
    exploded = df.select("*", F.inline(reach))
    hourly = is_window(plan, "1h") if "1h" in windows else F.lit(False)
    period = F.when(hourly, F.date_trunc("hour", time)).otherwise(
        F.date_add(day, F.col("__o")).cast("timestamp")
    )
    # The period's date is the row's day plus its offset (0 for the hourly window): a test
    # on dates, so that the period itself is computed once, for the rows kept.
    kept = exploded.where(F.date_add(day, F.col("__o")).between(first, last))
    return kept.select("*", period.alias("__t")).drop("__o")


def windows_reading(plan: PassPlan, kind_ids: set[int]) -> tuple[str, ...]:
    """The plan's windows in which some grouping set reads one of `kind_ids`: a branch
    that reads a kind in fewer windows than the pass has expands its rows into just those."""
    needed = need_keys(plan)
    return tuple(w for w in plan.windows if any(n[0] == w and n[2] in kind_ids for n in needed))


def _window_id(plan: PassPlan, window: str) -> Column:
    """A window inside a pass (`__w`): its index in the plan's windows, a narrow key."""
    return F.lit(plan.windows.index(window))


def is_window(plan: PassPlan, window: str) -> Column:
    return F.col("__w") == _window_id(plan, window)


EntryMaker = Callable[[int, int, list[Column]], Column]


def expand(df: DataFrame, plan: PassPlan, kind_ids: list[int], entry: EntryMaker) -> DataFrame:
    """One row per (grouping set, kind) among `kind_ids` that the row's window needs, built
    by `entry(set index, kind, dimension columns)`; dimensions outside the set are null."""
    needed = need_keys(plan)
    per_window = None
    for w in plan.windows:
        chosen = []
        for s_index, slice_set in enumerate(plan.slice_sets):
            dims = [dimension(d, slice_set) for d in plan.dimensions]
            chosen += [entry(s_index, k, dims) for k in kind_ids if (w, s_index, k) in needed]
        if chosen:
            # One fixed array per window, picked by the row's window (no per-entry test).
            array = F.array(*chosen)
            per_window = (
                F.when(is_window(plan, w), array)
                if per_window is None
                else per_window.when(is_window(plan, w), array)
            )
    assert per_window is not None, "a pass expands into at least one entry"
    return df.select("*", F.explode(per_window).alias("__e"))


def dimension(name: str, slice_set: tuple[str, ...]) -> Column:
    """Dimension `name` of an expanded row of `slice_set`: null where the set lacks it."""
    column = F.col(dim_column(name))
    return (column if name in slice_set else typed_null(column)).alias(name)


def typed_null(column: Column) -> Column:
    """A null of the column's type (dimensions are hashes, or text in a pass run again)."""
    return F.when(F.lit(False), column)


def need_keys(plan: PassPlan) -> set[tuple[str, int, int]]:
    """(window, grouping set index, kind id) for every combination the plan needs."""
    kind_of = {"units": UNIT_KIND, **kinds(plan)}
    index = {s: i for i, s in enumerate(plan.slice_sets)}
    return {(w, index[s], kind_of[k]) for w, s, k in plan.needs}

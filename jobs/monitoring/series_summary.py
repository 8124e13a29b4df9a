"""A status for every series `detect` was given, so that none is silently left unjudged.

judged: at least one point was judged (status ok); constant: every observed value is the
same; warming_up: fewer observed points than the detector needs (`needs` more); too_sparse:
enough points, but too spread out for a baseline; low_volume: every judgeable point is below
--min-volume; rejected: not scored (`reason`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

STATUS_ORDER = ("judged", "warming_up", "too_sparse", "constant", "low_volume", "rejected")
WARMING_UP = ("warming_up",)
#: Series named per status in the printed summary.
NAMED_PER_STATUS = 5


@dataclass(frozen=True)
class SeriesStatus:
    series_id: str
    status: str
    detail: str = ""


def status_of_series(points: pd.DataFrame, warmup: int) -> SeriesStatus:
    """The status of one scored series (its output rows)."""
    series_id = str(points["series_id"].iloc[0])
    status = points["status"].to_numpy()
    values = points["value"].to_numpy(dtype=np.float64)
    observed = values[np.isfinite(values)]
    if observed.size >= 2 and np.all(observed == observed[0]):
        return SeriesStatus(series_id, "constant", f"every value is {observed[0]:g}")
    if (status == "ok").any():
        return SeriesStatus(series_id, "judged")
    if (status == "constant").any():
        return SeriesStatus(series_id, "constant")
    if (status == "low_volume").any():
        return SeriesStatus(series_id, "low_volume", "every judgeable point is under --min-volume")
    needs = warmup + 1 - observed.size  # `warmup` points before the first judged one
    if needs > 0 and not (status == "too_sparse").any():
        return SeriesStatus(series_id, "warming_up", f"{observed.size} points, needs {needs} more")
    return SeriesStatus(
        series_id,
        "too_sparse",
        f"{observed.size} points over {points['ts'].min()}..{points['ts'].max()}: too few "
        "close enough together",
    )


def series_statuses(scored: pd.DataFrame, warmups: dict[str, int]) -> list[SeriesStatus]:
    """The status of every series in `scored` (OUTPUT_COLUMNS); `warmups` by series id."""
    return [
        status_of_series(points, warmups[str(series_id)])
        for series_id, points in scored.groupby("series_id", sort=True)
    ]


def render_summary(statuses: list[SeriesStatus]) -> str:
    """The counts by status, with a few series of each status that is not judged."""
    counts = Counter(s.status for s in statuses)
    lines = [
        f"series: {len(statuses):,} in all, "
        + ", ".join(f"{counts[k]:,} {k.replace('_', ' ')}" for k in STATUS_ORDER if counts[k])
    ]
    for status in STATUS_ORDER[1:]:
        label = status.replace("_", " ")
        named = [s for s in statuses if s.status == status]
        for s in named[:NAMED_PER_STATUS]:
            lines.append(f"  {label}: {s.series_id}" + (f" ({s.detail})" if s.detail else ""))
        if len(named) > NAMED_PER_STATUS:
            lines.append(f"  {label}: ... and {len(named) - NAMED_PER_STATUS:,} more")
    return "\n".join(lines)


def nothing_judged_reason(statuses: list[SeriesStatus]) -> str | None:
    """None when a series was judged; else why none was."""
    counts = Counter(s.status for s in statuses)
    if counts["judged"]:
        return None
    if not statuses:
        return "the input has no series"
    parts = ", ".join(f"{counts[k]:,} {k.replace('_', ' ')}" for k in STATUS_ORDER if counts[k])
    return f"no series could be judged ({parts})"

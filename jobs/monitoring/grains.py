"""A series' grain, read off the spacing of its timestamps.

The grain names are the detector's (`udfs.detector_settings.Grain`). A series' grain is the
largest grain that divides its most common spacing; every timestamp must lie on the grid of
that grain through most of them (larger spacings are missing points), else the series mixes
grains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
from numpy.typing import NDArray

from udfs.detector_settings import GRAIN_SECONDS as GRAIN_SECONDS  # the detector's grains
from udfs.detector_settings import Grain

GrainName = Grain

GRAIN_NAMES: tuple[GrainName, ...] = get_args(GrainName)


@dataclass(frozen=True)
class GrainCheck:
    """A series' grain (None: fewer than two timestamps, or no grain fits) and the positions
    (into the sorted timestamps) of the points off its grid (mixed grains)."""

    grain: GrainName | None
    off_grain: tuple[int, ...] = ()
    reason: str | None = None


def grain_dividing(seconds: int) -> GrainName | None:
    """The largest grain that divides a spacing of `seconds` (None: not even a minute)."""
    fits = [g for g, s in GRAIN_SECONDS.items() if seconds % s == 0]
    return fits[-1] if fits else None


def describe_seconds(seconds: int) -> str:
    """A spacing in words: '5 minutes', '2 hours', '90 seconds'."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def check_grain(seconds: NDArray[np.int64], forced: GrainName | None = None) -> GrainCheck:
    """The grain of a series from its distinct timestamps (sorted, in seconds), and the
    timestamps off its grid; `forced` (the --grain flag) skips the detection, not the check."""
    spacing = np.diff(seconds)
    if spacing.size == 0:
        return GrainCheck(forced, reason="a single timestamp")
    grain = forced
    if grain is None:
        values, counts = np.unique(spacing, return_counts=True)
        common = int(values[np.argmax(counts)])  # ties: the smaller spacing
        grain = grain_dividing(common)
        if grain is None:
            return GrainCheck(
                None,
                tuple(int(i) + 1 for i in np.flatnonzero(spacing == common)),
                f"its usual spacing, {describe_seconds(common)}, is no whole number of minutes",
            )
    return GrainCheck(grain, tuple(int(i) for i in off_grid(seconds, GRAIN_SECONDS[grain])))


def off_grid(seconds: NDArray[np.int64], step: int) -> NDArray[np.int64]:
    """Positions of the timestamps off the series' grid of `step` seconds (the grid goes
    through most of its timestamps)."""
    phase = seconds % step
    values, counts = np.unique(phase, return_counts=True)
    return np.flatnonzero(phase != values[np.argmax(counts)]).astype(np.int64)


def parse_grain(text: str) -> GrainName | None:
    """The --grain flag: 'auto' is None."""
    if text == "auto":
        return None
    if text not in GRAIN_SECONDS:
        raise ValueError(f"grain must be auto or one of {', '.join(GRAIN_NAMES)}, not {text!r}")
    return text

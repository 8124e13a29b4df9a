"""Decisions over many comparisons: multiplicity-adjusted p-values and levels, intervals that
agree with the verdicts at the stated level, and the verdict of a comparison.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Correction = Literal["bh", "bonferroni", "none"]


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """Multiple-testing adjusted p-values (Benjamini-Hochberg step-up, or Bonferroni)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(p * m, 1.0)]
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(v) for v in adjusted]


def adjusted_level(p_adjusted: Sequence[float], alpha: float, method: Correction) -> float:
    """The level a of intervals that agree with `p_adjusted < alpha` over one family of m
    comparisons: alpha without correction; alpha / m for Bonferroni; for BH, R alpha / m
    with R the number of rejections (Benjamini & Yekutieli's FCR-adjusted intervals;
    alpha / m when nothing is rejected). A comparison is significant exactly when its raw
    p-value is below a, i.e. when its interval at confidence 1 - a excludes 0."""
    m = len(p_adjusted)
    if method == "none" or m == 0:
        return alpha
    if method == "bonferroni":
        return alpha / m
    rejected = sum(1 for p in p_adjusted if p < alpha)
    return max(rejected, 1) * alpha / m


def agreeing(lower: float, upper: float, lift: float, significant: bool) -> tuple[float, float]:
    """(lower, upper) made to agree with the verdict where they disagree, which the
    constructions above rule out except by rounding at an exact tie (p-value equal to the
    level): the end nearest 0 moves to 0 (not significant) or just past it (significant).
    Unbounded or missing intervals are left alone."""
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return lower, upper
    excludes = lower > 0 or upper < 0
    if excludes == significant:
        return lower, upper
    moved = (0.0, upper) if lower > 0 else (lower, 0.0)
    if significant:
        if lift > 0:
            moved = (math.nextafter(0.0, 1.0), upper)
        elif lift < 0:
            moved = (lower, math.nextafter(0.0, -1.0))
        else:
            return lower, upper
    shift = max(abs(moved[0] - lower), abs(moved[1] - upper))
    if shift > 1e-9 * max(upper - lower, 1e-300):
        log.warning(
            "interval [%g, %g] disagreed with the verdict (significant=%s) by more than "
            "rounding; moved to [%g, %g]",
            lower,
            upper,
            significant,
            *moved,
        )
    return moved


Verdict = Literal["improvement", "harm", "changed", "no significant change"]


def verdict(significant: bool, lift: float, good_direction: str) -> Verdict:
    """What a significant lift means, given the metric's good direction (up, down, none)."""
    if not significant:
        return "no significant change"
    if good_direction not in ("up", "down"):
        return "changed"
    return "improvement" if (lift > 0) == (good_direction == "up") else "harm"

"""Variances from exact sums: the one implementation of moments and the delta method.

Spark adds up per-unit totals exactly (whole numbers: counts, or values scaled by 10^d and
rounded once per row, see `jobs/metrics/passes.py`), so a cell's sums are the same integers
whatever the partitioning. This module turns those integers into variances in rational
arithmetic: no cancellation however large the values' level (1e8 + N(0, 1) keeps its unit
variance), and the one rounding is the final conversion to a float.

Pure Python (no Spark): the driver uses it for experiments, executors for the catalog's
intervals (`udfs/interval_udfs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

#: A sum of squares or products of per-unit totals arrives as two whole numbers h and l,
#: worth h 2^LIMB_BITS + l (see `from_limbs` and `jobs.metrics.exact_sums.combined`).
LIMB_BITS = 48
Integral = int | Decimal
N = TypeVar("N", Fraction, float)


def whole(value: Integral | None) -> int:
    """An exact sum from Spark (int, Decimal with no fraction, or None for 0) as an int."""
    if value is None:
        return 0
    number = int(value)
    if number != value:
        raise ValueError(f"an exact sum must be a whole number, got {value!r}")
    return number


def from_limbs(high: Integral | None, low: Integral | None) -> int:
    """high 2^LIMB_BITS + low: a sum of products of per-unit totals, which Spark hands over
    as two DECIMAL(38,0) numbers so that neither overflows (the weights 2^0 to 2^32 of its
    16-bit limb sums in `low`, the higher ones in `high`)."""
    return (whole(high) << LIMB_BITS) + whole(low)


@dataclass(frozen=True)
class ScaledSums:
    """Exact sums over the n units of a cell, of per-unit totals y_u and x_u held as whole
    numbers in units of 10^-decimals: Y = sum y_u, X = sum x_u, YY = sum y_u^2,
    XX = sum x_u^2, XY = sum y_u x_u."""

    n: int
    y: int
    x: int
    yy: int
    xx: int
    xy: int
    y_decimals: int = 0
    x_decimals: int = 0

    def totals(self) -> tuple[Fraction, Fraction]:
        return Fraction(self.y, 10**self.y_decimals), Fraction(self.x, 10**self.x_decimals)


def centered(
    sum_a: Fraction | int, sum_b: Fraction | int, cross: Fraction | int, n: int
) -> Fraction:
    """sum (a_u - mean a)(b_u - mean b) over n units, from sum a, sum b and sum a b."""
    if n <= 0:
        return Fraction(0)
    return Fraction(cross) - Fraction(sum_a) * Fraction(sum_b) / n


def delta_ratio_variance(n: int, y: N, x: N, cyy: N, cxy: N, cxx: N) -> N:
    """The delta method for R = Y / X over n clusters, from the centered sums of squares
    and products of the per-cluster totals (cyy = sum (y_u - mean y)^2, ...):
    n / (n - 1) * (cyy - 2 R cxy + R^2 cxx) / X^2, which is n / (n - 1) sum_u (y_u - R x_u)^2
    / X^2 since sum_u (y_u - R x_u) = 0. The same expression for the catalog (exact
    Fractions) and the experiments (floats from exact centered sums); needs n >= 2, X != 0."""
    r = y / x
    return (cyy - 2 * r * cxy + r * r * cxx) * n / ((n - 1) * x * x)


def ratio_variance(s: ScaledSums) -> Fraction | None:
    """Delta-method variance of R = Y / X over units that are clusters of rows, exact
    (None without two units or with X = 0)."""
    y, x = s.totals()
    if s.n < 2 or x == 0:
        return None
    scale_y, scale_x = 10**s.y_decimals, 10**s.x_decimals
    yy = Fraction(s.yy, scale_y * scale_y)
    xy = Fraction(s.xy, scale_y * scale_x)
    xx = Fraction(s.xx, scale_x * scale_x)
    return delta_ratio_variance(
        s.n, y, x, centered(y, y, yy, s.n), centered(y, x, xy, s.n), centered(x, x, xx, s.n)
    )


def ratio_variance_float(s: ScaledSums) -> float | None:
    """`ratio_variance` as the correctly rounded double, in integer arithmetic (no
    fractions to reduce): n / (n - 1) * D 10^(2 dx) / (10^(2 dy) X^4), where
    D = X^2 YY - 2 X Y XY + Y^2 XX = sum_u (X y_u - Y x_u)^2 over the units."""
    if s.n < 2 or s.x == 0:
        return None
    d = s.x * s.x * s.yy - 2 * s.x * s.y * s.xy + s.y * s.y * s.xx
    scale_x, scale_y = 10**s.x_decimals, 10**s.y_decimals
    return float((s.n * d * scale_x * scale_x) / ((s.n - 1) * scale_y * scale_y * s.x**4))


def total_variance(total: Fraction, squares: Fraction, n: int) -> Fraction | None:
    """Variance of a sum of n units' totals: n / (n - 1) * sum_u (t_u - mean t)^2."""
    if n < 2:
        return None
    return Fraction(n, n - 1) * centered(total, total, squares, n)


def independent_ratio_variance(
    y: Fraction, x: Fraction, y_squares: Fraction, x_squares: Fraction | None, n: int
) -> Fraction | None:
    """Variance of R = Y / X where Y and X are independent totals over the same n units
    (a unit absent from one side counts there as zero): (Var Y + R^2 Var X) / X^2, written
    so that it stays defined when Y = 0. None where X has no squares (not additive)."""
    if x == 0 or n < 2 or x_squares is None:
        return None
    r = y / x
    var_y = total_variance(y, y_squares, n) or Fraction(0)
    var_x = total_variance(x, x_squares, n) or Fraction(0)
    return (var_y + r * r * var_x) / (x * x)

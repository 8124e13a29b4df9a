"""Interval half-widths of the catalog's cells, computed on executors from exact sums.

Each function returns a pandas UDF over one struct column of a cell's exact sums (see
`jobs/metrics/assemble.py`); the variance comes from `udfs.exact_moments` in rational
arithmetic, the half-width is t(n - 1) * sqrt(variance). Same inputs, same bits: the
result does not depend on where or in what order the cells are processed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import cast

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from pyspark.sql import Column
from pyspark.sql.pandas.functions import pandas_udf
from scipy.stats import t as student_t

from udfs.exact_moments import (
    ScaledSums,
    from_limbs,
    independent_ratio_variance,
    ratio_variance_float,
    whole,
)

#: The struct fields each UDF reads (every sum a whole DECIMAL(38,0), n a long).
RATIO_FIELDS = ("n", "y", "x", "yy_h", "yy_l", "xx_h", "xx_l", "xy_h", "xy_l")
TOTALS_FIELDS = ("n", "y", "x", "yy_h", "yy_l", "xx_h", "xx_l")


def t_quantile(level: float, df: int) -> float:
    """The two-sided t quantile for `level` with `df` degrees of freedom."""
    return float(student_t.ppf(1 - (1 - level) / 2, df))


def half_widths(variances: list[float | None], n: list[int], level: float) -> pd.Series:
    """t(n - 1) * sqrt(variance) per cell (null where the variance is undefined or n < 2),
    the t quantiles of a whole batch at once."""
    var = np.array([np.nan if v is None else v for v in variances], dtype="float64")
    units = np.array(n, dtype="float64")
    valid = ~np.isnan(var) & (units >= 2)
    out = np.full(len(var), np.nan)
    if valid.any():
        t = student_t.ppf(1 - (1 - level) / 2, units[valid] - 1)
        out[valid] = t * np.sqrt(var[valid])
    return pd.Series(pd.array(out, dtype="Float64")).mask(~valid)


def half_width(variance: Fraction | None, n: int, level: float) -> float | None:
    """t(n - 1) * sqrt(variance), or None where the variance is undefined."""
    if variance is None or n < 2:
        return None
    return t_quantile(level, n - 1) * math.sqrt(float(variance))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(value: object) -> int:
    """A whole number from an Arrow batch (int, float of a whole long, or Decimal)."""
    return 0 if _missing(value) else whole(value)  # type: ignore[arg-type]


def _limbs(high: object, low: object) -> int | None:
    """A limb-split sum, or None where both limbs are missing (no squares were summed)."""
    if _missing(high) and _missing(low):
        return None
    return from_limbs(_int(high), _int(low))


def _ratio_row(row: tuple[object, ...], y_decimals: int, x_decimals: int) -> float | None:
    n, y, x, yy_h, yy_l, xx_h, xx_l, xy_h, xy_l = row
    if _missing(n) or _missing(y) or _missing(x):
        return None
    sums = ScaledSums(
        n=_int(n),
        y=_int(y),
        x=_int(x),
        yy=_limbs(yy_h, yy_l) or 0,
        xx=_limbs(xx_h, xx_l) or 0,
        xy=_limbs(xy_h, xy_l) or 0,
        y_decimals=y_decimals,
        x_decimals=x_decimals,
    )
    return ratio_variance_float(sums)


def _udf(function: Callable[[pd.DataFrame], pd.Series]) -> Callable[[Column], Column]:
    """A scalar pandas UDF of one struct column (a pandas DataFrame per batch) to a double."""
    return cast(Callable[[Column], Column], pandas_udf(function, "double"))  # type: ignore[call-overload]


def _units(cells: pd.DataFrame) -> list[int]:
    return [_int(v) for v in cells["n"]]


def ratio_half_width(level: float, y_decimals: int, x_decimals: int) -> Callable[[Column], Column]:
    """A UDF: the delta-method half-width of R = Y / X over clustered units."""

    def widths(cells: pd.DataFrame) -> pd.Series:
        rows = cells[list(RATIO_FIELDS)].itertuples(index=False, name=None)
        variances = [_ratio_row(r, y_decimals, x_decimals) for r in rows]
        return half_widths(variances, _units(cells), level)

    return _udf(widths)


def _totals_row(row: tuple[object, ...], y_decimals: int, x_decimals: int) -> float | None:
    n, y, x, yy_h, yy_l, xx_h, xx_l = row
    if _missing(n):
        return None
    scale_y, scale_x = 10**y_decimals, 10**x_decimals
    yy, xx = _limbs(yy_h, yy_l), _limbs(xx_h, xx_l)
    variance = independent_ratio_variance(
        Fraction(_int(y), scale_y),
        Fraction(_int(x), scale_x),
        Fraction(yy or 0, scale_y**2),
        None if xx is None else Fraction(xx, scale_x**2),
        _int(n),
    )
    return None if variance is None else float(variance)


def totals_half_width(level: float, y_decimals: int, x_decimals: int) -> Callable[[Column], Column]:
    """A UDF: the half-width of R = Y / X for independent totals over the same n units
    (a ratio across sources); a side without squares (null) adds no variance."""

    def widths(cells: pd.DataFrame) -> pd.Series:
        rows = cells[list(TOTALS_FIELDS)].itertuples(index=False, name=None)
        variances = [_totals_row(r, y_decimals, x_decimals) for r in rows]
        return half_widths(variances, _units(cells), level)

    return _udf(widths)

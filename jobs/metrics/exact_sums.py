"""Exact sums over a cell's units of per-unit totals and of their products, in 64-bit
integer arithmetic (Spark's DECIMAL above 18 digits computes with Java BigDecimals, 10-15x
slower than longs).

A per-unit total t is a long: a count of rows, or a sum of values in units of 10^-decimals
(`scaled_value`). Its sum over units is two long sums of 32-bit limbs; a sum of products of
two totals is split into 16-bit limbs (t = sum_i L_i 2^(16 i), L_3 signed), so that each
unit contributes, per weight 2^(16 k), G_k = sum_{i+j=k} L_i M_j with |G_k| < 2^35, and
the cell sums each G_k in a long: exact for up to 2^28 units per cell at any magnitude
(many more where the totals are smaller). Any sum that does not fit is null (`try_sum`), and
the part's `overflow` statistic counts it, which stops the run (`gates.exact_totals`).
Once per cell the limb sums are put together as DECIMAL(38,0) numbers: a total, and a sum of
products as (h, l) with h 2^48 + l (`udfs.exact_moments.from_limbs`). Every sum is of
integers, so the result is the same for any order of addition: any partitioning.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DecimalType, FractionalType, IntegralType

WHOLE = "decimal(38,0)"
LIMB = 16
_MASK = (1 << LIMB) - 1
_HALF = 32
#: Limb sums of weight below 2^(16 SPLIT) go to `l`, the others to `h`, worth h 2^48 + l
#: (`udfs.exact_moments.LIMB_BITS`): each stays below 2^112, inside DECIMAL(38,0).
SPLIT = 3


def scaled_value(value: Column, decimals: int, kind: DataType) -> Column:
    """A row's value in units of 10^-decimals as a long; null where the value is null or
    its scaled value does not fit a long. Whole numbers are multiplied exactly; a double is
    multiplied by 10^decimals and rounded to the nearest whole (ties to even), as
    `numpy.round(value, decimals) * 10**decimals` does; a DECIMAL is rounded half up."""
    if isinstance(kind, IntegralType):
        return F.try_multiply(value.cast("long"), F.lit(10**decimals).cast("long"))
    if isinstance(kind, DecimalType):
        ten = F.lit(10**decimals).cast(f"decimal({decimals + 1},0)")
        exact = F.try_multiply(value.try_cast(f"decimal(38,{decimals})"), ten)
        return exact.try_cast("long")
    double = value if isinstance(kind, FractionalType) else value.cast("double")
    whole = F.rint(double.cast("double") * F.lit(float(10**decimals)))
    # Not `try_cast` alone: it turns exactly 2^63 into the largest long instead of null.
    return F.when(F.abs(whole) < F.lit(2.0**63), whole.cast("long"))


def total_sums(total: Column, name: str) -> list[Column]:
    """Aggregates: the sum over units of a long total, as two limb sums (see `combined`)."""
    high = F.shiftright(total, _HALF)
    low = total.bitwiseAND(F.lit((1 << _HALF) - 1))
    return [F.try_sum(high).alias(f"{name}__h"), F.try_sum(low).alias(f"{name}__l")]


def limbs(total: Column, count: bool) -> list[Column]:
    """t = sum_i L_i 2^(16 i): four limbs of a sum's total (the last signed); two of a
    count of rows (n < 2^32 in practice; the second limb is n >> 16, whatever n)."""
    if count:
        return [total.bitwiseAND(F.lit(_MASK)), F.shiftright(total, LIMB)]
    low = [F.shiftright(total, LIMB * i).bitwiseAND(F.lit(_MASK)) for i in range(3)]
    return [*low, F.shiftright(total, 3 * LIMB)]


def product_sums(a: list[Column], b: list[Column] | None, name: str) -> list[Column]:
    """Aggregates: the sum over units of the product of two totals given as limbs (`b`
    None: the square of `a`), one sum per weight 2^(16 k) (see `combined`)."""
    out = []
    top = len(a) + len(b if b is not None else a) - 2
    for k in range(top + 1):
        if b is None:
            terms = [
                a[i] * a[k - i] * F.lit(2 if i != k - i else 1)
                for i in range(len(a))
                if i <= k - i < len(a)
            ]
        else:
            terms = [a[i] * b[k - i] for i in range(len(a)) if 0 <= k - i < len(b)]
        out.append(F.try_sum(reduce(lambda x, y: x + y, terms)).alias(f"{name}__g{k}"))
    return out


def _whole(name: str) -> Column:
    return F.col(name).cast(WHOLE)


def _shifted(name: str, bits: int) -> Column:
    return _whole(name) * F.expr(f"CAST({1 << bits} AS {WHOLE})") if bits else _whole(name)


def combined(cells: DataFrame, totals: list[str], products: list[str]) -> DataFrame:
    """`cells` with each limb-summed total `name` (of `total_sums`) as one DECIMAL(38,0)
    column and each product sum `name` (of `product_sums`) as `name_h` and `name_l`, the
    limb sums dropped; each of those is null where one of its sums overflowed."""
    columns = {name: _shifted(f"{name}__h", _HALF) + _whole(f"{name}__l") for name in totals}
    for name in products:
        weights = sorted(
            int(c.rsplit("__g", 1)[1]) for c in cells.columns if c.startswith(f"{name}__g")
        )
        low = [_shifted(f"{name}__g{k}", LIMB * k) for k in weights if k < SPLIT]
        high = [_shifted(f"{name}__g{k}", LIMB * (k - SPLIT)) for k in weights if k >= SPLIT]
        zero = F.lit(0).cast(WHOLE)
        columns[f"{name}_h"] = reduce(lambda x, y: x + y, high, zero).cast(WHOLE)
        columns[f"{name}_l"] = reduce(lambda x, y: x + y, low, zero).cast(WHOLE)
    raw = [c for c in cells.columns if any(c.startswith(f"{n}__") for n in (*totals, *products))]
    return cells.withColumns(columns).drop(*raw)


def overflowed(cells: DataFrame, names: list[str]) -> Column:
    """1 where a sum of any of `names` overflowed (a plain sum `name`, or a limb sum of a
    total or product `name`), else 0."""
    sums = [c for c in cells.columns if any(c == n or c.startswith(f"{n}__") for n in names)]
    if not sums:
        return F.lit(0).cast("long")
    return F.when(reduce(lambda x, y: x | y, [F.col(c).isNull() for c in sums]), 1).otherwise(0)

"""Pure planning rules behind the pass: which parts share a per-unit count, and when a
ratio's units with either part are provably its denominator's units."""

from __future__ import annotations

import pytest

from jobs.metrics.conditions import conjuncts, rows_within
from jobs.metrics.definitions import Part
from jobs.metrics.pass_columns import presence_bits
from jobs.metrics.pass_runs import hashed_dimensions, largest_first
from jobs.metrics.planner import PassPlan


def count(condition: str | None = None) -> Part:
    return Part("views", "count", None, condition)


def total(value: str, condition: str | None = None) -> Part:
    return Part("views", "sum", value, condition)


@pytest.mark.parametrize(
    ("condition", "terms"),
    [
        (None, set()),
        ("is_bad", {"is_bad"}),
        ("(is_bad) AND ((amount) IS NOT NULL)", {"is_bad", "(amount) IS NOT NULL"}),
        ("a and  (b OR c)", {"a", "b OR c"}),
        ("s = 'x AND y' AND t", {"s = 'x AND y'", "t"}),
        ("(a) OR (b)", {"(a) OR (b)"}),
    ],
)
def test_conjuncts_split_only_top_level_and(condition: str | None, terms: set[str]) -> None:
    assert conjuncts(condition) == terms


@pytest.mark.parametrize(
    ("num", "den", "within"),
    [
        (count("is_bad"), count(), True),
        (count("is_bad AND surface = 'feed'"), count("surface = 'feed'"), True),
        (count("is_bad"), count("surface = 'feed'"), False),
        (count("is_bad OR surface = 'feed'"), count("surface = 'feed'"), False),
        (total("amount", "is_bad"), total("amount"), True),
        # A count's rows need not carry the denominator's value.
        (count("is_bad"), total("amount"), False),
        (total("amount", "is_bad"), total("fee"), False),
        # A mean: sum(amount) over count(*) where the amount is not null.
        (total("amount", "is_bad"), count("(is_bad) AND ((amount) IS NOT NULL)"), True),
        (total("amount"), count("(fee) IS NOT NULL"), False),
    ],
)
def test_rows_within(num: Part, den: Part, within: bool) -> None:
    assert rows_within(num, den) is within


def test_parts_of_equal_presence_share_one_count() -> None:
    parts = (
        count(),
        count("is_bad"),
        total("amount", "is_bad"),
        Part("views", "distinct_count", "user_id", "is_bad"),
        Part("views", "distinct_count", "user_id"),
    )
    plan = PassPlan(
        source="views",
        unit="user_id",
        windows=("1d",),
        slice_sets=((),),
        parts=parts,
        quantile_parts=(),
        quantiles=(),
        ratio_pairs=((parts[1].key, parts[0].key), (parts[2].key, parts[1].key)),
        metrics=("m",),
        units_of=frozenset(p.key for p in parts),
    )
    # count(): the row count, no bit; count(is_bad): one bit; sum(amount) where is_bad and
    # the distinct counts need their value too: two more bits, shared where equal.
    assert presence_bits(plan) == {
        ("is_bad", None): 0,
        ("is_bad", "amount"): 1,
        ("is_bad", "user_id"): 2,
        ("", "user_id"): 3,
    }
    # count(is_bad) / count(): within; sum(amount) where is_bad / count(is_bad): within too.
    assert plan.pairs_needing_units == ()


def test_passes_start_largest_first_with_unknown_sizes_before_known_ones() -> None:
    work: dict[str, int | None] = {
        "live_sessions": 88_000,
        "views": 140_000_000,
        "catalog_table": None,
        "uploads": 7_000_000,
        "user_reports": 88_000,
    }
    assert largest_first(work) == [
        "catalog_table",
        "views",
        "uploads",
        "live_sessions",
        "user_reports",
    ]


@pytest.mark.parametrize(
    ("attributes", "rows", "hashed"),
    [
        ((), 4_000_000, True),  # 20M unit-level entries: hashes pay for their dictionary
        ((), 3_999_999, False),
        ((), None, True),  # size unknown: could be large
        (("country",), 10, True),  # unit attributes are grouped by their hashes
    ],
)
def test_large_passes_and_passes_with_unit_attributes_carry_hashed_dimensions(
    attributes: tuple[str, ...], rows: int | None, hashed: bool
) -> None:
    plan = PassPlan(
        source="views",
        unit="user_id",
        windows=("1d",),
        slice_sets=((), ("country",)),
        parts=(count(),),
        quantile_parts=(),
        quantiles=(),
        ratio_pairs=(),
        metrics=("m",),
        attributes=attributes,
    )
    assert hashed_dimensions(plan, rows, expansion=5) is hashed

"""Lookup joins: a lookup much larger than the rows it serves is first cut to their keys,
with the same result as the plain join; a key that is not unique on the lookup side gets
the same row whatever the partitioning."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs.metrics.definitions import JoinDef, SourceDef
from jobs.metrics.sources import lookups_to_narrow, one_row_per_key, with_joins

ACTIONS = SourceDef(
    name="actions",
    format="delta",
    location="raw/actions",
    time_column="at",
    unit="video_id",
    joins=(JoinDef(source="videos", on=("video_id",), columns=("country",)),),
)
VIDEOS = SourceDef("videos", "delta", "raw/videos", "uploaded_at", "video_id")
SOURCES = {"actions": ACTIONS, "videos": VIDEOS}


@pytest.mark.parametrize(
    ("rows", "videos", "narrowed"),
    [
        (1_000, 4_000, {"videos"}),  # four times larger: narrowed
        (1_000, 3_999, set()),  # not larger enough
        (1_000, None, set()),  # lookup size unknown
        (None, 4_000, set()),  # source size unknown
        (3_000_000, 100_000_000, set()),  # too many keys to broadcast
        (0, 10, {"videos"}),  # an empty window
    ],
)
def test_which_lookups_are_narrowed(
    rows: int | None, videos: int | None, narrowed: set[str]
) -> None:
    sizes = {"videos": videos}
    assert lookups_to_narrow(ACTIONS, SOURCES, rows, lambda s: sizes[s.name]) == narrowed


@pytest.mark.parametrize("how", ["left", "inner"])
def test_a_narrowed_lookup_gives_the_plain_join(
    spark: SparkSession, how: Literal["left", "inner"]
) -> None:
    join = JoinDef(source="videos", on=("video_id",), columns=("country",), how=how)
    source = replace(ACTIONS, joins=(join,))
    actions = spark.createDataFrame(
        [(1, "remove"), (1, "warn"), (2, "remove"), (5, "remove"), (None, "remove")],
        "video_id long, action string",
    )
    # Video 2 three times (its first row by country is kept either way), videos 3 and 4
    # unused, 5 missing.
    videos = spark.createDataFrame(
        [(1, "US"), (2, "BR"), (2, None), (2, "AR"), (3, "IN"), (4, "DE")],
        "video_id long, country string",
    ).repartition(3)

    def joined(narrowed: frozenset[str]) -> list[tuple[object, ...]]:
        frame: DataFrame = with_joins(actions, source, lambda _: videos, narrowed)
        return sorted(
            (tuple(r) for r in frame.select("video_id", "action", "country").collect()),
            key=repr,
        )

    plain = joined(frozenset())
    expected: list[tuple[object, ...]] = [
        (1, "remove", "US"),
        (1, "warn", "US"),
        (2, "remove", "AR"),
    ]
    if how == "left":
        expected += [(5, "remove", None), (None, "remove", None)]
    assert plain == sorted(expected, key=repr)
    assert joined(frozenset({"videos"})) == plain


@pytest.mark.parametrize("partitions", [1, 3, 7])
def test_a_key_repeated_on_the_lookup_side_gets_the_first_row_by_its_columns(
    spark: SparkSession, partitions: int
) -> None:
    rows = [(2, "US", 5), (1, None, 1), (2, "BR", 9), (1, "IN", 2), (2, "BR", 1), (3, None, 4)]
    rows = rows * 3
    frame = spark.createDataFrame(rows, "video_id long, country string, n int")
    frame = frame.repartition(partitions)
    picked = one_row_per_key(frame, ["video_id"], ["country", "n"])
    got = sorted(tuple(r) for r in picked.collect())
    # Python's order of (country, n) with nulls last, per key.
    expected = sorted(
        min(
            (r for r in rows if r[0] == key),
            key=lambda r: (r[1] is None, r[1] or "", r[2]),
        )
        for key in {r[0] for r in rows}
    )
    assert got == expected

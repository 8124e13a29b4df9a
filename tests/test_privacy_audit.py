"""The audit on planted publications: one recoverable cell per route, each found by exactly
that route, and the same publications made safe found clean. No Spark: rows are metadata."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
import yaml

from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import catalog_from_documents
from jobs.privacy.audit import audit
from jobs.privacy.publication import HOURS_PER_DAY, Row

DAY0 = (dt.date(2026, 3, 1) - dt.date(1970, 1, 1)).days
COUNTRIES = ("FR", "GB", "US")


def catalog() -> Catalog:
    common = {"description": "d", "owner": "o", "source": "events"}
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 5},
            "dimensions": ["country"],
            "sources": {
                "events": {
                    "path": "/nowhere.parquet",
                    "format": "parquet",
                    "time_column": "ts",
                    "unit": "user_id",
                    "dimensions": ["country"],
                }
            },
            "metrics": [
                {**common, "name": "n", "type": "count", "windows": ["1d", "7d"],
                 "slices": [[], ["country"]]},
                {**common, "name": "bad", "type": "count", "filter": "is_bad",
                 "slices": [[], ["country"]]},
                {**common, "name": "bad_share", "type": "ratio",
                 "numerator": {"agg": "count", "filter": "is_bad"},
                 "denominator": {"agg": "count"}, "slices": [[], ["country"]]},
                {**common, "name": "n_hourly", "type": "count", "grain": "hour",
                 "slices": [[]]},
                {"name": "twice", "description": "d", "owner": "o", "type": "derived",
                 "expression": "bad * 2", "slices": [[], ["country"]]},
            ],
        }
    )  # fmt: skip
    parsed, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and parsed is not None, problems
    return parsed


def day_rows(metric: str, day: int, window: str = "1d", hidden: tuple[str, ...] = ()) -> list[Row]:
    """A metric's rows on one day: overall and every country, `hidden` countries suppressed."""
    rows = [Row(metric, "day", window, DAY0 + day, ((), ()), False, 50, "v1")]
    for c in COUNTRIES:
        rows.append(
            Row(metric, "day", window, DAY0 + day, (("country",), (c,)), c in hidden, 20, "v1")
        )
    return rows


def routes(rows: list[Row]) -> dict[str, list[str]]:
    report = audit(rows, catalog())
    out: dict[str, list[str]] = {}
    for f in report.findings:
        out.setdefault(f.route, []).append(f"{f.row.metric} {f.row.window} {f.row.cell[1]}")
    return out


def test_slices_route_lone_hidden_sibling() -> None:
    rows = day_rows("n", 0, hidden=("GB",))
    assert routes(rows) == {"slices": ["n 1d ('GB',)"]}
    assert routes(day_rows("n", 0, hidden=("GB", "FR"))) == {}


def test_metrics_route_count_shown_as_a_numerator() -> None:
    """The issue's example: a count hidden in one metric, shown as another's numerator."""
    rows = day_rows("bad", 0, hidden=("GB", "FR")) + day_rows("bad_share", 0)
    found = routes(rows)
    assert sorted(found) == ["metrics"]
    assert sorted(found["metrics"]) == ["bad 1d ('FR',)", "bad 1d ('GB',)"]
    aligned = day_rows("bad", 0, hidden=("GB", "FR")) + day_rows(
        "bad_share", 0, hidden=("GB", "FR")
    )
    assert routes(aligned) == {}


def test_windows_route_rolling_difference() -> None:
    """1d(t) = 7d(t) - 7d(t-1) + 1d(t-7), with the slice relation closed by a hidden pair."""
    rows = []
    for day in range(0, 15):
        rows += day_rows("n", day, hidden=("GB", "FR") if day == 10 else ())
        rows += day_rows("n", day, "7d")
    found = routes(rows)
    assert sorted(found) == ["windows"]
    assert sorted(found["windows"]) == ["n 1d ('FR',)", "n 1d ('GB',)"]
    safe = []
    for day in range(0, 15):
        safe += day_rows("n", day, hidden=("GB", "FR") if day == 10 else ())
        # Every window holding day 10 hides the pair too.
        safe += day_rows("n", day, "7d", hidden=("GB", "FR") if 10 <= day <= 16 else ())
    assert routes(safe) == {}


def test_hours_route_one_hidden_hour() -> None:
    rows = day_rows("n", 0)
    for h in range(HOURS_PER_DAY):
        hour = (DAY0 * HOURS_PER_DAY) + h
        rows.append(Row("n_hourly", "hour", "1h", hour, ((), ()), h == 5, 9, "v1"))
    assert routes(rows) == {"hours": ["n_hourly 1h ()"]}
    two = [replace(r, suppressed=True) if r.window == "1h" and r.period % 24 in (5, 6) else r
           for r in rows]  # fmt: skip
    assert routes(two) == {}


def test_versions_route_cell_shown_before_a_restatement() -> None:
    now = day_rows("n", 0, hidden=("GB", "FR"))
    # An older version, with a smaller minimum cell size, showed them (3 units each).
    before = [replace(r, history=True, suppressed=False, version="v0", units=3) for r in now]
    assert routes(now) == {}
    assert sorted(routes(now + before)["versions"]) == ["n 1d ('FR',)", "n 1d ('GB',)"]


def test_derived_route_input_hidden_but_derived_shown() -> None:
    rows = day_rows("bad", 0, hidden=("GB", "FR")) + day_rows("twice", 0)
    assert sorted(routes(rows)["derived"]) == ["bad 1d ('FR',)", "bad 1d ('GB',)"]
    hidden_too = day_rows("bad", 0, hidden=("GB", "FR")) + day_rows("twice", 0, hidden=("GB", "FR"))
    assert routes(hidden_too) == {}


def test_absent_cell_is_a_zero_anchor() -> None:
    """A country absent on a day (no events) is zero: with it, a lone hidden sibling left."""
    rows = [r for r in day_rows("n", 0, hidden=("GB",)) if r.cell[1] != ("US",)]
    rows += [r for r in day_rows("n", 1) if r.cell[1] == ("US",)]  # US is a value seen
    assert routes(rows) == {"slices": ["n 1d ('GB',)"]}


@pytest.mark.parametrize("units", [3, 50])
def test_denominator_hidden_with_its_numerator_is_harmless_when_large(units: int) -> None:
    """bad_share hidden for its numerator; its denominator (count(*)) is shown by `n` with
    `units` units: recoverable only matters when it could be small."""
    rows = day_rows("bad_share", 0, hidden=("GB", "FR"))
    rows += day_rows("bad", 0, hidden=("GB", "FR"))
    rows += [replace(r, units=units) for r in day_rows("n", 0)]
    found = routes(rows)
    if units >= 5:
        assert found == {}
    else:
        assert sorted(found["metrics"]) == ["bad_share 1d ('FR',)", "bad_share 1d ('GB',)"]

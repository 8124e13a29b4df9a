"""Root-cause ranking on hand-made cells: explanatory power and surprise against the formulas
written out, and the planted slice ranked first."""

from __future__ import annotations

import math

import pandas as pd  # type: ignore[import-untyped]
import pytest

from jobs.monitoring.root_cause import MetricKind, explain, parse_slice, refines


def cell(
    slice_id: str,
    value: float,
    expected: float,
    *,
    num: float = 0.0,
    den: float = 0.0,
    anomaly: bool = False,
    score: float = 0.0,
) -> dict[str, object]:
    slice_set = "+".join(sorted(parse_slice(slice_id))) or "overall"
    return {
        "metric": "m",
        "slice_set": slice_set,
        "slice_id": slice_id,
        "value": value,
        "expected": expected,
        "score": score,
        "is_anomaly": anomaly,
        "numerator": num,
        "denominator": den,
    }


def js(p: float, q: float) -> float:
    m = (p + q) / 2
    return 0.5 * ((p * math.log(p / m) if p else 0.0) + (q * math.log(q / m) if q else 0.0))


def test_slices_parse_and_refine() -> None:
    assert parse_slice("all") == {}
    assert parse_slice("country=BR|surface=shorts_feed") == {
        "country": "BR",
        "surface": "shorts_feed",
    }
    assert refines({"country": "BR", "surface": "x"}, {"country": "BR"})
    assert not refines({"country": "US", "surface": "x"}, {"country": "BR"})
    assert not refines({"country": "BR"}, {"country": "BR"})


def test_counts_explanatory_power_and_surprise() -> None:
    cells = pd.DataFrame(
        [
            cell("all", 1300, 1000, anomaly=True, score=9),
            cell("country=BR", 400, 100),  # +300 of the +300
            cell("country=US", 900, 900),
            cell("surface=feed", 700, 550),  # +150
            cell("surface=search", 600, 450),  # +150
        ]
    )
    got = explain(cells, {"m": MetricKind("additive")})
    assert list(got["parent_slice_id"].unique()) == ["all"]
    br = got[got["slice_id"] == "country=BR"].iloc[0]
    assert br["explanatory_power"] == pytest.approx(300 / 300)
    assert br["surprise"] == pytest.approx(js(100 / 1000, 400 / 1300))
    assert got.iloc[0]["slice_id"] == "country=BR" and got.iloc[0]["rank"] == 1
    assert "country=US" not in set(got["slice_id"])  # explains nothing
    # Both surfaces grew alike: feed's share fell (0.55 -> 0.54), so it is no cause; search
    # (0.45 -> 0.46) is, with little surprise.
    assert "surface=feed" not in set(got["slice_id"])
    search = got[got["slice_id"] == "surface=search"].iloc[0]
    assert search["explanatory_power"] == pytest.approx(0.5) and search["rank"] == 2


def test_ratio_metric_is_explained_by_excess_events_and_the_small_slice_wins() -> None:
    """VVR overall moves because BR x shorts_feed (2% of views) spikes: the combination is
    the top cause, above the country and the surface that merely contain it."""
    # Expected rate 0.004 everywhere; only BR x shorts_feed runs at 0.02 (+32 excess events).
    cells = {
        "country=BR|surface=home": (32, 8_000),
        "country=US|surface=shorts_feed": (112, 28_000),
        "country=US|surface=home": (248, 62_000),
        "country=BR": (72, 10_000),
        "country=US": (360, 90_000),
        "surface=shorts_feed": (152, 30_000),
        "surface=home": (280, 70_000),
        "country=BR|surface=shorts_feed": (40, 2_000),  # last: the ranking must find it
    }
    rows = [cell("all", 432 / 100_000, 0.004, num=432, den=100_000, anomaly=True, score=6)]
    rows += [cell(s, n / d, 0.004, num=n, den=d) for s, (n, d) in cells.items()]
    got = explain(pd.DataFrame(rows), {"m": MetricKind("ratio")})
    top = got.iloc[0]
    assert top["slice_id"] == "country=BR|surface=shorts_feed"
    assert top["explanatory_power"] == pytest.approx((40 - 0.004 * 2000) / (432 - 400))
    assert top["surprise"] == pytest.approx(js(0.004 * 2000 / 400, 40 / 432))
    contains = got[got["slice_id"].isin(["country=BR", "surface=shorts_feed"])]
    assert list(contains["explanatory_power"]) == pytest.approx([1.0, 1.0])
    assert set(got["slice_id"]) == {
        "country=BR|surface=shorts_feed",
        "country=BR",
        "surface=shorts_feed",
    }
    assert list(got["rank"]) == list(range(1, len(got) + 1))


def test_rate_scale_and_non_additive_metrics() -> None:
    rows = [
        cell("all", 5.0, 4.0, num=500, den=100_000, anomaly=True, score=5),  # per 1k
        cell("country=BR", 10.0, 4.0, num=100, den=10_000),
        cell("country=US", 4.44, 4.0, num=400, den=90_000),
    ]
    got = explain(pd.DataFrame(rows), {"m": MetricKind("ratio", per=1000.0)})
    br = got[got["slice_id"] == "country=BR"].iloc[0]
    assert br["explanatory_power"] == pytest.approx((100 - 40) / (500 - 400))
    scored = [
        rows[0],
        cell("country=US", 4.4, 4.0, score=1.0),
        cell("country=BR", 9.0, 4.0, score=7.0),
    ]
    quantile = explain(pd.DataFrame(scored), {"m": MetricKind("other")})
    assert list(quantile["slice_id"]) == ["country=BR", "country=US"]  # by their own scores
    assert quantile["explanatory_power"].isna().all()


def test_a_child_without_denominator_is_skipped_and_an_outage_is_explained() -> None:
    rows = [
        cell("all", 0.005, 0.004, num=500, den=100_000, anomaly=True, score=5),
        cell("country=BR", 0.01, 0.004, num=100, den=float("nan")),  # no denominator
        cell("country=US", 0.0044, 0.004, num=400, den=90_000),
    ]
    got = explain(pd.DataFrame(rows), {"m": MetricKind("ratio")})
    assert list(got["slice_id"]) == ["country=US"]
    outage = [
        cell("all", 0.0, 1000.0, anomaly=True, score=-9),
        cell("country=BR", 0.0, 100.0),
        cell("country=US", 0.0, 900.0),
    ]
    got = explain(pd.DataFrame(outage), {"m": MetricKind("additive")})
    assert list(got["slice_id"]) == ["country=US", "country=BR"]  # the larger loss first
    assert list(got["explanatory_power"]) == pytest.approx([0.9, 0.1])


def test_a_bystander_that_grew_less_than_its_sibling_is_not_the_cause() -> None:
    """Evaluation seed 2 at scale 0.5: BR spiked through shorts_feed (7 vs 1.0 expected);
    home_feed (2 vs 0.94) has a larger surprise on parent shares, but its share of BR fell."""
    rows = [
        cell("country=BR", 10 / 2500, 1.14 / 2500, num=10, den=2500, anomaly=True, score=6),
        cell("country=BR|surface=home_feed", 2 / 2200, 0.94 / 2200, num=2, den=2200, score=0.9),
        cell("country=BR|surface=shorts_feed", 7 / 300, 1.0 / 300, num=7, den=300, score=5.3),
    ]
    got = explain(pd.DataFrame(rows), {"m": MetricKind("ratio")})
    assert list(got["slice_id"]) == ["country=BR|surface=shorts_feed"]


def test_an_unscored_child_of_a_quantile_is_never_named() -> None:
    rows = [
        cell("all", 20.5, 1.7, anomaly=True, score=9),
        cell("detection_source=automated", 0.26, 0.3, score=float("nan")),
    ]
    assert explain(pd.DataFrame(rows), {"m": MetricKind("other")}).empty


def test_a_sparse_bystander_does_not_outrank_the_child_that_carries_the_excess() -> None:
    """The default data's country=BR on 2026-10-07 (the spike's second day), as scored:
    search has 2 violative views where its median is 0, so its share jumps from 0
    (surprise 0.033); shorts_feed has 15 against 3.8 expected, but its baseline already
    held the first spike day, so its share hardly moved (surprise 0.0004). Ranked by
    surprise, search (13% of the change, own score +1.9) came before shorts_feed (72%,
    own score +4.2)."""
    rows = [  # slice, events, views, expected rate, own score
        ("country=BR", 21, 1616, 0.003382, 4.79),
        ("country=BR|surface=shorts_feed", 15, 439, 0.008658, 4.19),
        ("country=BR|surface=search", 2, 205, 0.0, 1.93),
        ("country=BR|surface=home_feed", 2, 483, 0.001894, 0.88),
        ("country=BR|surface=watch_next", 1, 300, 0.003296, 0.01),
        ("country=BR|surface=subscriptions", 1, 115, 0.0, 1.0),
        ("country=BR|surface=external", 0, 74, 0.0, 0.0),
    ]
    cells = pd.DataFrame(
        [
            cell(s, n / d, e, num=n, den=d, anomaly=s == "country=BR", score=z)
            for s, n, d, e, z in rows
        ]
    )
    out = explain(cells, {"m": MetricKind("ratio")}).set_index("slice_id")
    assert (
        out.loc["country=BR|surface=search", "surprise"]
        > 10 * out.loc["country=BR|surface=shorts_feed", "surprise"]
    )
    assert out["rank"].idxmin() == "country=BR|surface=shorts_feed"
    assert out.loc["country=BR|surface=shorts_feed", "explanatory_power"] > 0.7
    assert out.loc["country=BR|surface=search", "explanatory_power"] < 0.15

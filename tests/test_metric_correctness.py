"""Metric numbers checked against an independent computation on the same rows.

One module-scoped fixture writes small seeded Parquet tables, builds a catalog from YAML
text covering every metric type, window, grain and slice set, computes the rows before
suppression and runs the whole job once. The tests compare every cell with DuckDB SQL
(values, units, exact rolling windows), NumPy/SciPy (quantiles, Wilson and delta-method
intervals) and a plain-Python version of primary, complementary and derived suppression.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.stats import chi2, norm
from scipy.stats import t as student_t

from jobs.core.delta import DeltaSink
from jobs.core.located_yaml import parse_located
from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.gates import parent_consistency
from jobs.metrics.job import METRIC_VALUES, RunSummary, compute_metric_rows, run_metrics
from jobs.metrics.loader import catalog_from_documents
from jobs.metrics.pass_runs import compute_passes
from jobs.metrics.planner import Plan, compile_plan
from jobs.metrics.sources import table_reader
from jobs.metrics.sql_check import SparkExpressionChecker
from jobs.metrics.suppression import suppress
from jobs.privacy.audit import audit
from jobs.privacy.publication import Row as AuditRow

START, END = dt.date(2026, 3, 26), dt.date(2026, 3, 28)
OUTPUT_DATES = [START + dt.timedelta(days=i) for i in range((END - START).days + 1)]
#: The data runs from before the 28-day lookback to after the last output date.
FIRST_DAY, LAST_DAY = dt.date(2026, 2, 20), dt.date(2026, 3, 29)
MIN_CELL = 5
Z = float(norm.ppf(0.975))


def T(n: int) -> float:
    """The 97.5% quantile of Student's t with n - 1 degrees of freedom (n clusters)."""
    return float(student_t.ppf(0.975, n - 1))


DIMS = ("country", "surface")
UNITS = {"events": "user_id", "reports": "reporter_id", "impressions": "imp_id"}
SOURCE_DIMS = {
    "events": ["country", "surface"],
    "reports": ["country", "surface"],
    "impressions": ["country"],
}
#: Declared unit attributes: constant per user in events (and per impression, one row each);
#: not per reporter in reports, whose pass finds the conflict and runs again without them.
UNIT_ATTRIBUTES = {"events": ["country"], "reports": ["country"], "impressions": ["country"]}

W3 = ["1d", "7d", "28d"]
W2 = ["1d", "7d"]
GEO: list[list[str]] = [[], ["country"]]
ALL4: list[list[str]] = [[], ["country"], ["surface"], ["country", "surface"]]

#: The catalog's metrics, as YAML mappings (description and owner are added).
METRICS: list[dict[str, Any]] = [
    {"name": "n_events", "source": "events", "type": "count", "windows": W3, "slices": ALL4},
    {
        "name": "n_bad",
        "source": "events",
        "type": "count",
        "filter": "is_bad",
        "windows": W3,
        "slices": ALL4,
    },
    {
        "name": "total_amount",
        "source": "events",
        "type": "sum",
        "value": "amount",
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "mean_feed_amount",
        "source": "events",
        "type": "mean",
        "value": "amount",
        "filter": "surface = 'feed'",
        "windows": W2,
        "slices": [[], ["surface"]],
    },
    {
        "name": "winsorized_feed_amount",
        "source": "events",
        "type": "winsorized_mean",
        "value": "amount",
        "cap": {"min": 5, "max": 40},
        "filter": "surface = 'feed'",
        "windows": W2,
        "slices": [[], ["surface"]],
    },
    {
        "name": "winsorized_p90_feed_amount",
        "source": "events",
        "type": "winsorized_mean",
        "value": "amount",
        "cap": {"percentile": 0.9},
        "filter": "surface = 'feed'",
        "windows": W2,
        "slices": [[], ["surface"]],
    },
    {
        "name": "bad_share",
        "source": "events",
        "type": "ratio",
        "numerator": {"agg": "count", "filter": "is_bad"},
        "denominator": {"agg": "count"},
        "windows": W3,
        "slices": [[], ["country"], ["country", "surface"]],
    },
    {
        "name": "bad_amount_per_100",
        "source": "events",
        "type": "rate",
        "filter": "amount IS NOT NULL",
        "numerator": {"agg": "sum", "value": "amount", "filter": "is_bad"},
        "denominator": {"agg": "count"},
        "per": 100,
        "windows": W2,
        "slices": GEO,
    },
    {
        "name": "active_users",
        "source": "events",
        "type": "distinct_count",
        "value": "user_id",
        "windows": W3,
        "slices": ALL4,
    },
    {
        "name": "bad_items",
        "source": "events",
        "type": "distinct_count",
        "value": "item_id",
        "filter": "is_bad",
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "approx_items",
        "source": "events",
        "type": "approx_distinct_count",
        "value": "item_id",
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "p90_amount",
        "source": "events",
        "type": "quantile",
        "value": "amount",
        "quantile": 0.9,
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "p50_amount",
        "source": "events",
        "type": "quantile",
        "value": "amount",
        "quantile": 0.5,
        "windows": W2,
        "slices": GEO,
    },
    {
        "name": "median_bad_amount",
        "source": "events",
        "type": "quantile",
        "value": "amount",
        "filter": "is_bad",
        "quantile": 0.5,
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "amount_per_user",
        "type": "derived",
        "expression": "try_divide(total_amount, active_users)",
        "windows": W3,
        "slices": GEO,
    },
    {
        "name": "n_events_hourly",
        "source": "events",
        "type": "count",
        "grain": "hour",
        "slices": GEO,
        "min_cell_size": 2,
    },
    {
        "name": "bad_share_hourly",
        "source": "events",
        "type": "ratio",
        "grain": "hour",
        "numerator": {"agg": "count", "filter": "is_bad"},
        "denominator": {"agg": "count"},
        "slices": [[]],
    },
    {
        "name": "spam_reports_per_1k",
        "source": "events",
        "type": "rate",
        "numerator": {"agg": "count", "source": "reports", "filter": "reason = 'spam'"},
        "denominator": {"agg": "count"},
        "per": 1000,
        "windows": W2,
        "slices": [[], ["country"], ["surface"]],
    },
    {
        "name": "ctr",
        "source": "impressions",
        "type": "ratio",
        "numerator": {"agg": "count", "filter": "clicked"},
        "denominator": {"agg": "count"},
        "windows": W2,
        "slices": GEO,
    },
    {
        # Numerator rows outside the denominator's: a unit with bad rows but no feed rows
        # is one of the units of the delta method, with a zero denominator.
        "name": "bad_per_feed_event",
        "source": "events",
        "type": "ratio",
        "numerator": {"agg": "count", "filter": "is_bad"},
        "denominator": {"agg": "count", "filter": "surface = 'feed'"},
        "ci": "delta",
        "windows": W2,
        "slices": GEO,
    },
    {
        "name": "ctr_delta",
        "source": "impressions",
        "type": "ratio",
        "numerator": {"agg": "count", "filter": "clicked"},
        "denominator": {"agg": "count"},
        "ci": "delta",
        "windows": W2,
        "slices": GEO,
    },
]
SPECS = {m["name"]: m for m in METRICS}
NAMES = [m["name"] for m in METRICS]
DERIVED = [m["name"] for m in METRICS if m["type"] == "derived"]
BASE = [n for n in NAMES if n not in DERIVED]


# --- the independent computation, spelled out per metric -------------------------------------


@dataclass(frozen=True)
class Sums:
    """count, sum, mean, ratio, rate: per-row values summed where a SQL flag holds."""

    num_flag: str
    num_value: str = "1"
    den_flag: str | None = None  # None: no denominator
    den_value: str = "1"
    per: float = 1.0
    ci: str = "none"  # none | delta | wilson | cross
    num_source: str | None = None  # the numerator's source when it is not the metric's


@dataclass(frozen=True)
class Distinct:
    """distinct_count, exact or approximate."""

    value: str
    flag: str = "TRUE"
    approx: bool = False


@dataclass(frozen=True)
class Quantile:
    value: str
    q: float
    flag: str = "TRUE"


@dataclass(frozen=True)
class Quotient:
    """A derived metric a / b."""

    a: str
    b: str


Oracle = Sums | Distinct | Quantile | Quotient
ORACLE: dict[str, Oracle] = {
    "n_events": Sums("TRUE"),
    "n_bad": Sums("is_bad"),
    "total_amount": Sums("TRUE", "amount"),
    "mean_feed_amount": Sums(
        "surface = 'feed'",
        "amount",
        den_flag="surface = 'feed' AND amount IS NOT NULL",
        ci="delta",
    ),
    # Values held inside [5, 40] (DuckDB's CASE, nulls stay null), then a mean.
    "winsorized_feed_amount": Sums(
        "surface = 'feed'",
        "CASE WHEN amount > 40 THEN 40.0 WHEN amount < 5 THEN 5.0 ELSE amount END",
        den_flag="surface = 'feed' AND amount IS NOT NULL",
        ci="delta",
    ),
    # Values capped at the previous day's 90th percentile of feed amounts (`feed_p90_before`,
    # DuckDB's quantile_cont: see `Reference`); no cap where that day has none.
    "winsorized_p90_feed_amount": Sums(
        "surface = 'feed'",
        "CASE WHEN amount > feed_p90_before THEN feed_p90_before ELSE amount END",
        den_flag="surface = 'feed' AND amount IS NOT NULL",
        ci="delta",
    ),
    "bad_share": Sums("is_bad", den_flag="TRUE", ci="delta"),
    "bad_amount_per_100": Sums(
        "amount IS NOT NULL AND is_bad",
        "amount",
        den_flag="amount IS NOT NULL",
        per=100.0,
        ci="delta",
    ),
    "active_users": Distinct("user_id"),
    "bad_items": Distinct("item_id", "is_bad"),
    "approx_items": Distinct("item_id", approx=True),
    "p90_amount": Quantile("amount", 0.9),
    "p50_amount": Quantile("amount", 0.5),
    "median_bad_amount": Quantile("amount", 0.5, "is_bad"),
    "amount_per_user": Quotient("total_amount", "active_users"),
    "n_events_hourly": Sums("TRUE"),
    "bad_share_hourly": Sums("is_bad", den_flag="TRUE", ci="delta"),
    "spam_reports_per_1k": Sums(
        "reason = 'spam'", den_flag="TRUE", per=1000.0, ci="cross", num_source="reports"
    ),
    "ctr": Sums("clicked", den_flag="TRUE", ci="wilson"),
    "bad_per_feed_event": Sums("is_bad", den_flag="surface = 'feed'", ci="delta"),
    "ctr_delta": Sums("clicked", den_flag="TRUE", ci="delta"),
}
CI_METRICS = [n for n, o in ORACLE.items() if isinstance(o, Sums) and o.ci != "none"]

Key = tuple[str, str, str]  # (period, window, slice_id)
Cell = dict[str, Any]


def period_key(period: dt.date, grain: str = "day") -> str:
    """A daily period as its ISO date, an hourly one as its ISO hour (naive UTC).

    Daily periods may arrive as midnight timestamps: the metric rows of both grains share
    one frame, whose period column Spark widens to a timestamp.
    """
    if isinstance(period, dt.datetime):
        if period.tzinfo is not None:
            period = period.astimezone(dt.UTC).replace(tzinfo=None)
        if grain == "day":
            assert period.time() == dt.time(), period
            return period.date().isoformat()
        return period.isoformat(timespec="hours")
    return period.isoformat()


def slice_dims(slice_id: str) -> dict[str, str]:
    if slice_id == "all":
        return {}
    return dict(part.split("=", 1) for part in slice_id.split("|"))


def grain_of(name: str) -> str:
    return str(SPECS[name].get("grain", "day"))


def windows_of(name: str) -> list[str]:
    return ["1h"] if grain_of(name) == "hour" else list(SPECS[name]["windows"])


def slice_sets_of(name: str) -> list[tuple[str, ...]]:
    return [tuple(sorted(s)) for s in SPECS[name]["slices"]]


def set_name(slice_set: Iterable[str]) -> str:
    return ",".join(slice_set) or "overall"


def threshold(name: str) -> int:
    return int(SPECS[name].get("min_cell_size", MIN_CELL))


# --- data --------------------------------------------------------------------------------------


def _times(rng: np.random.RandomState, n: int) -> list[dt.datetime]:
    span = ((LAST_DAY - FIRST_DAY).days + 1) * 86_400 * 1_000_000
    base = dt.datetime.combine(FIRST_DAY, dt.time())
    return [base + dt.timedelta(microseconds=int(o)) for o in rng.randint(0, span, n, np.int64)]


def _choice(rng: np.random.RandomState, values: list[Any], p: list[float], n: int) -> list[Any]:
    return [values[i] for i in rng.choice(len(values), size=n, p=p)]


def _nulls(rng: np.random.RandomState, values: list[Any], share: float) -> list[Any]:
    mask = rng.rand(len(values)) < share
    return [None if m else v for v, m in zip(values, mask, strict=True)]


def make_events(rng: np.random.RandomState) -> pa.Table:
    n = 3000
    times, users = _times(rng, n), rng.randint(0, 150, n)
    # A user's country is the user's (a declared unit attribute); the surface is the event's.
    country_of = _choice(rng, ["BR", "US", "IN", "MX", None], [0.35, 0.3, 0.2, 0.1, 0.05], 150)
    rows: dict[str, list[Any]] = {
        "ts": times,
        "user_id": users.tolist(),
        "country": [country_of[u] for u in users],
        "surface": _choice(rng, ["feed", "search", None], [0.6, 0.35, 0.05], n),
        "is_bad": _nulls(rng, (rng.rand(n) < 0.15).tolist(), 0.05),
        # Whole numbers, so that quantiles meet ties.
        "amount": _nulls(rng, np.round(rng.gamma(2.0, 10.0, n)).tolist(), 0.1),
        "item_id": _nulls(rng, [f"item-{i}" for i in rng.randint(0, 2000, n)], 0.1),
    }

    def add(when: dt.datetime, user: int, country: str, surface: str) -> None:
        for column, value in (
            ("ts", when),
            ("user_id", user),
            ("country", country),
            ("surface", surface),
            ("is_bad", False),
            ("amount", 10.0),
            ("item_id", f"item-{country}"),
        ):
            rows[column].append(value)

    # NZ: 7 users on 27 March, 2 on 28 March (a small cell on the last day).
    for user in range(900, 907):
        add(dt.datetime(2026, 3, 27, 12), user, "NZ", "feed")
    for user in (900, 901):
        add(dt.datetime(2026, 3, 28, 8), user, "NZ", "feed")
    # JP: only on 5 March, so only the 28-day windows see it.
    for user in range(950, 956):
        add(dt.datetime(2026, 3, 5, 9), user, "JP", "search")
    # ZZ: one row on each side of the 28-day and 1-day window edges (UTC midnights).
    for user, when in enumerate(
        (
            dt.datetime(2026, 2, 26, 23, 59, 59, 999_999),
            dt.datetime(2026, 2, 27, 0, 0, 0),
            dt.datetime(2026, 3, 26, 23, 59, 59, 999_999),
            dt.datetime(2026, 3, 27, 0, 0, 0),
        ),
        start=960,
    ):
        add(when, user, "ZZ", "feed")
    return pa.table(
        {
            "ts": pa.array(rows["ts"], pa.timestamp("us")),
            "user_id": pa.array(rows["user_id"], pa.int64()),
            "country": pa.array(rows["country"], pa.string()),
            "surface": pa.array(rows["surface"], pa.string()),
            "is_bad": pa.array(rows["is_bad"], pa.bool_()),
            "amount": pa.array(rows["amount"], pa.float64()),
            "item_id": pa.array(rows["item_id"], pa.string()),
        }
    )


def make_reports(rng: np.random.RandomState) -> pa.Table:
    n = 600
    return pa.table(
        {
            "ts": pa.array(_times(rng, n), pa.timestamp("us")),
            "reporter_id": pa.array(rng.randint(0, 200, n).tolist(), pa.int64()),
            # FR has reports but no events; MX has events but no reports.
            "country": pa.array(
                _choice(rng, ["BR", "US", "IN", "FR", None], [0.35, 0.3, 0.2, 0.1, 0.05], n),
                pa.string(),
            ),
            "surface": pa.array(
                _choice(rng, ["feed", "search", None], [0.6, 0.35, 0.05], n), pa.string()
            ),
            "reason": pa.array(_choice(rng, ["spam", "abuse"], [0.6, 0.4], n), pa.string()),
        }
    )


def make_impressions(rng: np.random.RandomState) -> pa.Table:
    n = 1500
    return pa.table(
        {
            "ts": pa.array(_times(rng, n), pa.timestamp("us")),
            "imp_id": pa.array(list(range(1, n + 1)), pa.int64()),
            "country": pa.array(
                _choice(rng, ["BR", "US", "IN", None], [0.45, 0.3, 0.2, 0.05], n), pa.string()
            ),
            "clicked": pa.array(_nulls(rng, (rng.rand(n) < 0.12).tolist(), 0.03), pa.bool_()),
        }
    )


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write with the time column as a UTC instant (Spark reads it as TIMESTAMP)."""
    index = table.schema.get_field_index("ts")
    utc = table.set_column(index, "ts", table["ts"].cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(utc, path)


def catalog_yaml(paths: dict[str, str]) -> str:
    sources = {
        name: {
            "path": paths[name],
            "format": "parquet",
            "time_column": "ts",
            "unit": UNITS[name],
            "independent_rows": name == "impressions",
            "dimensions": SOURCE_DIMS[name],
            "unit_attributes": UNIT_ATTRIBUTES[name],
        }
        for name in UNITS
    }
    doc = {
        "settings": {
            "min_cell_size": MIN_CELL,
            "confidence_level": 0.95,
            "gates": {"on_failure": "warn"},
        },
        "dimensions": list(DIMS),
        "sources": sources,
        "metrics": [{**m, "description": "d", "owner": "o"} for m in METRICS],
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --- DuckDB / NumPy oracle -------------------------------------------------------------------


class Reference:
    """Expected cells, computed with DuckDB over the same rows, NumPy for the statistics."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.con = duckdb.connect()
        for name, table in tables.items():
            self.con.register(f"{name}_raw", table)
            self.con.execute(
                f"CREATE TABLE {name} AS SELECT *, CAST(ts AS DATE) AS day FROM {name}_raw"
            )
        # The previous day's 90th percentile of feed amounts, beside every event.
        self.con.execute("""
            CREATE OR REPLACE TABLE events AS
            SELECT e.*, p.p90 AS feed_p90_before
            FROM events e LEFT JOIN (
                SELECT day + 1 AS day, quantile_cont(amount, 0.9) AS p90
                FROM events WHERE surface = 'feed' AND amount IS NOT NULL GROUP BY day
            ) p USING (day)
        """)
        self.con.execute("CREATE TABLE periods (period DATE, win VARCHAR, first DATE)")
        for day in OUTPUT_DATES:
            for window in W3:
                first = day - dt.timedelta(days=int(window[:-1]) - 1)
                self.con.execute("INSERT INTO periods VALUES (?, ?, ?)", [day, window, first])
        self._views: set[str] = set()

    def rows(self, source: str, grain: str) -> str:
        """A table of the source's rows, once per (period, window, slice) they count in."""
        name = f"x_{source}_{grain}"
        if name in self._views:
            return name
        sets = sorted(
            {s for n in BASE for s in slice_sets_of(n) if source in _sources(n)},
            key=lambda s: (len(s), s),
        )
        selects = []
        for s in sets:
            sid = (
                " || '|' || ".join(
                    f"'{d}=' || coalesce(CAST(t.{d} AS VARCHAR), '(none)')" for d in s
                )
                if s
                else "'all'"
            )
            head = f"SELECT '{set_name(s)}' AS slice_set, {sid} AS slice_id, t.*"
            if grain == "day":
                selects.append(
                    f"{head}, p.period, p.win FROM {source} t "
                    "JOIN periods p ON t.day BETWEEN p.first AND p.period"
                )
            else:
                selects.append(
                    f"{head}, date_trunc('hour', t.ts) AS period, '1h' AS win FROM {source} t "
                    f"WHERE t.day BETWEEN DATE '{START}' AND DATE '{END}'"
                )
        self.con.execute(f"CREATE TABLE {name} AS " + " UNION ALL ".join(selects))
        self._views.add(name)
        return name

    def _scope(self, metric: str) -> str:
        windows = ", ".join(f"'{w}'" for w in windows_of(metric))
        sets = ", ".join(f"'{set_name(s)}'" for s in slice_sets_of(metric))
        return f"win IN ({windows}) AND slice_set IN ({sets})"

    def per_unit(
        self, metric: str, source: str, flag: str, value: str, unit: str
    ) -> dict[tuple[Key, str], list[tuple[float, int]]]:
        """(cell, slice set) -> per unit (sum of value where flag, rows where flag that carry
        a value: a unit whose values are all null is not one of the cell's units)."""
        sql = f"""
            SELECT period, win, slice_id, slice_set, {unit} AS u,
                   coalesce(sum(CASE WHEN ({flag}) THEN CAST({value} AS DOUBLE) END), 0) AS s,
                   count(*) FILTER (WHERE ({flag}) AND ({value}) IS NOT NULL) AS n
            FROM {self.rows(source, grain_of(metric))}
            WHERE {self._scope(metric)}
            GROUP BY ALL
        """
        out: dict[tuple[Key, str], list[tuple[float, int]]] = defaultdict(list)
        for period, win, sid, sset, _, s, n in self.con.execute(sql).fetchall():
            out[((period_key(period, grain_of(metric)), win, sid), sset)].append((float(s), int(n)))
        return out

    def sums(self, metric: str, o: Sums) -> dict[Key, Cell]:
        source = str(SPECS[metric]["source"])
        unit = UNITS[source]
        den = self.per_unit(metric, source, o.den_flag or "FALSE", o.den_value, unit)
        num_source = o.num_source or source
        num = self.per_unit(metric, num_source, o.num_flag, o.num_value, UNITS[num_source])
        # Same rows: pair each unit's numerator and denominator sums.
        pairs = self._pairs(metric, source, o, unit) if o.ci == "delta" else {}
        cells: dict[Key, Cell] = {}
        # Across sources a cell exists where either side has rows.
        only_num = [k for k in num if k not in den] if num_source != source else []
        for key, sset in [*den, *only_num]:
            den_units = den.get((key, sset), [])
            num_units = num.get((key, sset), [])
            y = sum(s for s, _ in num_units)
            x = sum(s for s, _ in den_units)
            cell: Cell = {"slice_set": sset, "ci_lower": None, "ci_upper": None}
            if o.den_flag is None:
                cell.update(
                    value=y,
                    numerator=y,
                    denominator=None,
                    units=sum(1 for _, n in num_units if n > 0),
                )
            else:
                cell.update(
                    value=y / x * o.per if x else None,
                    numerator=y,
                    denominator=x,
                    units=sum(1 for _, n in den_units if n > 0),
                )
            cell["ci_method"] = "none" if o.ci == "none" else ("delta" if o.ci == "cross" else o.ci)
            if o.ci == "delta":
                ys, xs = pairs.get(key, (np.zeros(0), np.zeros(0)))
                cell["ci_lower"], cell["ci_upper"] = delta_interval(
                    ys, xs, o, is_proportion(metric)
                )
            elif o.ci == "wilson":
                cell["ci_lower"], cell["ci_upper"] = wilson_interval(y, x)
            elif o.ci == "cross":
                ys_c = np.array([s for s, n in num_units if n > 0])
                xs_c = np.array([s for s, n in den_units if n > 0])
                cell["ci_lower"], cell["ci_upper"] = independent_totals_interval(ys_c, xs_c, o)
            cells[key] = cell
        return cells

    def _pairs(
        self, metric: str, source: str, o: Sums, unit: str
    ) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
        """Per cell: y_u and x_u over the units with any numerator or denominator row."""
        den_flag = o.den_flag or "FALSE"
        sql = f"""
            SELECT period, win, slice_id,
                   coalesce(sum(CASE WHEN ({o.num_flag}) THEN CAST({o.num_value} AS DOUBLE) END),
                            0) AS y,
                   coalesce(sum(CASE WHEN ({den_flag}) THEN CAST({o.den_value} AS DOUBLE) END),
                            0) AS x
            FROM {self.rows(source, grain_of(metric))}
            WHERE {self._scope(metric)}
            GROUP BY period, win, slice_id, {unit}
            HAVING count(*) FILTER (
                WHERE (({o.num_flag}) AND ({o.num_value}) IS NOT NULL)
                   OR (({den_flag}) AND ({o.den_value}) IS NOT NULL)
            ) > 0
        """
        acc: dict[Key, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for period, win, sid, y, x in self.con.execute(sql).fetchall():
            ys, xs = acc[(period_key(period, grain_of(metric)), win, sid)]
            ys.append(float(y))
            xs.append(float(x))
        return {k: (np.array(ys), np.array(xs)) for k, (ys, xs) in acc.items()}

    def distinct(self, metric: str, o: Distinct) -> dict[Key, Cell]:
        source = str(SPECS[metric]["source"])
        unit = UNITS[source]
        sql = f"""
            SELECT period, win, slice_id, slice_set,
                   count(DISTINCT CASE WHEN ({o.flag}) THEN CAST({o.value} AS VARCHAR) END),
                   count(DISTINCT CASE WHEN ({o.flag}) AND ({o.value}) IS NOT NULL
                                       THEN {unit} END)
            FROM {self.rows(source, grain_of(metric))}
            WHERE {self._scope(metric)}
            GROUP BY ALL
        """
        cells: dict[Key, Cell] = {}
        for period, win, sid, sset, value, units in self.con.execute(sql).fetchall():
            cells[(period_key(period, grain_of(metric)), win, sid)] = {
                "slice_set": sset,
                "value": float(value),
                "numerator": float(value),
                "denominator": None,
                "units": units,
                "ci_lower": None,
                "ci_upper": None,
                "ci_method": "none",
            }
        return cells

    def quantile(self, metric: str, o: Quantile) -> dict[Key, Cell]:
        source = str(SPECS[metric]["source"])
        unit = UNITS[source]
        sql = f"""
            SELECT period, win, slice_id, slice_set,
                   list(CAST({o.value} AS DOUBLE))
                       FILTER (WHERE ({o.flag}) AND {o.value} IS NOT NULL),
                   count(DISTINCT CASE WHEN ({o.flag}) AND ({o.value}) IS NOT NULL
                                       THEN {unit} END)
            FROM {self.rows(source, grain_of(metric))}
            WHERE {self._scope(metric)}
            GROUP BY ALL
        """
        cells: dict[Key, Cell] = {}
        for period, win, sid, sset, values, units in self.con.execute(sql).fetchall():
            cells[(period_key(period, grain_of(metric)), win, sid)] = {
                "slice_set": sset,
                "value": float(np.quantile(values, o.q)) if values else None,
                "numerator": None,
                "denominator": None,
                "units": units,
                "ci_lower": None,
                "ci_upper": None,
                "ci_method": "none",
            }
        return cells

    def presence(self, source: str, flag: str, value: str) -> dict[Key, tuple[int, bool]]:
        """Per cell of every window and slice set of both grains: the distinct units of the
        rows where `flag` holds and `value` is not null, and whether their values sum to
        something other than zero (rows without a unit count there, as no unit)."""
        unit = UNITS[source]
        out: dict[Key, tuple[int, bool]] = {}
        for grain in ("day", "hour"):
            sql = f"""
                SELECT period, win, slice_id,
                       count(DISTINCT CASE WHEN ({flag}) AND ({value}) IS NOT NULL
                                           THEN {unit} END),
                       coalesce(sum(CASE WHEN ({flag}) THEN TRY_CAST({value} AS DOUBLE) END), 0)
                FROM {self.rows(source, grain)}
                GROUP BY ALL
            """
            for period, win, sid, units, total in self.con.execute(sql).fetchall():
                out[(period_key(period, grain), win, sid)] = (int(units), float(total) != 0)
        return out

    def compute(self) -> dict[str, dict[Key, Cell]]:
        out: dict[str, dict[Key, Cell]] = {}
        for name in NAMES:
            o = ORACLE[name]
            if isinstance(o, Sums):
                out[name] = self.sums(name, o)
            elif isinstance(o, Distinct):
                out[name] = self.distinct(name, o)
            elif isinstance(o, Quantile):
                out[name] = self.quantile(name, o)
        for name in DERIVED:
            o = ORACLE[name]
            assert isinstance(o, Quotient)
            a, b = out[o.a], out[o.b]
            windows, sets = windows_of(name), {set_name(s) for s in slice_sets_of(name)}
            out[name] = {
                key: {
                    "slice_set": a[key]["slice_set"],
                    "value": a[key]["value"] / b[key]["value"],
                    "numerator": None,
                    "denominator": None,
                    "units": min(a[key]["units"], b[key]["units"]),
                    "ci_lower": None,
                    "ci_upper": None,
                    "ci_method": "none",
                }
                for key in a.keys() & b.keys()
                if key[1] in windows and a[key]["slice_set"] in sets
            }
        return out


def _sources(name: str) -> set[str]:
    o = ORACLE[name]
    if isinstance(o, Quotient):
        return set()
    extra = {o.num_source} if isinstance(o, Sums) and o.num_source else set()
    return {str(SPECS[name]["source"]), *extra}


def is_proportion(name: str) -> bool:
    """From the YAML: a count with a filter over an unfiltered count of the same source."""
    num, den = SPECS[name].get("numerator") or {}, SPECS[name].get("denominator") or {}
    counts = num.get("agg") == den.get("agg") == "count"
    same_source = num.get("source", SPECS[name]["source"]) == SPECS[name]["source"]
    return counts and same_source and "filter" in num and "filter" not in den


def zero_events_interval(total_x: float, per: float) -> tuple[float, float]:
    """No event seen: the exact (Garwood) Poisson interval for the count, over X."""
    return 0.0, float(chi2.ppf(0.975, 2)) / 2 / total_x * per


def delta_interval(
    y: np.ndarray, x: np.ndarray, o: Sums, proportion: bool
) -> tuple[float | None, float | None]:
    """Delta method for R = sum(y)/sum(x), y and x per unit (clustered by unit).

    With no events (or, for a proportion, only events), independent events: a proportion
    takes the Wilson interval over its rows, a count the exact Poisson interval."""
    n, total_x, per = len(y), float(x.sum()), o.per
    if n <= 1 or total_x == 0:
        return None, None
    total_y = float(y.sum())
    r = total_y / total_x
    if proportion and total_y in (0.0, total_x):
        low, high = wilson_interval(total_y, total_x)
        assert low is not None and high is not None
        return low * per, high * per
    if o.num_value == "1" and r == 0.0:
        return zero_events_interval(total_x, per)
    var = n / (n - 1) * float(np.sum((y - r * x) ** 2)) / total_x**2
    half = T(n) * math.sqrt(var)
    return (r - half) * per, (r + half) * per


def wilson_interval(successes: float, trials: float) -> tuple[float | None, float | None]:
    """Wilson score interval: the roots of (p - pi)^2 = z^2 pi (1 - pi) / n in pi."""
    if trials <= 0:
        return None, None
    p, k = successes / trials, Z * Z / trials
    a, b, c = 1 + k, -(2 * p + k), p * p
    root = math.sqrt(b * b - 4 * a * c)
    return max((-b - root) / (2 * a), 0.0), min((-b + root) / (2 * a), 1.0)


def independent_totals_interval(
    y: np.ndarray, x: np.ndarray, o: Sums
) -> tuple[float | None, float | None]:
    """Cross-source ratio: Y and X independent totals over n = max units, zeros padded;
    a count of zero events takes the exact Poisson interval."""
    n, per = max(len(y), len(x)), o.per
    total_y, total_x = float(y.sum()), float(x.sum())
    if n <= 1 or total_x == 0:
        return None, None
    if o.num_value == "1" and total_y == 0:
        return zero_events_interval(total_x, per)
    var_y = n * float(np.var(np.pad(y, (0, n - len(y))), ddof=1))
    var_x = n * float(np.var(np.pad(x, (0, n - len(x))), ddof=1))
    r = total_y / total_x
    # R^2 (Var Y / Y^2 + Var X / X^2), in the form that is defined at Y = 0.
    half = T(n) * math.sqrt((var_y + r * r * var_x) / total_x**2)
    return (r - half) * per, (r + half) * per


#: What each metric's rows show, as statistics spelled out from the YAML: (kind, source,
#: rows, value). A statistic shown by two metrics is one number (the issue's route "across
#: metrics"); `units` statistics are distinct units of the rows that carry a value.
Stat = tuple[str, str, str, str]
SHOWS: dict[str, dict[str, Stat]] = {
    "n_events": {"value": ("sum", "events", "TRUE", "1")},
    "n_bad": {"value": ("sum", "events", "is_bad", "1")},
    "total_amount": {"value": ("sum", "events", "TRUE", "amount")},
    "mean_feed_amount": {
        "value": ("sum", "events", "surface = 'feed'", "amount"),
        "den": ("sum", "events", "surface = 'feed' AND amount IS NOT NULL", "1"),
    },
    "winsorized_feed_amount": {
        "value": (
            "sum",
            "events",
            "surface = 'feed'",
            "CASE WHEN amount > 40 THEN 40.0 WHEN amount < 5 THEN 5.0 ELSE amount END",
        ),
        "den": ("sum", "events", "surface = 'feed' AND amount IS NOT NULL", "1"),
    },
    "winsorized_p90_feed_amount": {
        "value": (
            "sum",
            "events",
            "surface = 'feed'",
            "CASE WHEN amount > feed_p90_before THEN feed_p90_before ELSE amount END",
        ),
        "den": ("sum", "events", "surface = 'feed' AND amount IS NOT NULL", "1"),
    },
    "bad_share": {"value": ("sum", "events", "is_bad", "1"), "den": ("sum", "events", "TRUE", "1")},
    "bad_amount_per_100": {
        "value": ("sum", "events", "amount IS NOT NULL AND is_bad", "amount"),
        "den": ("sum", "events", "amount IS NOT NULL", "1"),
    },
    "active_users": {"value": ("units", "events", "TRUE", "1")},
    "bad_items": {"value": ("distinct", "events", "is_bad", "item_id")},
    "approx_items": {"value": ("approx", "events", "TRUE", "item_id")},
    "p90_amount": {"value": ("quantile 0.9", "events", "TRUE", "amount")},
    "p50_amount": {"value": ("quantile 0.5", "events", "TRUE", "amount")},
    "median_bad_amount": {"value": ("quantile 0.5", "events", "is_bad", "amount")},
    "n_events_hourly": {"value": ("sum", "events", "TRUE", "1")},
    "bad_share_hourly": {
        "value": ("sum", "events", "is_bad", "1"),
        "den": ("sum", "events", "TRUE", "1"),
    },
    "spam_reports_per_1k": {
        "value": ("sum", "reports", "reason = 'spam'", "1"),
        "den": ("sum", "events", "TRUE", "1"),
    },
    "ctr": {
        "value": ("sum", "impressions", "clicked", "1"),
        "den": ("sum", "impressions", "TRUE", "1"),
    },
    "bad_per_feed_event": {
        "value": ("sum", "events", "is_bad", "1"),
        "den": ("sum", "events", "surface = 'feed'", "1"),
    },
    "ctr_delta": {
        "value": ("sum", "impressions", "clicked", "1"),
        "den": ("sum", "impressions", "TRUE", "1"),
    },
}


def shown_stats(metric: str) -> list[Stat]:
    """Every statistic a row shows: its value's (and denominator's), and its units (those
    of the denominator's rows, or of the value's where there is no denominator)."""
    shows = SHOWS[metric]
    kind, source, rows, value = shows.get("den", shows["value"])
    units: Stat = ("units", source, rows, "1" if kind == "units" else value)
    return list(dict.fromkeys([shows["value"], *([shows["den"]] if "den" in shows else []), units]))


def presence_of(stat: Stat) -> tuple[str, str, str]:
    """The rows whose distinct units decide whether a statistic is small in a cell."""
    _, source, rows, value = stat
    return source, rows, value


def mandatory_suppression(
    expected: dict[str, dict[Key, Cell]], reference: Reference
) -> dict[str, set[Key]]:
    """The cells the rules require hidden, whatever else complementary suppression adds:
    a statistic with 0 < units < k in a cell (numerators too; k the largest minimum cell
    size of the metrics that show it; no units but something in it counts as small) is
    hidden in every row that shows it; a 7- or 28-day window holding a published day on
    which the statistic is hidden is hidden too; derived rows follow their inputs."""
    k: dict[Stat, int] = defaultdict(int)
    for name in BASE:
        for stat in shown_stats(name):
            k[stat] = max(k[stat], threshold(name))
    units = {p: reference.presence(*p) for p in {presence_of(x) for x in k}}
    hidden: set[tuple[Stat, Key]] = set()
    for name in BASE:
        for key, cell in expected[name].items():
            for stat in shown_stats(name):
                n, nonzero = units[presence_of(stat)].get(key, (0, False))
                something = nonzero if stat[0] == "sum" else cell["value"] not in (None, 0.0)
                if 0 < n < k[stat] or (n == 0 and stat[0] != "units" and something):
                    hidden.add((stat, key))
    days = {d.isoformat() for d in OUTPUT_DATES}
    changed = True
    while changed:
        changed = False
        for name in BASE:
            for key in expected[name]:
                period, window, sid = key
                if window not in ("7d", "28d"):
                    continue
                first = dt.date.fromisoformat(period) - dt.timedelta(days=int(window[:-1]) - 1)
                inside = {
                    (first + dt.timedelta(days=i)).isoformat() for i in range(int(window[:-1]))
                }
                for stat in shown_stats(name):
                    if stat[0] != "sum" or (stat, key) in hidden:
                        continue
                    if any((stat, (d, "1d", sid)) in hidden for d in inside & days):
                        hidden.add((stat, key))
                        changed = True
    out = {
        name: {key for key in expected[name] if any((x, key) in hidden for x in shown_stats(name))}
        for name in BASE
    }
    for name in DERIVED:
        o = ORACLE[name]
        assert isinstance(o, Quotient)
        out[name] = {k_ for k_ in expected[name] if k_ in out[o.a] or k_ in out[o.b]}
    return out


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    catalog: Catalog
    plan: Plan
    tables: dict[str, pa.Table]
    paths: dict[str, str]
    rows: dict[str, dict[Key, Cell]]  # compute_metric_rows, before suppression
    published: dict[str, dict[Key, Cell]]  # metric_values as written by run_metrics
    expected: dict[str, dict[Key, Cell]]
    suppressed: dict[str, set[Key]]  # required by the rules (complementary cells come on top)
    summary: RunSummary
    parent_gate: GateResult  # over every metric but the cross-source one
    warnings: list[str]  # what computing the passes logged at WARNING
    frame: DataFrame  # compute_metric_rows, before suppression, as Spark rows
    results: dict[str, DataFrame]  # the passes' results


@pytest.fixture(scope="module")
def run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("metric_correctness")
    rng = np.random.RandomState(20260326)
    tables = {
        "events": make_events(rng),
        "reports": make_reports(rng),
        "impressions": make_impressions(rng),
    }
    paths = {}
    for name, table in tables.items():
        paths[name] = str(root / f"{name}.parquet")
        write_parquet(table, Path(paths[name]))
    warehouse = str(root / "warehouse")
    sink = DeltaSink.for_session(spark, "delta-rs")
    read = table_reader(spark, sink, warehouse)
    catalog, problems = catalog_from_documents(
        [parse_located(catalog_yaml(paths), "defs.yaml")],
        lambda sources: SparkExpressionChecker(spark, read, sources),
    )
    assert not problems, problems
    assert catalog is not None
    plan = compile_plan(catalog)

    with caught_warnings("jobs.metrics.pass_runs") as warnings:
        results = compute_passes(spark, sink, catalog, plan, warehouse, START, END)
    frame = compute_metric_rows(catalog, plan, results)
    rows: dict[str, dict[Key, Cell]] = defaultdict(dict)
    for r in frame.collect():
        cell = r.asDict()
        period = period_key(cell["period"], grain_of(cell["metric"]))
        rows[cell["metric"]][(period, cell["window"], cell["slice_id"])] = cell
    # The parent-consistency gate over every metric but the cross-source one (see its test).
    others = [n for n in NAMES if n != "spam_reports_per_1k"]
    gate = parent_consistency(
        catalog, compile_plan(catalog, others), frame.where(F.col("metric").isin(others))
    )

    summary = run_metrics(spark, sink, catalog, plan, warehouse, START, END, run_id="t")
    published: dict[str, dict[Key, Cell]] = defaultdict(dict)
    for cell in DeltaTable(os.path.join(warehouse, METRIC_VALUES)).to_pyarrow_table().to_pylist():
        period = period_key(cell["period_start"], cell["grain"])
        published[cell["metric"]][(period, cell["window"], cell["slice_id"])] = cell

    reference = Reference(tables)
    expected = reference.compute()
    return Run(
        catalog,
        plan,
        tables,
        paths,
        dict(rows),
        dict(published),
        expected,
        mandatory_suppression(expected, reference),
        summary,
        gate,
        warnings,
        frame,
        results,
    )


@contextmanager
def caught_warnings(logger: str) -> Iterator[list[str]]:
    """The messages `logger` logs at WARNING or above inside the block."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Keep(logging.WARNING)
    logging.getLogger(logger).addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger(logger).removeHandler(handler)


def close(actual: Any, expected: Any, rel: float = 1e-9) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    return math.isclose(float(actual), float(expected), rel_tol=rel, abs_tol=1e-9)


def mismatches(
    actual: dict[Key, Cell], expected: dict[Key, Cell], columns: Iterable[str], rel: float
) -> list[str]:
    out = []
    for key in sorted(expected.keys() & actual.keys()):
        for column in columns:
            got, want = actual[key][column], expected[key][column]
            same = got == want if isinstance(want, str) else close(got, want, rel)
            if not same:
                out.append(f"{key} {column}: got {got!r}, want {want!r}")
    return out


# --- tests ---------------------------------------------------------------------------------


def test_plan_has_one_pass_per_source_for_both_grains(run: Run) -> None:
    assert [p.name for p in run.plan.passes] == ["events", "impressions", "reports"]
    assert run.plan.cross_source == ("spam_reports_per_1k",)
    assert run.plan.derived == ("amount_per_user",)
    events = run.plan.passes[0]
    assert events.windows == ("1d", "7d", "28d", "1h")
    assert events.lookback_days == 27
    assert [p.attributes for p in run.plan.passes] == [("country",)] * 3
    assert events.unit_sets == ((), ("surface",))
    # Country is constant per user and per impression, not per reporter: only the reports
    # pass ran again without it (and every cell below is still exact).
    assert len(run.warnings) == 1
    assert run.warnings[0].startswith("reports: unit attributes country are not constant")


@pytest.mark.parametrize("metric", NAMES)
def test_cells_match_independent_computation(run: Run, metric: str) -> None:
    """Same (period, window, slice) cells, and the same value, numerator, denominator, units."""
    actual, expected = run.rows[metric], run.expected[metric]
    assert sorted(actual) == sorted(expected)
    assert len(expected) >= 6
    o = ORACLE[metric]
    rel = 0.05 if isinstance(o, Distinct) and o.approx else 1e-9
    assert mismatches(actual, expected, ["value", "numerator"], rel) == []
    assert mismatches(actual, expected, ["denominator", "units", "slice_set"], 1e-9) == []
    assert sum(c["value"] is not None for c in actual.values()) >= 6


@pytest.mark.parametrize("metric", CI_METRICS)
def test_confidence_intervals_match_numpy(run: Run, metric: str) -> None:
    actual, expected = run.rows[metric], run.expected[metric]
    assert mismatches(actual, expected, ["ci_method", "ci_lower", "ci_upper"], 1e-9) == []
    bounded = [c for c in actual.values() if c["ci_lower"] is not None]
    assert len(bounded) >= 6
    if ORACLE[metric] != Sums("clicked", den_flag="TRUE", ci="wilson"):
        # (Wilson's containment has its own test below.)
        assert all(c["ci_lower"] <= c["value"] <= c["ci_upper"] for c in bounded)


def test_approx_distinct_is_close_but_exact_counts_are_exact(run: Run) -> None:
    exact = run.expected["approx_items"]
    approx = run.rows["approx_items"]
    biggest = max(exact.values(), key=lambda c: c["value"])
    assert biggest["value"] > 1000
    small = 0
    for key, cell in exact.items():
        assert abs(approx[key]["value"] - cell["value"]) <= 0.05 * cell["value"], key
        assert approx[key]["numerator"] == approx[key]["value"]
        if cell["value"] <= 100:  # a sketch is exact while it holds a list of coupons
            small += 1
            assert approx[key]["value"] == cell["value"], key
    assert small >= 6
    # The exact distinct counts, equal (not close) to the oracle's, cell by cell.
    for name in ("active_users", "bad_items"):
        assert isinstance(ORACLE[name], Distinct) and not ORACLE[name].approx  # type: ignore[union-attr]
        counts = {k: c["value"] for k, c in run.rows[name].items()}
        assert counts == {k: c["value"] for k, c in run.expected[name].items()}, name
        assert max(counts.values()) > 100


def test_dimension_columns_agree_with_slice_ids(run: Run) -> None:
    for metric, cells in run.rows.items():
        for (_, _, slice_id), cell in cells.items():
            dims = slice_dims(slice_id)
            assert cell["slice_set"] == set_name(sorted(dims)), (metric, slice_id)
            assert {d: cell[d] for d in DIMS} == {d: dims.get(d) for d in DIMS}, (metric, slice_id)


def test_null_dimensions_are_labelled_none(run: Run) -> None:
    ids = {k[2] for k in run.rows["n_events"]}
    assert "country=(none)" in ids
    assert "surface=(none)" in ids
    assert "country=(none)|surface=(none)" in ids or "country=(none)|surface=feed" in ids
    cell = run.rows["n_events"][(END.isoformat(), "28d", "country=(none)")]
    assert cell["country"] == "(none)"
    assert (
        cell["value"]
        == run.expected["n_events"][(END.isoformat(), "28d", "country=(none)")]["value"]
    )


def test_windows_cut_at_utc_midnight(run: Run) -> None:
    """ZZ has one row each side of the edges of 26 March's 28-day and 1-day windows."""
    zz = {(k[0], k[1]): c["value"] for k, c in run.rows["n_events"].items() if k[2] == "country=ZZ"}
    assert zz == {
        ("2026-03-26", "1d"): 1.0,
        ("2026-03-26", "7d"): 1.0,
        ("2026-03-26", "28d"): 2.0,
        ("2026-03-27", "1d"): 1.0,
        ("2026-03-27", "7d"): 2.0,
        ("2026-03-27", "28d"): 2.0,
        ("2026-03-28", "7d"): 2.0,
        ("2026-03-28", "28d"): 2.0,
    }


def test_empty_slices_have_no_row(run: Run) -> None:
    cells = run.rows["n_events"]
    # JP has rows only on 5 March: in every 28-day window, in no 1- or 7-day one.
    jp = sorted((k[0], k[1]) for k in cells if k[2] == "country=JP")
    assert jp == [(d.isoformat(), "28d") for d in OUTPUT_DATES]
    assert (END.isoformat(), "1d", "country=ZZ") not in cells
    # JP was only ever on search.
    assert not any(k[2] == "country=JP|surface=feed" for k in cells)
    # A cross-source rate has cells where either side has rows: FR has only reports, so its
    # cells have a numerator, a zero denominator, no value and no units (so are suppressed).
    rate = run.rows["spam_reports_per_1k"]
    fr = [c for k, c in rate.items() if k[2] == "country=FR"]
    assert fr and all(c["denominator"] == 0 for c in fr)
    assert any(c["numerator"] > 0 for c in fr)
    assert all(c["value"] is None and c["units"] == 0 for c in fr)
    mx = rate[(END.isoformat(), "7d", "country=MX")]
    assert mx["numerator"] == 0.0 and mx["value"] == 0.0 and mx["denominator"] > 0


def test_rolling_windows_are_exact_not_sums_of_days(run: Run) -> None:
    events = run.tables["events"].to_pylist()

    def days_back(n: int) -> set[dt.date]:
        return {END - dt.timedelta(days=i) for i in range(n)}

    week = [e for e in events if e["ts"].date() in days_back(7)]
    users_7d = len({e["user_id"] for e in week})
    per_day = sum(len({e["user_id"] for e in week if e["ts"].date() == d}) for d in days_back(7))
    assert run.rows["active_users"][(END.isoformat(), "7d", "all")]["value"] == users_7d
    assert users_7d < per_day
    month = [e["amount"] for e in events if e["ts"].date() in days_back(28)]
    p90 = float(np.quantile([a for a in month if a is not None], 0.9))
    assert math.isclose(run.rows["p90_amount"][(END.isoformat(), "28d", "all")]["value"], p90)


def test_hourly_cells_are_hours_of_the_output_dates(run: Run) -> None:
    cells = run.rows["n_events_hourly"]
    hours = {k[0] for k in cells}
    assert len(hours) >= 60
    assert all(k[1] == "1h" for k in cells)
    assert {h[:10] for h in hours} == {d.isoformat() for d in OUTPUT_DATES}
    published = run.published["n_events_hourly"]
    assert sorted(published) == sorted(cells)
    for (hour, _, _), cell in published.items():
        assert cell["grain"] == "hour"
        assert cell["date"].isoformat() == hour[:10]


@pytest.mark.parametrize("metric", NAMES)
def test_published_suppression_follows_the_rule(run: Run, metric: str) -> None:
    """Every cell the rules require hidden is hidden (complementary cells come on top), and
    hidden cells show no number."""
    published, expected = run.published[metric], run.expected[metric]
    assert sorted(published) == sorted(expected)
    got = {k for k, c in published.items() if c["suppressed"]}
    assert sorted(run.suppressed[metric] - got) == []
    numbers = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper")
    for key in got:
        assert all(published[key][c] is None for c in numbers), key
    shown = {k: c for k, c in published.items() if not c["suppressed"]}
    o = ORACLE[metric]
    rel = 0.05 if isinstance(o, Distinct) and o.approx else 1e-9
    assert mismatches(shown, expected, ["value", "units", "ci_method"], rel) == []
    assert all(c["definition_version"] and c["run_id"] == "t" for c in published.values())


NUMBER_COLUMNS = ("value", "numerator", "denominator")


def published_rows_of(run: Run, flip: set[tuple[str, Key]] | None = None) -> list[AuditRow]:
    """What the job wrote, as the audit reads it: keys, flags, and the numbers and units of
    shown rows (`flip`: rows to show instead of hide, with their computed numbers)."""
    out = []
    epoch = dt.date(1970, 1, 1)
    for metric, cells in run.published.items():
        for key, c in cells.items():
            dims = tuple(sorted(slice_dims(key[2])))
            cell = (dims, tuple(slice_dims(key[2])[d] for d in dims))
            if c["grain"] == "hour":
                start = dt.datetime.fromisoformat(key[0])
                period = int((start - dt.datetime(1970, 1, 1)).total_seconds()) // 3600
            else:
                period = (dt.date.fromisoformat(key[0]) - epoch).days
            hidden = bool(c["suppressed"]) and (metric, key) not in (flip or set())
            shown = run.rows[metric][key] if hidden is False else None
            numbers = () if shown is None else tuple(shown[n] for n in NUMBER_COLUMNS)
            out.append(
                AuditRow(
                    metric,
                    c["grain"],
                    c["window"],
                    period,
                    cell,
                    hidden,
                    None if hidden else run.rows[metric][key]["units"],
                    "v",
                    numbers=numbers,
                )
            )
    return out


def test_published_cells_hide_what_they_must_and_give_nothing_away(run: Run) -> None:
    """The published table passes the audit (whose engine matches brute force), while
    showing any cell the rules require hidden, or hiding none beyond them, does not."""
    assert audit(published_rows_of(run), run.catalog).findings == []
    required = {(m, k) for m, keys in run.suppressed.items() for k in keys}
    hidden = {(m, k) for m, cells in run.published.items() for k, c in cells.items()
              if c["suppressed"]}  # fmt: skip
    extra = hidden - required
    assert extra  # complementary suppression had work to do
    only_required = published_rows_of(run, flip=extra)
    assert audit(only_required, run.catalog).findings != []


def test_suppression_data_exercises_every_rule(run: Run) -> None:
    """The fixture has small numerators under large denominators, windows hidden for a
    hidden day, complementary cells, and derived-only suppressed cells."""
    primary = small_numerator = windows = 0
    for name in BASE:
        for key in run.suppressed[name]:
            units = run.expected[name][key]["units"]
            if units < threshold(name):
                primary += 1
            elif key[1] == "1d":
                small_numerator += 1
            else:
                windows += 1
    hidden = {(m, k) for m, cells in run.published.items() for k, c in cells.items()
              if c["suppressed"]}  # fmt: skip
    complementary = len(hidden - {(m, k) for m, keys in run.suppressed.items() for k in keys})
    inherited = [
        k
        for k in run.suppressed["amount_per_user"]
        if run.expected["amount_per_user"][k]["units"] >= MIN_CELL
    ]
    assert primary >= 10
    assert small_numerator >= 3
    assert windows >= 3
    assert complementary >= 3
    assert inherited
    # The per-metric threshold of 2 applies to the hourly count alone ([country] hours),
    # not where the hourly ratio shows the same count ([] hours: 5).
    hourly = run.expected["n_events_hourly"]
    assert any(2 <= c["units"] < MIN_CELL for c in hourly.values())


def test_suppression_that_has_not_settled_stops_the_run(run: Run) -> None:
    """One audit finds recoverable cells here and hides more, so one audit cannot show that
    suppression settled: the run must stop rather than publish cells that may be
    recoverable."""
    tight = replace(run.catalog, settings=replace(run.catalog.settings, suppression_rounds=1))
    with pytest.raises(PublishGateError, match=r"raise settings\.suppression_rounds") as caught:
        suppress(tight, run.plan, run.frame, run.results)
    assert [r.name for r in caught.value.results] == ["complementary suppression settled"]
    assert "nothing was written" in str(caught.value)
    # The settings' rounds are enough for this fixture (its suppression test shows the cells).
    assert run.catalog.settings.suppression_rounds > 1


def test_run_summary_counts_rows_and_suppressed_cells(run: Run) -> None:
    assert run.summary.rows == sum(len(c) for c in run.expected.values())
    hidden = sum(c["suppressed"] for cells in run.published.values() for c in cells.values())
    assert run.summary.suppressed == hidden
    assert run.summary.suppressed >= sum(len(s) for s in run.suppressed.values())
    assert run.summary.dates == tuple(OUTPUT_DATES)
    assert set(run.summary.metrics) == set(NAMES)


def test_publish_gates(run: Run) -> None:
    gates = {g.name: g for g in run.summary.gates}
    for name in ("unique keys", "no null keys", "0 <= numerator <= denominator"):
        assert gates[name].passed, gates[name]
    assert gates["source fresh: events"].passed
    # Children add up to parents for every metric, the cross-source rate included (its FR
    # cells carry FR's reports although FR has no events).
    assert run.parent_gate.passed, run.parent_gate
    assert gates["slices consistent with parent totals"].passed


def test_ratio_of_distinct_counts(spark: SparkSession, run: Run, tmp_path: Path) -> None:
    """Share of users with a bad event (exact) and of items with one (HLL), overall."""
    source = {
        "path": run.paths["events"],
        "format": "parquet",
        "time_column": "ts",
        "unit": "user_id",
        "dimensions": ["country"],
    }
    common = {"description": "d", "owner": "o", "source": "events", "type": "ratio"}
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 1, "gates": {"on_failure": "warn"}},
            "dimensions": ["country"],
            "sources": {"events": source},
            "metrics": [
                {
                    **common,
                    "name": "bad_user_share",
                    "numerator": {"agg": "distinct_count", "value": "user_id", "filter": "is_bad"},
                    "denominator": {"agg": "distinct_count", "value": "user_id"},
                    "windows": W2,
                },
                {
                    **common,
                    "name": "bad_item_share",
                    "numerator": {
                        "agg": "approx_distinct_count",
                        "value": "item_id",
                        "filter": "is_bad",
                    },
                    "denominator": {"agg": "approx_distinct_count", "value": "item_id"},
                    "windows": ["1d"],
                },
                {
                    # Another sketch in more windows and slice sets than the shares': the
                    # sketch cells are finer in 1d and the shares' sketches unread in 7d.
                    **common,
                    "name": "approx_users",
                    "type": "approx_distinct_count",
                    "value": "user_id",
                    "windows": W2,
                    "slices": GEO,
                },
            ],
        }
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    plan = compile_plan(catalog)
    sink = DeltaSink.for_session(spark, "delta-rs")
    warehouse = str(tmp_path)
    results = compute_passes(spark, sink, catalog, plan, warehouse, START, END)
    got = {
        (r["metric"], period_key(r["period"]), r["window"]): r.asDict()
        for r in compute_metric_rows(catalog, plan, results).collect()
        if r["slice_set"] == "overall"
    }
    by_country = {
        (r["metric"], period_key(r["period"]), r["window"], r["country"]): r.asDict()
        for r in compute_metric_rows(catalog, plan, results).collect()
        if r["metric"] == "approx_users"
        and (r["country"] is not None or r["slice_set"] == "overall")
    }
    events = run.tables["events"].to_pylist()
    for day in OUTPUT_DATES:
        for metric, column, windows in (
            ("bad_user_share", "user_id", W2),
            ("bad_item_share", "item_id", ["1d"]),
        ):
            for window in windows:
                first = day - dt.timedelta(days=int(window[:-1]) - 1)
                rows = [e for e in events if first <= e["ts"].date() <= day]
                bad = {e[column] for e in rows if e["is_bad"] and e[column] is not None}
                every = {e[column] for e in rows if e[column] is not None}
                cell = got[(metric, day.isoformat(), window)]
                rel = 1e-9 if metric == "bad_user_share" else 0.05
                assert math.isclose(cell["numerator"], len(bad), rel_tol=rel)
                assert math.isclose(cell["denominator"], len(every), rel_tol=rel)
                assert math.isclose(cell["value"], len(bad) / len(every), rel_tol=2 * rel)
                # Units of the denominator: users with a row that carries its value.
                carriers = {e["user_id"] for e in rows if e[column] is not None}
                assert cell["units"] == len(carriers - {None})
        for window in W2:
            first = day - dt.timedelta(days=int(window[:-1]) - 1)
            rows = [e for e in events if first <= e["ts"].date() <= day]
            for country in (None, *sorted({e["country"] for e in rows if e["country"]})):
                users = {
                    e["user_id"]
                    for e in rows
                    if e["user_id"] is not None and country in (None, e["country"])
                }
                key = ("approx_users", day.isoformat(), window, country)
                cell = by_country[key]
                assert math.isclose(cell["value"], len(users), rel_tol=0.05), key
                assert cell["ci_method"] == "none"


@pytest.mark.parametrize(
    "metric", ["bad_share", "ctr_delta", "bad_per_feed_event", "spam_reports_per_1k"]
)
def test_intervals_of_cells_without_spread_are_not_points(run: Run, metric: str) -> None:
    """Zero events (or, for a proportion, all of them) leave the delta method nothing to
    estimate from; such cells still get an interval of positive width around the value."""
    o = ORACLE[metric]
    assert isinstance(o, Sums)
    flat = [
        c
        for c in run.rows[metric].values()
        if c["ci_lower"] is not None
        and c["denominator"]
        and (c["numerator"] == 0 or (is_proportion(metric) and c["numerator"] == c["denominator"]))
    ]
    assert flat  # the fixture has such cells
    assert all(c["ci_lower"] <= c["value"] <= c["ci_upper"] for c in flat)
    assert all(c["ci_upper"] > c["ci_lower"] for c in flat)


def test_wilson_interval_contains_its_estimate(run: Run) -> None:
    cells = run.rows["ctr"].values()
    zero = [c for c in cells if c["numerator"] == 0]
    assert zero  # the fixture has zero-success cells
    assert all(c["ci_lower"] == 0.0 for c in zero)
    assert all(c["ci_lower"] <= c["value"] <= c["ci_upper"] for c in cells)


def tiny_rows(
    spark: SparkSession, tmp_path: Path, metrics: list[dict[str, Any]]
) -> dict[str, Cell]:
    """Metric -> its overall 1d cell on START, over six rows of which two have no unit."""
    table = pa.table(
        {
            "ts": pa.array([dt.datetime(2026, 3, 26, h) for h in range(6)], pa.timestamp("us")),
            "user_id": pa.array([1, 2, None, None, 3, 3], pa.int64()),
            "is_bad": pa.array([True, False, True, False, False, False], pa.bool_()),
        }
    )
    write_parquet(table, tmp_path / "tiny.parquet")
    source = {
        "path": str(tmp_path / "tiny.parquet"),
        "format": "parquet",
        "time_column": "ts",
        "unit": "user_id",
    }
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 1},
            "sources": {"tiny": source},
            "metrics": [{"description": "d", "owner": "o", **m} for m in metrics],
        }
    )
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    plan = compile_plan(catalog)
    sink = DeltaSink.for_session(spark, "delta-rs")
    results = compute_passes(spark, sink, catalog, plan, str(tmp_path), START, START)
    return {r["metric"]: r.asDict() for r in compute_metric_rows(catalog, plan, results).collect()}


def test_rows_without_a_unit_add_no_unit(spark: SparkSession, tmp_path: Path) -> None:
    got = tiny_rows(
        spark,
        tmp_path,
        [
            {"name": "n", "source": "tiny", "type": "count"},
            {
                "name": "share",
                "source": "tiny",
                "type": "ratio",
                "numerator": {"agg": "count", "filter": "is_bad"},
                "denominator": {"agg": "count"},
            },
        ],
    )
    assert got["n"]["value"] == 6.0
    assert got["share"]["value"] == 2 / 6
    # COUNT(DISTINCT user_id) is 3: users 1, 2 and 3.
    assert (got["n"]["units"], got["share"]["units"]) == (3, 3)


def test_derived_division_by_zero_is_null(spark: SparkSession, tmp_path: Path) -> None:
    got = tiny_rows(
        spark,
        tmp_path,
        [
            {"name": "n", "source": "tiny", "type": "count"},
            {
                "name": "n_bad_3",
                "source": "tiny",
                "type": "count",
                "filter": "is_bad AND user_id = 3",
            },
            {"name": "per_bad", "type": "derived", "expression": "try_divide(n, n_bad_3)"},
        ],
    )
    assert got["n_bad_3"]["value"] == 0.0
    assert got["per_bad"]["value"] is None


def test_derived_division_by_a_metric_must_use_try_divide() -> None:
    """Plain division fails the whole run when a divisor is 0 (ANSI mode): refused up front."""
    text = yaml.safe_dump(
        {
            "sources": {"t": {"path": "/x.parquet", "format": "parquet", "time_column": "ts",
                              "unit": "u"}},
            "metrics": [
                {"name": "a", "description": "d", "owner": "o", "source": "t", "type": "count"},
                {"name": "b", "description": "d", "owner": "o", "type": "derived",
                 "expression": "a / (a - 1)"},
                {"name": "c", "description": "d", "owner": "o", "type": "derived",
                 "expression": "a / 1000.0"},
            ],
        }
    )  # fmt: skip
    _, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert [p.code for p in problems] == ["E037"]
    assert "use try_divide(a, b)" in str(problems[0])


def test_units_count_only_rows_that_carry_the_value(spark: SparkSession, tmp_path: Path) -> None:
    """One unit's value among 19 units with nulls must not pass a minimum cell size of 10."""
    table = pa.table(
        {
            "ts": pa.array([dt.datetime(2026, 3, 26, 12)] * 20, pa.timestamp("us")),
            "user_id": pa.array(range(1, 21), pa.int64()),
            "salary": pa.array([123456.0] + [None] * 19, pa.float64()),
        }
    )
    write_parquet(table, tmp_path / "pay.parquet")
    source = {"path": str(tmp_path / "pay.parquet"), "format": "parquet", "time_column": "ts",
              "unit": "user_id"}  # fmt: skip
    common = {"description": "d", "owner": "o", "source": "pay", "value": "salary"}
    text = yaml.safe_dump(
        {
            "settings": {"min_cell_size": 10, "gates": {"on_failure": "warn"}},
            "sources": {"pay": source},
            "metrics": [
                {**common, "name": "p50", "type": "quantile", "quantile": 0.5},
                {**common, "name": "total", "type": "sum"},
                {**common, "name": "average", "type": "mean"},
                {**common, "name": "payers", "type": "distinct_count", "value": "CASE WHEN "
                 "salary IS NOT NULL THEN user_id END"},
            ],
        }
    )  # fmt: skip
    catalog, problems = catalog_from_documents([parse_located(text, "defs.yaml")])
    assert not problems and catalog is not None
    plan = compile_plan(catalog)
    sink = DeltaSink.for_session(spark, "delta-rs")
    results = compute_passes(spark, sink, catalog, plan, str(tmp_path), START, START)
    rows = compute_metric_rows(catalog, plan, results)
    got = {r["metric"]: r.asDict() for r in suppress(catalog, plan, rows, results).collect()}
    assert {m: got[m]["units"] for m in got} == {m: None for m in got}
    assert all(got[m]["suppressed"] and got[m]["value"] is None for m in got)
    before = {r["metric"]: r["units"] for r in rows.collect()}
    assert before == {"p50": 1, "total": 1, "average": 1, "payers": 1}

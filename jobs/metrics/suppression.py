"""Small-cell suppression decided over the whole publication (see docs/privacy.md).

Spark computes every part's distinct units per cell (the passes) and the metric rows; the
decision runs on the driver on cell metadata only (`jobs.privacy.protect`: keys, units per
statistic, flags; one small row per published cell, grouped by statistic): primary
suppression per statistic and cell (numerators too, the same pattern in every metric that
shows a statistic), the time rules (a window holding a hidden day is hidden; hours of a day),
complementary suppression in every slice relation, then the exact audit over the run's rows
and what the table already publishes, hiding one more cell on each route it finds until it
finds none. Derived metrics are suppressed where an input is. Suppressed rows publish no
numbers. If the audit still finds a recoverable cell after `settings.suppression_rounds`
audits, or finds one that only already-published cells give away, the run stops: nothing is
written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics.definitions import Catalog, Part, QuantilePart
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.pass_columns import stat
from jobs.metrics.planner import Plan, slice_set_name
from jobs.privacy.protect import protect
from jobs.privacy.protect_state import Decision, RowKey, StatCell, UnitCounts
from jobs.privacy.publication import Row
from jobs.privacy.reading import collect_rows
from jobs.privacy.stats import part_stat, units_stat

log = logging.getLogger(__name__)
NUMBERS = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper")
GATE_NAME = "no suppressed cell is recoverable"


def sibling_links(catalog: Catalog, names: list[str]) -> list[str]:
    """'metric|slice set|dimension' for each published child set whose parent is published
    (the parent-consistency gate's pairs)."""
    links = []
    for name in names:
        sets = catalog.metrics[name].slices
        for child in sets:
            for dim in child:
                parent = tuple(d for d in child if d != dim)
                if parent in sets:
                    links.append(f"{name}|{slice_set_name(child)}|{dim}")
    return links


def _period(grain: Column) -> Column:
    """Days (daily) or hours (hourly) since 1970-01-01, from a `period` timestamp."""
    hours = F.floor(F.unix_timestamp(F.col("period")) / 3600).cast("long")
    days = F.datediff(F.to_date(F.col("period")), F.lit(dt.date(1970, 1, 1))).cast("long")
    return F.when(grain == "hour", hours).otherwise(days)


def _grain() -> Column:
    return F.when(F.col("window") == "1h", F.lit("hour")).otherwise(F.lit("day"))


def run_rows(
    catalog: Catalog, metrics: DataFrame
) -> tuple[list[Row], dict[RowKey, tuple[str, str]], set[RowKey]]:
    """The run's metric rows (before suppression) as audit metadata, each row's
    (slice_set, slice_id) as the passes named them, and the rows whose value is null or 0."""
    frame = metrics.select(
        "metric",
        _grain().alias("grain"),
        "window",
        _period(_grain()).alias("period"),
        "slice_set",
        "slice_id",
        *[F.col(d).cast("string").alias(d) for d in catalog.dimensions],
        F.lit(False).alias("suppressed"),
        F.col("units").cast("long").alias("units"),
        F.lit("").alias("version"),
        *[F.col(c).cast("double").alias(c) for c in ("value", "numerator", "denominator")],
        (F.coalesce(F.col("value"), F.lit(0.0)) == 0).alias("empty"),
    )
    table = frame.toArrow()
    rows = collect_rows(frame, table=table)
    names = dict(
        zip(
            [r.key for r in rows],
            zip(
                table.column("slice_set").to_pylist(),
                table.column("slice_id").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    empty = {r.key for r, e in zip(rows, table.column("empty").to_pylist(), strict=True) if e}
    return rows, names, empty


def unit_counts(
    catalog: Catalog, plan: Plan, results: dict[str, DataFrame]
) -> tuple[UnitCounts, set[StatCell]]:
    """Distinct units per (units statistic, grain, window, period, slice cell), from every
    part's units in the pass results, and the cells where an additive part's total is not
    zero (rows without a unit count there, but as no unit): one small row per cell and part."""
    parts: dict[str, Part | QuantilePart] = {}
    for p in plan.passes:
        every: list[Part | QuantilePart] = [*p.parts, *p.quantile_parts]
        for part in every:
            parts[part.key] = part
    units_out: UnitCounts = {}
    nonzero: set[StatCell] = set()
    for p in plan.passes:
        result = results[p.name]
        columns = set(result.columns)
        keys = [*[x.key for x in p.parts], *[q.key for q in p.quantile_parts]]
        present = [k for k in keys if stat(k, "units") in columns]
        if not present:
            continue
        dims = [d for d in catalog.dimensions if d in columns]

        long = result.select(
            _grain().alias("grain"),
            "window",
            _period(_grain()).alias("period"),
            "slice_set",
            *[F.col(d).cast("string").alias(d) for d in dims],
            F.explode(
                F.array(
                    *[
                        F.struct(
                            F.lit(k).alias("k"),
                            F.col(stat(k, "units")).cast("long").alias("u"),
                            (_total(parts[k], columns) != 0).alias("nz"),
                        )
                        for k in present
                    ]
                )
            ).alias("x"),
        ).select("*", "x.k", "x.u", "x.nz")
        for r in long.drop("x").toArrow().to_pylist():
            names = (
                ()
                if r["slice_set"] in ("overall", "", None)
                else tuple(sorted(r["slice_set"].split(",")))
            )
            cell = (names, tuple(str(r[d]) for d in names))
            part = parts[r["k"]]
            period = int(r["period"])
            key = (units_stat(catalog, part), r["grain"], r["window"], period, cell)
            units_out[key] = max(units_out.get(key, 0), int(r["u"] or 0))
            if r["nz"]:
                assert isinstance(part, Part)
                nonzero.add((part_stat(catalog, part), r["grain"], r["window"], period, cell))
    return units_out, nonzero


def _total(part: Part | QuantilePart, columns: set[str]) -> Column:
    """An additive part's total in a pass result (null for other parts)."""
    name = stat(part.key, "sum")
    if isinstance(part, Part) and part.additive and name in columns:
        return F.col(name)
    return F.lit(None).cast("double")


def suppress(
    catalog: Catalog,
    plan: Plan,
    metrics: DataFrame,
    results: dict[str, DataFrame],
    published: Sequence[Row] = (),
) -> DataFrame:
    """`metrics` with a `suppressed` flag and no numbers in suppressed cells; `published`
    is what the table already shows (see `jobs.privacy.gate.published_rows`)."""
    rows, names, empty = run_rows(catalog, metrics)
    units, nonzero = unit_counts(catalog, plan, results)
    rounds = catalog.settings.suppression_rounds
    decision = protect(
        rows, units, published, catalog, nonzero=nonzero, empty=empty, max_rounds=rounds
    )
    _stop_if_unresolved(decision, rounds)
    keys = [(k[0], k[2], k[3], *names[k]) for k in decision.suppressed]
    spark = metrics.sparkSession
    schema = "metric string, window string, __p long, slice_set string, slice_id string"
    hidden = spark.createDataFrame(keys or [], schema).withColumn("__hidden", F.lit(True))
    keyed = metrics.withColumn("__p", _period(_grain()))
    flagged = (
        keyed.join(
            F.broadcast(hidden), ["metric", "window", "__p", "slice_set", "slice_id"], "left"
        )
        .withColumn("suppressed", F.coalesce(F.col("__hidden"), F.lit(False)))
        .drop("__hidden", "__p")
    )
    log.info("suppression: %s", decision.describe())
    return flagged.select(
        *[c for c in flagged.columns if c not in NUMBERS],
        *[F.when(~F.col("suppressed"), F.col(c)).alias(c) for c in NUMBERS],
    )


def _stop_if_unresolved(decision: Decision, rounds: int) -> None:
    if not decision.unresolved:
        return
    examples = tuple(f.describe() for f in decision.unresolved[:5])
    if decision.audits >= rounds:
        raise PublishGateError(
            [
                GateResult(
                    "complementary suppression settled",
                    False,
                    f"after {rounds} audits (settings.suppression_rounds) "
                    f"{len(decision.unresolved):,} suppressed cells are still recoverable; "
                    "raise settings.suppression_rounds in the catalog's settings",
                    examples,
                )
            ]
        )
    raise PublishGateError(
        [
            GateResult(
                GATE_NAME,
                False,
                f"{len(decision.unresolved):,} suppressed cells are recoverable from cells "
                "already published, which this run cannot hide (see docs/privacy.md)",
                examples,
            )
        ]
    )

"""Small-cell suppression with complementary suppression, computed in Spark.

Primary: a cell whose distinct units are below the metric's minimum cell size is
suppressed. Complementary: within a group of sibling cells (same metric, period, window,
slice set and values of all dimensions but one, whose parent slice set is also published),
a lone suppressed cell could be recovered as parent minus siblings, so the smallest
unsuppressed sibling is suppressed too; repeated until a round changes nothing (if that
takes more than `settings.suppression_rounds`, the run stops: nothing is written). Derived
metrics are suppressed wherever one of their inputs is. Suppressed cells publish no numbers.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.metrics.definitions import Catalog
from jobs.metrics.gate_result import GateResult, PublishGateError
from jobs.metrics.planner import Plan, slice_set_name

log = logging.getLogger(__name__)
NUMBERS = ("value", "numerator", "denominator", "units", "ci_lower", "ci_upper")


def _threshold(catalog: Catalog, names: list[str]) -> Column:
    expr = F.lit(catalog.settings.min_cell_size)
    for name in names:
        own = catalog.metrics[name].min_cell_size
        if own is not None:
            expr = F.when(F.col("metric") == name, F.lit(own)).otherwise(expr)
    return expr


def sibling_links(catalog: Catalog, names: list[str]) -> list[str]:
    """'metric|slice set|dimension' for each published child set whose parent is published."""
    links = []
    for name in names:
        sets = catalog.metrics[name].slices
        for child in sets:
            for dim in child:
                parent = tuple(d for d in child if d != dim)
                if parent in sets:
                    links.append(f"{name}|{slice_set_name(child)}|{dim}")
    return links


def _round(df: DataFrame, dims: tuple[str, ...], links: list[str]) -> DataFrame:
    """One round of complementary suppression over every dimension."""
    link_array = F.array(*[F.lit(x) for x in links]) if links else F.array().cast("array<string>")
    for dim in dims:
        others = [d for d in dims if d != dim]
        linked = F.array_contains(link_array, F.concat_ws("|", "metric", "slice_set", F.lit(dim)))
        group = F.when(
            linked & F.col(dim).isNotNull(), F.to_json(F.struct(*[F.col(d) for d in others]))
        )
        keyed = df.withColumn("__g", group)
        siblings = Window.partitionBy("metric", "period", "window", "slice_set", "__g")
        ranked = keyed.withColumn(
            "__n_sup", F.sum(F.col("suppressed").cast("int")).over(siblings)
        ).withColumn(
            "__rank",
            F.row_number().over(
                siblings.orderBy(F.col("suppressed"), F.col("units"), F.col("slice_id"))
            ),
        )
        # Unsuppressed cells sort first (suppressed=false), smallest units first: rank 1.
        extra = (
            F.col("__g").isNotNull()
            & (F.col("__n_sup") == 1)
            & (F.col("__rank") == 1)
            & ~F.col("suppressed")
        )
        df = ranked.withColumn("suppressed", F.col("suppressed") | extra).drop(
            "__g", "__n_sup", "__rank"
        )
    return df


def suppress(catalog: Catalog, plan: Plan, metrics: DataFrame) -> DataFrame:
    """`metrics` with a `suppressed` flag and no numbers in suppressed cells."""
    base_names = [n for n in plan.metrics if catalog.metrics[n].type != "derived"]
    dims = catalog.dimensions
    base = metrics.where(~F.col("metric").isin(list(plan.derived)))
    flagged = base.withColumn(
        "suppressed", F.coalesce(F.col("units"), F.lit(0)) < _threshold(catalog, base_names)
    )
    links = sibling_links(catalog, base_names)
    flagged = flagged.localCheckpoint()
    before = flagged.where("suppressed").count()
    log.info("primary suppression: %d cells under the minimum cell size", before)
    rounds = catalog.settings.suppression_rounds
    for i in range(rounds):
        flagged = _round(flagged, dims, links).localCheckpoint()
        count = flagged.where("suppressed").count()
        log.info("suppression round %d: %d suppressed cells", i + 1, count)
        if count == before:
            break
        before = count
    else:
        raise PublishGateError([_unsettled(rounds, before)])
    result = flagged
    if plan.derived:
        result = result.unionByName(_derived_suppression(catalog, plan, metrics, flagged))
    return result.select(
        *[c for c in result.columns if c not in NUMBERS],
        *[F.when(~F.col("suppressed"), F.col(c)).alias(c) for c in NUMBERS],
    )


def _unsettled(rounds: int, suppressed: int) -> GateResult:
    """The report for complementary suppression still adding cells after its last round.

    Publishing then could leave a lone suppressed cell recoverable from its parent and
    siblings, so this stops the run whatever `settings.gates.on_failure` says."""
    return GateResult(
        "complementary suppression settled",
        False,
        f"round {rounds} of settings.suppression_rounds ({rounds}) still suppressed more cells "
        f"({suppressed} in all), so some suppressed cells could be recoverable; raise "
        "settings.suppression_rounds in the catalog's settings",
    )


def _derived_suppression(
    catalog: Catalog, plan: Plan, metrics: DataFrame, flagged: DataFrame
) -> DataFrame:
    """Derived rows, suppressed where any input is (inputs are processed in order)."""
    keys = ["period", "window", "slice_id"]
    flags = flagged.select("metric", *keys, "suppressed")
    out = None
    for name in plan.derived:
        rows = metrics.where(F.col("metric") == name)
        deps = catalog.metrics[name].depends_on
        dep_flags = (
            flags.where(F.col("metric").isin(list(deps)))
            .groupBy(*keys)
            .agg(F.max(F.col("suppressed").cast("int")).alias("__any"))
        )
        own = F.coalesce(F.col("units"), F.lit(0)) < _threshold(catalog, [name])
        marked = (
            rows.join(dep_flags, on=keys, how="left")
            .withColumn("suppressed", own | (F.coalesce(F.col("__any"), F.lit(1)) == 1))
            .drop("__any")
        )
        flags = flags.unionByName(marked.select("metric", *keys, "suppressed"))
        out = marked if out is None else out.unionByName(marked)
    assert out is not None
    return out

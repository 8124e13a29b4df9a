"""A user's own unit-level table (`experiment --units PATH`): read with every row's location,
checked in Spark, and turned into the unit frame that `analysis.analyse` reads.

Columns: `unit`, `variant`, `metric`, `numerator` and optionally `denominator` (absent: 1 per
unit, a mean), `covariate` and `covariate_denominator` (absent: 1 when there is a
covariate). Every cell of a column the file has must be filled in: an empty cell is an
error, never 0. Values must be finite numbers below 1e12 in magnitude (the exact DECIMAL
moments' range); denominators must not be negative, and each arm's denominators must add
up to more than 0. A unit's denominator may be 0: an exposed unit without the
denominator's events (no views, for a rate per view) is part of the experiment, as in the
engine's own `experiment_units`; it adds nothing to the ratio or to any bootstrap
replicate, but it counts as a unit (the sample-ratio test, the covariate's slope).
(unit, metric) must be unique, a unit in one variant only, the control must have units
and at least one other variant too.

Every problem is found by one Spark aggregation over the whole table (nothing but counts
and, when something is wrong, the first offending rows reach the driver) and reported at
once as a `UnitTableError` (exit status 2): counts per column and problem, and up to
`SHOWN` examples with file, line (or row), column and value.

Where a row is:

- CSV: the file and the **line**, the 1-based physical line number in the file as an
  editor shows it (the header is line 1; blank lines count). The file is read with Spark's
  text reader, one record per line (as Spark's CSV reader reads it without `multiLine`),
  with each line's split (`_metadata.file_block_start`) and its position in the task
  (`monotonically_increasing_id`, whose low 33 bits count rows within a partition, in the
  order they are read, and so within a split). The line count of every split (one small
  row per split) then gives each split's first line: line = lines in the file's earlier
  splits + (position - the split's first position) + 1. Each line is parsed by
  `from_csv` with the header's column names, as text.
- Parquet: the file and the **row**, 1-based in that file's stored order
  (`_metadata.row_index + 1`).
- Delta: as Parquet, for an unpartitioned table read through the delta-rs backend (the
  log's live files); otherwise rows are named by unit and metric only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StringType

from jobs.core.located_yaml import did_you_mean
from jobs.experiments.unit_file_read import (
    FILE,
    POS,
    SPLIT,
    LocatedTable,
    Locator,
    UnitTableError,
    all_of,
    shown_path,
)

log = logging.getLogger(__name__)

REQUIRED = ("unit", "variant", "metric", "numerator")

OPTIONAL = ("denominator", "covariate", "covariate_denominator")

KEYS = ("unit", "variant", "metric")

VALUES = ("numerator", "denominator", "covariate", "covariate_denominator")

#: Per-unit values must stay below this in magnitude (aggregates.EXACT: decimal(22,10)).
LIMIT = 1e12

#: Offending rows shown in the error (all are counted).
SHOWN = 20


@dataclass(frozen=True)
class Check:
    """One problem a column's cell can have: a code, a condition on the row, a message."""

    column: str
    code: str
    condition: Column
    explain: str


def _text(column: Column) -> Column:
    return F.trim(column.cast("string"))


def value_checks(table: LocatedTable, present: dict[str, str]) -> list[Check]:
    """Every check of every column the file has, in the order a cell is judged (a cell
    gets the first problem it has)."""
    types = {f.name: f.dataType for f in table.rows.schema.fields}
    checks: list[Check] = []
    for name in KEYS:
        raw = F.col(f"`{present[name]}`")
        checks.append(Check(name, "empty", raw.isNull() | (_text(raw) == ""), "is empty"))
    for name in VALUES:
        if name not in present:
            continue
        column = present[name]
        raw = F.col(f"`{column}`")
        data_type = types[column]
        if not isinstance(data_type, NumericType | StringType):
            raise UnitTableError(
                f"{table.path}: column '{column}' holds {data_type.simpleString()} values; "
                "expected numbers"
            )
        value = raw.try_cast("double")
        empty = raw.isNull() | (_text(raw) == "")
        checks.append(
            Check(name, "empty", empty, "is empty (an empty cell is not 0: write 0 if you mean 0)")
        )
        checks.append(Check(name, "not a number", ~empty & value.isNull(), "is not a number"))
        not_finite = F.isnan(value) | (F.abs(value) == F.lit(math.inf))
        checks.append(Check(name, "not finite", not_finite, "is not a finite number"))
        checks.append(
            Check(name, "too large", F.abs(value) >= F.lit(LIMIT), f"is not below {LIMIT:g}")
        )
        if name in ("denominator", "covariate_denominator"):
            checks.append(
                Check(name, "negative", value < 0, "is negative (a denominator must be >= 0)")
            )
    return checks


def _first_problem(checks: Sequence[Check], column: str) -> Column:
    """The code of the first check of `column` that the row fails (null: none)."""
    out: Column | None = None
    for check in (c for c in checks if c.column == column):
        out = (
            F.when(check.condition, F.lit(check.code))
            if out is None
            else out.when(check.condition, F.lit(check.code))
        )
    return out if out is not None else F.lit(None).cast("string")


def _split_summary(
    flagged: DataFrame, checks: Sequence[Check], data: Column
) -> tuple[list[Row], dict[tuple[str, str], int]]:
    """One aggregation over every line: per split its line count and first position, the
    CSV header's whereabouts, fields beyond the header, and the offending cells per
    (column, code); and those counts over all splits."""
    pairs = [(c.column, c.code) for c in checks]
    aggs = [
        F.count(F.lit(1)).alias("lines"),
        F.min(POS).alias("first"),
        F.min_by("__header", F.col(POS)).alias("first_is_header"),
        F.sum(F.col("__header").cast("long")).alias("headers"),
        F.max(F.when(F.col("__header"), F.col(POS))).alias("last_header"),
        F.sum((data & F.col("__extra").isNotNull()).cast("long")).alias("extra"),
        *[
            F.sum((F.col(f"__p_{col}") == F.lit(code)).cast("long")).alias(f"n{i}")
            for i, (col, code) in enumerate(pairs)
        ],
    ]
    splits = flagged.groupBy(FILE, SPLIT).agg(*aggs).collect()
    counts = {pair: sum(int(r[f"n{i}"] or 0) for r in splits) for i, pair in enumerate(pairs)}
    return splits, counts


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _layout_problems(
    table: LocatedTable, locator: Locator, splits: Sequence[Row], data: DataFrame
) -> list[str]:
    """A CSV's header not on line 1 or repeated, and lines with more fields than it."""
    if table.kind != "csv":
        return []
    out = []
    for row in splits:
        shown = shown_path(str(row[FILE]))
        if int(row[SPLIT]) == 0 and not row["first_is_header"]:
            out.append(f"{shown}:1: expected the header ({', '.join(table.columns)})")
        if int(row["headers"] or 0) > 1:
            line = locator.where(row[FILE], row[SPLIT], row["last_header"])
            out.append(f"{line}: the header is repeated")
    extra = sum(int(r["extra"] or 0) for r in splits)
    if extra:
        first = data.where(F.col("__extra").isNotNull()).orderBy(FILE, SPLIT, POS).first()
        if first is not None:
            out.append(
                f"{locator.of(first)}: more fields than the header's {len(table.columns)}"
                + (f" ({extra:,} lines like it)" if extra > 1 else "")
            )
    return out


def _describe(locator: Locator, row: Row, present: dict[str, str]) -> str:
    where = locator.of(row)
    if where:
        return where
    unit, metric = row[present["unit"]], row[present["metric"]]
    return f"row with unit {unit!r}, metric {metric!r}"


def checked_units(
    table: LocatedTable, experiment_id: str, control: str
) -> tuple[DataFrame, dict[str, int]]:
    """The unit frame (`units.UNIT_COLUMNS` but `unit_key`'s source rows cached) and units
    per variant; or a `UnitTableError` listing every problem of the table."""
    present = {c.lower(): c for c in table.columns}
    for needed in REQUIRED:
        if needed not in present:
            hint = did_you_mean(needed, table.columns)
            raise UnitTableError(
                f"{table.path}: column '{needed}' is missing (columns: "
                f"{', '.join(table.columns)})" + (f"; {hint}" if hint else "")
            )
    if "covariate_denominator" in present and "covariate" not in present:
        raise UnitTableError(
            f"{table.path}: column '{present['covariate_denominator']}' needs a 'covariate' "
            "column beside it"
        )
    checks = value_checks(table, present)
    names = [n for n in (*KEYS, *VALUES) if n in present]
    is_data = ~F.col("__header") & ~F.col("__blank")
    flagged = table.rows.select(
        "*", *[F.when(is_data, _first_problem(checks, n)).alias(f"__p_{n}") for n in names]
    ).cache()
    splits, counts = _split_summary(flagged, checks, is_data)
    locator = Locator.of_splits(table.kind, splits)
    data = flagged.where(is_data)
    problems = _layout_problems(table, locator, splits, data)
    total = sum(counts.values())
    if total:
        bad = F.lit(False)
        for n in names:
            bad = bad | F.col(f"__p_{n}").isNotNull()
        messages = {(c.column, c.code): c.explain for c in checks}
        for row in data.where(bad).orderBy(FILE, SPLIT, POS).limit(SHOWN).collect():
            for n in names:
                code = row[f"__p_{n}"]
                if code is not None:
                    value = "" if code == "empty" else f" ({row[present[n]]!r})"
                    problems.append(
                        f"{_describe(locator, row, present)}: column '{present[n]}'{value} "
                        f"{messages[(n, code)]}"
                    )
        listed = ", ".join(f"{present[c]} {code}: {n:,}" for (c, code), n in counts.items() if n)
        problems.append(
            f"{_plural(total, 'bad cell')} in all"
            + (f" (the first {SHOWN} rows shown)" if total > SHOWN else "")
            + f": {listed}"
        )
    keyed = data.where(all_of([F.col(f"__p_{n}").isNull() for n in KEYS]))
    problems += _key_problems(locator, keyed, present)
    per_variant = {
        str(r[0]): int(r[1])
        for r in keyed.groupBy(F.col(f"`{present['variant']}`").cast("string"))
        .agg(F.count_distinct(F.col(f"`{present['unit']}`").cast("string")))
        .collect()
    }
    problems += _variant_problems(per_variant, control)
    if "denominator" in present and not problems:
        problems += _empty_arms(keyed, present)
    if problems:
        flagged.unpersist()
        raise UnitTableError(
            f"{table.path}: {_plural(len(problems), 'problem')} in the unit table:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    return _unit_frame(data, present, experiment_id), per_variant


def _key_problems(locator: Locator, keyed: DataFrame, present: dict[str, str]) -> list[str]:
    """(unit, metric) repeated, or a unit in more than one variant: up to 3 of each, with
    the locations of their rows."""
    unit = F.col(f"`{present['unit']}`").cast("string")
    metric = F.col(f"`{present['metric']}`").cast("string")
    variant = F.col(f"`{present['variant']}`").cast("string")
    per_unit = keyed.groupBy(unit.alias("u")).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(metric).alias("metrics"),
        F.count_distinct(variant).alias("variants"),
    )
    found = per_unit.where("rows > metrics OR variants > 1").orderBy("u").limit(6).collect()
    if not found:
        return []
    units = [str(r["u"]) for r in found]
    rows = (
        keyed.where(unit.isin(units))
        .select(unit.alias("u"), metric.alias("m"), variant.alias("v"), FILE, SPLIT, POS)
        .orderBy(FILE, SPLIT, POS)
        .collect()
    )
    at_key: dict[tuple[str, str], list[str]] = {}
    variants: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        at_key.setdefault((str(r["u"]), str(r["m"])), []).append(locator.of(r))
        variants.setdefault(str(r["u"]), {}).setdefault(str(r["v"]), []).append(locator.of(r))

    def at(places: list[str]) -> str:
        known = [p for p in places if p]
        return f" at {', '.join(known)}" if known else ""

    out = []
    twice = [(k, w) for k, w in at_key.items() if len(w) > 1][:3]
    if twice:
        shown = "; ".join(f"({u}, {m}){at(w)}" for (u, m), w in twice)
        out.append(f"(unit, metric) must be unique; repeated: {shown}")
    mixed = [(u, v) for u, v in variants.items() if len(v) > 1][:3]
    if mixed:
        shown = "; ".join(
            f"{u} ({', '.join(f'{name}{at(w[:1])}' for name, w in sorted(v.items()))})"
            for u, v in mixed
        )
        out.append(f"units in more than one variant: {shown}")
    return out


def _empty_arms(rows: DataFrame, present: dict[str, str]) -> list[str]:
    """Arms (metric, variant) whose denominators are all 0: their ratio is undefined."""
    metric = F.col(f"`{present['metric']}`").cast("string").alias("metric")
    variant = F.col(f"`{present['variant']}`").cast("string").alias("variant")
    empty = (
        rows.groupBy(metric, variant)
        .agg(
            F.sum(F.col(f"`{present['denominator']}`").try_cast("double")).alias("total"),
            F.count(F.lit(1)).alias("units"),
        )
        .where("total <= 0")
        .orderBy("metric", "variant")
        .collect()
    )
    return [
        f"metric '{r['metric']}', variant '{r['variant']}': the denominator is 0 for all "
        f"{_plural(int(r['units']), 'unit')}, so the metric has no value in that arm"
        for r in empty
    ]


def _variant_problems(counts: dict[str, int], control: str) -> list[str]:
    found = ", ".join(f"{v} ({n:,} units)" for v, n in sorted(counts.items())) or "none"
    if control not in counts:
        hint = did_you_mean(control, counts)
        return [
            f"the control '{control}' has no units (variants found: {found})"
            + (f"; {hint}" if hint else "")
        ]
    if len(counts) < 2:
        return [
            f"no treatment variant has units: every unit is in the control '{control}' "
            f"(variants found: {found}); at least one other variant is needed"
        ]
    return []


def _unit_frame(rows: DataFrame, present: dict[str, str], experiment_id: str) -> DataFrame:
    """The checked rows as the unit frame `analyse` reads (absent optional columns get
    their defaults: denominator 1, covariate 0, covariate denominator 1 with a covariate)."""
    has_cov = "covariate" in present

    def value(name: str, default: float) -> Column:
        if name in present:
            return F.col(f"`{present[name]}`").try_cast("double")
        return F.lit(default).cast("double")

    unit = F.col(f"`{present['unit']}`").cast("string")
    return rows.select(
        F.lit(experiment_id).alias("experiment_id"),
        F.col(f"`{present['metric']}`").cast("string").alias("metric"),
        F.col(f"`{present['variant']}`").cast("string").alias("variant"),
        unit.alias("unit_id"),
        F.xxhash64(unit).alias("unit_key"),
        value("numerator", 0.0).alias("y"),
        value("denominator", 1.0).alias("x"),
        value("covariate", 0.0).alias("cy"),
        value("covariate_denominator", 1.0 if has_cov else 0.0).alias("cx"),
    )

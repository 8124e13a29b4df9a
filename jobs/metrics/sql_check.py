"""Check the catalog's SQL expressions against the sources' columns, with Spark.

Spark's own analyser parses and resolves each expression over an empty frame of the
source's columns: its declared `schema:` where it has one (so `validate` needs no data, and
the real table, whenever it exists, must match the declaration: E046), else the real
table's schema. No data is read. Each error is reported at the YAML key that holds the
expression, with Spark's message (which lists close column names).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    MapType,
    NumericType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from jobs.core.located_yaml import LocatedDocument, Location, Problem, YamlPath, did_you_mean
from jobs.core.logs import quiet_spark_errors
from jobs.metrics.contract_defs import Check, Scalar
from jobs.metrics.definitions import SourceDef
from jobs.metrics.source_schema import schema_ddl
from jobs.metrics.sources import TableReader, with_joins

Expect = Literal["boolean", "numeric", "any"]


def spark_message(exc: Exception) -> str:
    """The first meaningful line of a Spark error, without the SQLSTATE and plan."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line.split(" SQLSTATE")[0].rstrip(".;")
    return type(exc).__name__


class SparkExpressionChecker:
    """Resolves expressions over empty frames with each source's prepared columns."""

    def __init__(
        self, spark: SparkSession, read: TableReader, sources: dict[str, SourceDef]
    ) -> None:
        self.spark = spark
        self.read = read
        self.sources = sources
        self._frames: dict[str, DataFrame | None] = {}
        #: Sources checked against their declared schema alone (no table to read).
        self.unread: list[str] = []

    def _raw(self, name: str) -> DataFrame:
        """An empty frame of the source's columns: its declared schema where it has one
        (so checks do not depend on the data being there), else the real table's."""
        source = self.sources[name]
        if source.schema:
            return self.spark.createDataFrame([], schema_ddl(source.schema))
        return self._table(name)

    def _table(self, name: str) -> DataFrame:
        return self.read(self.sources[name]).limit(0)

    def source_problems(
        self, doc: LocatedDocument, path: YamlPath, source: SourceDef
    ) -> list[Problem]:
        """Problems with a source's own columns and expressions; remembers its frame."""
        problems: list[Problem] = []

        def add(key: YamlPath, message: str, hint: str | None = None) -> None:
            problems.append(Problem(doc.where((*path, *key)), "E040", message, hint))

        try:
            with quiet_spark_errors():
                found = self._table(source.name)
                found.schema  # noqa: B018 - forces the read's analysis
            table: DataFrame | None = found
        except Exception as exc:
            table = None
            if not source.schema:
                key = next(
                    k for k in ("catalog_table", "path", "table") if (*path, k) in doc.locations
                )
                add(
                    (key,),
                    f"cannot read source '{source.name}' at {source.location}: "
                    f"{spark_message(exc)}",
                    "declare its columns under `schema:` to check it without the data, or "
                    "run `safety-metrics generate` to create the default data",
                )
                self._frames[source.name] = None
                return problems
            self.unread.append(source.name)
        df = self._raw(source.name)
        if table is not None and source.schema:
            problems.extend(
                Problem(doc.where((*path, *key)), "E046", message, hint)
                for key, message, hint in schema_differences(source, df.schema, table.schema)
            )
        columns = set(df.columns)
        for key in ("time_column", "date_column"):
            column = getattr(source, key)
            if column and column not in columns:
                add(
                    (key,),
                    f"source '{source.name}' has no column '{column}'",
                    f"columns: {', '.join(sorted(columns))}",
                )
        try:
            with quiet_spark_errors():
                df = with_joins(df, source, self._raw)
                df.schema  # noqa: B018
        except Exception as exc:
            add(("join",), f"join failed: {spark_message(exc)}")
            self._frames[source.name] = None
            return problems
        for name, expr in source.columns:
            if name in df.columns:
                add(
                    ("columns", name),
                    f"derived column '{name}' already exists in source '{source.name}'",
                )
                continue
            error = _resolve(df, expr, "any")
            if error:
                add(("columns", name), f"columns.{name}: {error}")
                continue
            df = df.withColumn(name, F.expr(expr))
        if source.filter:
            error = _resolve(df, source.filter, "boolean")
            if error:
                add(("filter",), f"filter: {error}")
        for i, (name, expr) in enumerate(source.dimensions):
            error = _resolve(df, expr, "any")
            if error:
                add(("dimensions", name if name != expr else i), f"dimension '{name}': {error}")
        # The unit may be a derived column (e.g. a composite key built under `columns`).
        if source.unit not in df.columns:
            add(
                ("unit",),
                f"source '{source.name}' has no column '{source.unit}'",
                did_you_mean(source.unit, df.columns)
                or f"columns: {', '.join(sorted(df.columns))}",
            )
        problems.extend(contract_problems(df.schema, source))
        self._frames[source.name] = df.limit(0)
        return problems

    def expression_problem(self, source: str, expr: str, expect: Expect) -> str | None:
        """Why `expr` is not a valid per-row expression of `source`, or None if it is."""
        df = self._frames.get(source)
        if df is None:
            return None  # the source itself failed; that problem is already reported
        return _resolve(df, expr, expect)

    def derived_problem(self, expr: str, metric_names: list[str]) -> str | None:
        """Why a derived expression over metric values is invalid, or None."""
        schema = StructType([StructField(n, DoubleType()) for n in metric_names])
        df = self.spark.createDataFrame([], schema)
        return _resolve(df, expr, "numeric")


def _resolve(df: DataFrame, expr: str, expect: Expect) -> str | None:
    try:
        with quiet_spark_errors():
            # Selecting a row's column beside it rejects aggregates (no GROUP BY).
            first = [F.col(f"`{c}`") for c in df.columns[:1]]
            schema = df.select(*first, F.expr(expr).alias("__x")).schema
    except Exception as exc:
        return spark_message(exc)
    try:
        with quiet_spark_errors():
            df.select(F.expr(f"({expr})")).schema  # noqa: B018
    except Exception:
        return f"'{expr}' is not one expression: Spark would read its last word as an alias"
    kind = schema["__x"].dataType
    if expect == "boolean" and not isinstance(kind, BooleanType):
        return f"'{expr}' is {kind.simpleString()}, not a boolean condition"
    if expect == "numeric" and not isinstance(kind, NumericType | BooleanType):
        return f"'{expr}' is {kind.simpleString()}, not a number"
    return None


def contract_problems(schema: StructType, source: SourceDef) -> list[Problem]:
    """The declared contract checks whose columns the source lacks (E061) or whose column
    type does not suit the check (E062). The columns are the source's own, its joined and
    its derived ones."""
    problems: list[Problem] = []
    types = {f.name: f.dataType for f in schema.fields}
    for check in source.contract.checks:
        where = check.where or source.where or Location("?", 1, 1)
        for column in check.columns:
            if column not in types:
                problems.append(
                    Problem(
                        where,
                        "E061",
                        f"contract of source '{source.name}' names column '{column}', "
                        "which the source does not have",
                        did_you_mean(column, types) or f"columns: {', '.join(sorted(types))}",
                    )
                )
                continue
            unsuited = _unsuited(check, types[column])
            if unsuited:
                problems.append(
                    Problem(where, "E062", f"contract {check.kind} on '{column}': {unsuited}")
                )
    return problems


def _unsuited(check: Check, kind: DataType) -> str | None:
    """Why a check cannot apply to a column of type `kind`, or None if it can."""
    name = kind.simpleString()
    if check.kind == "unique" and isinstance(kind, MapType):
        return f"a {name} column cannot be a key"
    if check.kind == "range":
        bounds = [b for b in (check.minimum, check.maximum) if b is not None]
        if not isinstance(kind, NumericType | DateType | TimestampType | TimestampNTZType):
            return f"the column is {name}; a range needs a number, a date or a time"
        wrong = [b for b in bounds if not _fits(b, kind)]
        if wrong:
            return f"bound {wrong[0]!r} does not suit a {name} column"
    if check.kind == "allowed":
        wrong = [v for v in check.values if not _fits(v, kind)]
        if not isinstance(kind, NumericType | StringType | BooleanType | DateType):
            return f"the column is {name}; allowed values need text, numbers, booleans or dates"
        if wrong:
            return f"value {wrong[0]!r} is not a {name}" + (
                " (quote it to make it text)" if isinstance(kind, StringType) else ""
            )
    return None


def _fits(value: Scalar, kind: DataType) -> bool:
    """Whether a YAML scalar compares with a column of type `kind` without a cast."""
    if isinstance(kind, StringType):
        return isinstance(value, str)
    if isinstance(kind, BooleanType):
        return isinstance(value, bool)
    if isinstance(kind, NumericType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(kind, DateType):
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    return isinstance(value, dt.date)  # timestamps: a date (midnight UTC) or a time


def schema_differences(
    source: SourceDef, declared: StructType, table: StructType
) -> list[tuple[YamlPath, str, str | None]]:
    """Where the real table does not match the declared schema: (YAML key, message, hint)
    per declared column it lacks or holds as another type. Columns the table has beyond
    the declared ones are fine (expressions may only use declared ones). Types compare by
    their Spark SQL names: nested nullability cannot be declared, so it does not count."""
    real = {f.name: f.dataType for f in table.fields}
    found: list[tuple[YamlPath, str, str | None]] = []
    for field_ in declared.fields:
        key: YamlPath = ("schema", field_.name)
        if field_.name not in real:
            found.append(
                (
                    key,
                    f"source '{source.name}' declares column '{field_.name}', which its table "
                    f"{source.location} does not have",
                    did_you_mean(field_.name, real) or f"columns: {', '.join(sorted(real))}",
                )
            )
        elif real[field_.name].simpleString() != field_.dataType.simpleString():
            found.append(
                (
                    key,
                    f"source '{source.name}' declares '{field_.name}' as "
                    f"{field_.dataType.simpleString()}; its table {source.location} has "
                    f"{real[field_.name].simpleString()}",
                    f"declare {field_.name}: {real[field_.name].simpleString()}",
                )
            )
    return found

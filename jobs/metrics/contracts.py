"""Source contracts at run time: checked inside each source's metric pass, no extra action.

A pass reads its prepared rows in several branches (the unit branch, shuffled by unit, and
the value, sketch and dictionary branches). `PassContract.kept` screens each branch's rows
the same way, right after the joins and derived columns: each row check becomes a flag,
rows with a flag whose policy is `quarantine` are left out, then the rows outside the pass's
dates (or without a time) are. Every branch computes the same flags from the same columns,
so each leaves out exactly the same rows.

Counting rides on the pass's one Spark action:
- row checks: the unit branch reads every row exactly once, before its shuffle, so its
  rows carry an `Observation` (`counted`): per check a count and a few example keys (the
  rows with the least salted hash of their key: the same whatever the partitioning). An
  observation in a shuffle stage that comes out empty is only reported because the
  session excludes adaptive execution's empty-relation rule (`jobs.core.session`); `results`
  waits for it a bounded time, never forever;
- a declared unique key: the key columns of the rows of the pass's dates grouped by key (an
  extra aggregation), reduced to one row of totals that is unioned into the pass's result,
  observed there and filtered out again (`with_duplicates`). With policy `quarantine`,
  every branch keeps one row per key, the first by all its columns in order
  (deterministic), before the other checks' quarantine applies.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from jobs.metrics.contract_defs import Check, Scalar
from jobs.metrics.definitions import SourceDef
from jobs.metrics.source_checks import CheckResult

EXAMPLES = 3
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MARK = "__contract_totals"
#: How long `results` waits for Spark to report a pass's observations after its action.
RESULT_WAIT_S = 120.0


#: Keys per partition of a unique-key check's shuffle: each task's table of keys in memory.
KEYS_PER_PARTITION = 1_000_000


def key_partitions(rows: int | None) -> int | None:
    """Partitions of a unique-key check's shuffle for `rows` rows (None where unknown:
    adaptive execution chooses)."""
    return None if rows is None else max(1, -(-rows // KEYS_PER_PARTITION))


def _total(name: str) -> str:
    """A total's column in the pass's result, while it rides along."""
    return f"__contract_{name}"


class PassContract:
    """The checks of one source for one pass over the dates [first, last] it reads."""

    def __init__(
        self,
        source: SourceDef,
        dates: tuple[str, str],
        now: dt.datetime,
        name: str,
    ) -> None:
        self.source = source
        self.name = name
        self.first, self.last = (dt.date.fromisoformat(d) for d in dates)
        self.now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
        checks = source.contract.all_checks(source.unit, source.time_column, source.date_column)
        self.row_checks = [c for c in checks if c.per_row]
        self.unique = source.contract.unique
        self._rows = Observation(f"source contract of {name}")
        self._duplicates = Observation(f"duplicate keys of {name}") if self.unique else None

    # --- screening the rows of a branch ---------------------------------------------------

    def kept(self, rows: DataFrame) -> DataFrame:
        """`rows` without the quarantined ones and those outside the pass's dates."""
        return self._screened(self._flagged(rows))

    def counted(self, rows: DataFrame) -> DataFrame:
        """Like `kept`, every row counted first (once per pass: for the unit branch)."""
        flagged = self._flagged(rows)
        return self._screened(flagged.observe(self._rows, *self._row_counts()))

    def with_duplicates(
        self, result: DataFrame, rows: DataFrame, estimated_rows: int | None = None
    ) -> DataFrame:
        """The pass's `result` with the duplicate-key totals riding on its action (see the
        module docstring); unchanged without a unique key. `rows`: as `kept` takes them;
        `estimated_rows`: how many the pass reads, where known (sizes the key shuffle)."""
        if self.unique is None or self._duplicates is None:
            return result
        keys = list(self.unique.columns)
        known = self._dated(rows).select(*keys).where(~_any_null(keys))
        # Keys are nearly all distinct: a partial aggregation before the shuffle would only
        # build (and spill) a table of every key; shuffled first, each key is counted once.
        # A partition count from the row count keeps each task's table of keys in memory
        # (adaptive execution would merge the shuffle into partitions of ~64 MB of keys:
        # 10M keys per task, spilled).
        columns = [F.col(k) for k in keys]
        n = key_partitions(estimated_rows)
        shuffled = known.repartition(n, *columns) if n else known.repartition(*columns)
        groups = shuffled.groupBy(*keys).agg(F.count(F.lit(1)).alias("__n"))
        text = _key_text(keys)
        examples = [_least_by_hash(F.lit(True), text, e).alias(f"e{e}") for e in range(EXAMPLES)]
        totals = groups.where("__n > 1").agg(
            F.sum(F.col("__n") - 1).alias("rows"), F.count(F.lit(1)).alias("keys"), *examples
        )
        names = totals.columns
        ride = [F.col(c).alias(_total(c)) for c in names]
        marked = totals.select(F.lit(True).alias(_MARK), *ride)
        union = result.unionByName(marked, allowMissingColumns=True)
        observed = union.observe(self._duplicates, *[F.max(_total(c)).alias(c) for c in names])
        return observed.where(F.col(_MARK).isNull()).drop(_MARK, *[_total(c) for c in names])

    def _flagged(self, rows: DataFrame) -> DataFrame:
        flags = [
            F.coalesce(_violation(c, self.now), F.lit(False)).alias(_flag(i))
            for i, c in enumerate(self.row_checks)
        ]
        return rows.select("*", *flags)

    def _quarantined(self) -> Column:
        terms = [F.col(_flag(i)) for i, c in enumerate(self.row_checks) if c.policy == "quarantine"]
        return reduce(lambda a, b: a | b, terms, F.lit(False))

    def _dated(self, df: DataFrame) -> DataFrame:
        day = F.to_date(F.col(self.source.time_column))
        return df.where(day.between(F.lit(self.first), F.lit(self.last)))

    def _screened(self, flagged: DataFrame) -> DataFrame:
        """Rows of the pass's dates, one per key where duplicates are quarantined, without
        the rows a quarantined check flags."""
        flags = [_flag(i) for i in range(len(self.row_checks))]
        kept = self._dated(flagged)
        if self.unique is not None and self.unique.policy == "quarantine":
            columns = [c for c in kept.columns if c not in flags]
            kept = _first_per_key(kept, list(self.unique.columns), columns)
        return kept.where(~self._quarantined()).drop(*flags)

    def _row_counts(self) -> list[Column]:
        aggs = [F.count(F.lit(1)).alias("rows")]
        ids = self._id_columns()
        for i, check in enumerate(self.row_checks):
            flag = F.col(_flag(i))
            shown = ids + [c for c in check.columns if c not in ids and _shows_value(check)]
            text = _key_text(shown)
            aggs.append(F.count_if(flag).alias(f"n{i}"))
            aggs += [_least_by_hash(flag, text, e).alias(f"e{i}_{e}") for e in range(EXAMPLES)]
        return aggs

    def _id_columns(self) -> list[str]:
        """What names a row in examples: its unique key, else its unit and time."""
        if self.unique is not None:
            return list(self.unique.columns)
        return list(dict.fromkeys([self.source.unit, self.source.time_column]))

    # --- results, after the pass's action ---------------------------------------------------

    def results(self, wait_s: float = RESULT_WAIT_S) -> list[CheckResult]:
        """Every check's result (call once the pass's action has run)."""
        seen = _observed(self._rows, self.name, wait_s)
        rows = int(seen.get("rows") or 0)
        out = []
        for i, check in enumerate(self.row_checks):
            examples = _examples([seen.get(f"e{i}_{e}") for e in range(EXAMPLES)])
            out.append(self._result(check, rows, int(seen.get(f"n{i}") or 0), examples))
        if self.unique is not None and self._duplicates is not None:
            dups = _observed(self._duplicates, self.name, wait_s)
            examples = _examples([dups.get(f"e{e}") for e in range(EXAMPLES)])
            result = self._result(self.unique, rows, int(dups.get("rows") or 0), examples)
            out.append(replace(result, keys=int(dups.get("keys") or 0)))
        return out

    def _result(
        self, check: Check, rows: int, violations: int, examples: tuple[str, ...]
    ) -> CheckResult:
        return CheckResult(
            self.source.name,
            check,
            rows,
            violations,
            examples if violations else (),
            read_from=self.first,
            read_to=self.last,
        )


def _observed(observation: Observation, name: str, wait_s: float) -> dict[str, Any]:
    """The observation's values; a `RuntimeError` if Spark has not reported them within
    `wait_s` seconds of the action (they arrive within moments: a run must fail, not hang,
    if a plan ever drops the observed node)."""
    found: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: found.update(observation.get), daemon=True)
    waiter.start()
    waiter.join(wait_s)
    if waiter.is_alive():
        raise RuntimeError(
            f"{name}: Spark did not report the source contract's counts within {wait_s:.0f} s "
            "of the pass; rerun, and report it as a bug"
        )
    return found


def _flag(i: int) -> str:
    return f"__ck{i}"


def _violation(check: Check, now: dt.datetime) -> Column:
    """True where a row breaks `check` (null where undecided: no violation)."""
    column = F.col(check.columns[0])
    if check.kind in ("not_null", "null_unit", "null_time"):
        return column.isNull()
    if check.kind == "range":
        low = column < _literal(check.minimum) if check.minimum is not None else F.lit(False)
        high = column > _literal(check.maximum) if check.maximum is not None else F.lit(False)
        return low | high
    if check.kind == "allowed":
        return column.isNotNull() & ~column.isin([_literal(v) for v in check.values])
    if check.kind == "time_outside_partition":
        return F.to_date(column) != F.col(check.columns[1])
    if check.kind == "future_time":
        return column.cast("timestamp") > _instant(now + check.tolerance)
    raise ValueError(f"not a row check: {check.kind}")


def _shows_value(check: Check) -> bool:
    """Whether an example shows the checked columns' values beside the row's key."""
    return check.kind in ("range", "allowed", "time_outside_partition", "future_time")


def _literal(value: Scalar) -> Column:
    if isinstance(value, dt.datetime):
        return _instant(value)
    return F.lit(value)


def _instant(moment: dt.datetime) -> Column:
    """A timestamp literal for `moment` (a naive one is UTC), independent of the driver's
    local time zone."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return F.timestamp_micros(F.lit((aware - _EPOCH) // dt.timedelta(microseconds=1)))


def _key_text(columns: list[str]) -> Column:
    parts = [
        F.concat(F.lit(f"{c}="), F.coalesce(F.col(c).cast("string"), F.lit("null")))
        for c in columns
    ]
    return F.concat_ws(", ", *parts)


_HASH_DIGITS = 16


def _least_by_hash(flag: Column, text: Column, salt: int) -> Column:
    """Among rows where `flag` holds, the `text` with the least hash salted by `salt`: an
    example that does not depend on the order rows arrive in. Text behind the hash's 16
    hex digits, so that the least string is the least hash (observations hand plain
    values back to Python, not structs)."""
    digits = F.lpad(F.hex(F.xxhash64(text, F.lit(salt))), _HASH_DIGITS, "0")
    return F.min(F.when(flag, F.concat(digits, text)))


def _examples(found: list[Any]) -> tuple[str, ...]:
    texts = [str(v)[_HASH_DIGITS:] for v in found if v is not None]
    return tuple(sorted(dict.fromkeys(texts)))


def _any_null(columns: list[str]) -> Column:
    return reduce(lambda a, b: a | b, [F.col(c).isNull() for c in columns])


def _first_per_key(df: DataFrame, keys: list[str], columns: list[str]) -> DataFrame:
    """One row per key: the first by every (sortable) one of `columns` in order, nulls
    last, so the pick does not depend on partitioning. Rows with a null in the key are not
    duplicates of each other and are all kept."""
    sortable = [c for c in columns if not isinstance(df.schema[c].dataType, MapType)]
    order = [F.col(c).asc_nulls_last() for c in sortable]
    first = F.row_number().over(Window.partitionBy(*keys).orderBy(*order))
    picked = df.withColumn("__first", first)
    return picked.where((F.col("__first") == 1) | _any_null(keys)).drop("__first")

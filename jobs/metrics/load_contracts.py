"""Read a source's `contract:` into a `Contract`, with located problems (no Spark).

    contract:
      unique: [view_id]                      # or {columns: [a, b], policy: quarantine}
      not_null: [video_id]                   # or {video_id: quarantine, surface: warn}
      range:
        watch_seconds: {min: 0, max: 86400, policy: quarantine}
      allowed:
        surface: [home_feed, search]         # or {values: [...], policy: warn}
      null_unit: warn                        # the implicit checks' policies
      null_time: quarantine
      time_outside_partition: quarantine
      future_time: fail
      future_tolerance: 1h

Structure, policies and values are checked here (E060); whether the columns exist and suit
the check is checked with Spark in `sql_check` (E061, E062).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, cast, get_args

from jobs.core.located_yaml import LocatedDocument, YamlPath, did_you_mean
from jobs.metrics.contract_defs import (
    DEFAULT_FUTURE_TOLERANCE,
    DEFAULT_POLICIES,
    POLICIES,
    Check,
    CheckKind,
    Contract,
    Policy,
    Scalar,
)
from jobs.metrics.spec_problems import Collector, label

CONTRACT_KEYS = (*get_args(CheckKind), "future_tolerance")
UNIQUE_KEYS = ("columns", "policy")
RANGE_KEYS = ("min", "max", "policy")
ALLOWED_KEYS = ("values", "policy")
DURATION = re.compile(r"^([0-9]+)\s*([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CODE = "E060"


def read_contract(
    source: str,
    doc: LocatedDocument,
    path: YamlPath,
    value: Any,
    columns: dict[str, str | None],
    out: Collector,
) -> Contract:
    """The contract at `path` (a source's `contract` key). `columns` names the source's
    unit, time and date columns (`unit`, `time`, `date`)."""
    body = out.mapping(doc, path, value, f"contract of source '{source}'")
    if body is None:
        return Contract()
    out.keys(doc, path, body, CONTRACT_KEYS)
    checks: list[Check] = []
    if "unique" in body:
        unique = _unique(doc, (*path, "unique"), body["unique"], out)
        if unique is not None:
            checks.append(unique)
    if "not_null" in body:
        checks += _not_null(doc, (*path, "not_null"), body["not_null"], columns, out)
    for key, reader in (("range", _range), ("allowed", _allowed)):
        if key in body:
            per_column = out.mapping(doc, (*path, key), body[key], f"contract.{key}") or {}
            for column, spec in per_column.items():
                check = reader(doc, (*path, key, column), str(column), spec, out)
                if check is not None:
                    checks.append(check)
    policies: dict[str, Any] = {}
    implicit: tuple[CheckKind, ...] = (
        "null_unit",
        "null_time",
        "time_outside_partition",
        "future_time",
    )
    for key in implicit:
        if key in body:
            policies[key] = _policy(doc, (*path, key), body[key], out, DEFAULT_POLICIES[key])
    if policies.get("null_time") == "warn":
        out.add(
            doc,
            (*path, "null_time"),
            CODE,
            "null_time cannot be 'warn': a row without a time belongs to no date and is "
            "never counted",
            "use quarantine (leave such rows out and count them) or fail",
        )
    if "time_outside_partition" in body and not columns.get("date"):
        out.add(
            doc,
            (*path, "time_outside_partition"),
            CODE,
            f"source '{source}' has no date_column, so no time can be outside its partition",
            "declare the source's date_column, or remove this key",
        )
    tolerance = DEFAULT_FUTURE_TOLERANCE
    if "future_tolerance" in body:
        tolerance = _duration(doc, (*path, "future_tolerance"), body["future_tolerance"], out)
    return Contract(
        checks=tuple(checks),
        future_tolerance=tolerance,
        where=doc.where(path),
        **policies,
    )


def _policy(
    doc: LocatedDocument, path: YamlPath, value: Any, out: Collector, default: Policy
) -> Policy:
    if value in POLICIES:
        return cast(Policy, value)
    out.add(
        doc,
        path,
        CODE,
        f"policy must be fail, quarantine or warn, got {value!r}",
        did_you_mean(str(value), POLICIES)
        or "fail: stop the run; quarantine: leave the rows "
        "out and count them; warn: keep them and report them",
    )
    return default


def _names(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> tuple[str, ...]:
    """A non-empty list of distinct column names (one name alone is accepted too)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(c, str) for c in items):
        out.add(
            doc, path, CODE, f"{label(path[-2:])} must be a list of column names, got {value!r}"
        )
        return ()
    if len(set(items)) != len(items):
        out.add(doc, path, CODE, f"{label(path[-2:])} names a column twice: {items!r}")
    return tuple(dict.fromkeys(items))


def _unique(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> Check | None:
    policy = DEFAULT_POLICIES["unique"]
    names: Any = value
    where: YamlPath = path
    if isinstance(value, dict):
        out.keys(doc, path, value, UNIQUE_KEYS)
        if "columns" not in value:
            out.add(doc, path, CODE, "contract.unique needs 'columns': the key's column(s)")
            return None
        names, where = value["columns"], (*path, "columns")
        if "policy" in value:
            policy = _policy(doc, (*path, "policy"), value["policy"], out, policy)
    columns = _names(doc, where, names, out)
    if not columns:
        return None
    return Check("unique", columns, policy, where=doc.where(where))


def _not_null(
    doc: LocatedDocument,
    path: YamlPath,
    value: Any,
    columns: dict[str, str | None],
    out: Collector,
) -> list[Check]:
    default = DEFAULT_POLICIES["not_null"]
    if isinstance(value, dict):
        pairs = [
            (str(c), (*path, c), _policy(doc, (*path, c), p, out, default))
            for c, p in value.items()
        ]
    else:
        names = _names(doc, path, value, out)
        listed = value if isinstance(value, list) else [value]
        pairs = [(c, (*path, listed.index(c)), default) for c in names]
    checks = []
    implicit = {columns.get("unit"): "null_unit", columns.get("time"): "null_time"}
    for column, where, policy in pairs:
        if column in implicit:
            key = implicit[column]
            out.add(
                doc,
                where,
                CODE,
                f"'{column}' is the source's {key.split('_')[1]} column, whose nulls "
                f"'{key}' checks",
                f"set its policy with `{key}: {policy}`",
            )
            continue
        checks.append(Check("not_null", (column,), policy, where=doc.where(where)))
    return checks


def _range(
    doc: LocatedDocument, path: YamlPath, column: str, value: Any, out: Collector
) -> Check | None:
    spec = out.mapping(doc, path, value, f"contract.range.{column}")
    if spec is None:
        return None
    out.keys(doc, path, spec, RANGE_KEYS)
    bounds: dict[str, Scalar | None] = {}
    for key in ("min", "max"):
        bound = spec.get(key)
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int | float | dt.date)
        ):
            out.add(
                doc,
                (*path, key),
                CODE,
                f"range.{column}.{key} must be a number, a date or a time, got {bound!r}",
            )
            bound = None
        bounds[key] = bound
    policy = DEFAULT_POLICIES["range"]
    if "policy" in spec:
        policy = _policy(doc, (*path, "policy"), spec["policy"], out, policy)
    low, high = bounds["min"], bounds["max"]
    if low is None and high is None:
        if "min" not in spec and "max" not in spec:
            out.add(doc, path, CODE, f"range.{column} needs 'min', 'max' or both (inclusive)")
        return None
    if low is not None and high is not None and not _ordered(low, high):
        out.add(doc, (*path, "max"), CODE, f"range.{column}: max {high!r} is below min {low!r}")
        return None
    return Check("range", (column,), policy, minimum=low, maximum=high, where=doc.where(path))


def _ordered(low: Scalar, high: Scalar) -> bool:
    try:
        return bool(low <= high)  # type: ignore[operator]
    except TypeError:
        return False


def _allowed(
    doc: LocatedDocument, path: YamlPath, column: str, value: Any, out: Collector
) -> Check | None:
    policy = DEFAULT_POLICIES["allowed"]
    values: Any = value
    where: YamlPath = path
    if isinstance(value, dict):
        out.keys(doc, path, value, ALLOWED_KEYS)
        if "values" not in value:
            out.add(doc, path, CODE, f"allowed.{column} needs 'values': the allowed values")
            return None
        values, where = value["values"], (*path, "values")
        if "policy" in value:
            policy = _policy(doc, (*path, "policy"), value["policy"], out, policy)
    scalars = (bool, int, float, str, dt.date)
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, scalars) for v in values)
    ):
        out.add(
            doc,
            where,
            CODE,
            f"allowed.{column} must be a non-empty list of values, got {values!r}",
            "e.g. allowed: {surface: [home_feed, search]}",
        )
        return None
    return Check(
        "allowed", (column,), policy, values=tuple(dict.fromkeys(values)), where=doc.where(path)
    )


def _duration(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> dt.timedelta:
    if value == 0 and not isinstance(value, bool):
        return dt.timedelta(0)
    match = DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        out.add(
            doc,
            path,
            CODE,
            f"future_tolerance must be a duration like 30m, 1h or 1d, got {value!r}",
        )
        return DEFAULT_FUTURE_TOLERANCE
    return dt.timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])

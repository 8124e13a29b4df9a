"""The input contract of `detect`: a user's rows checked and turned into detection input.

Columns (names are case-insensitive):
- `series_id`, `ts` (ISO 8601; an offset is converted to UTC; none means UTC) and `value`;
- or, instead of `value`, `numerator` and `denominator`: value = numerator / denominator,
  and the denominator is the volume (a denominator of 0 is a missing point);
- optionally `volume`, `kind` and `direction` (each constant within a series; an empty cell
  takes the --kind / --direction flag: a column wins over a flag).

Every problem is collected (unparsable timestamps, non-numeric values, duplicate timestamps,
spacings off the series' grain, unknown or changing kinds and directions), each located by
file, line (CSV, the header is line 1) or row (Parquet, Delta), column and value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from jobs.core.failures import UsageError
from jobs.core.located_yaml import InputError, did_you_mean
from jobs.monitoring.grains import GRAIN_SECONDS, GrainName, check_grain, describe_seconds
from jobs.monitoring.series_file import SeriesFile
from udfs.detector_settings import DIRECTIONS, KINDS

#: Problems listed in an error (the count of the rest follows).
MAX_PROBLEMS = 25
#: The detection input's columns (one row per point, sorted by series then time).
CHECKED_COLUMNS = ("series_id", "ts", "value", "volume", "kind", "direction", "grain")


class SeriesInputError(InputError):
    """A series file that breaks the input contract, with every located problem (capped)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        lines = "\n".join(f"  {p}" for p in shown)
        tail = f"\n  ... and {more} more" if more else ""
        ValueError.__init__(self, f"{path}: {len(problems)} problem(s) found:\n{lines}{tail}")
        self.problems = ()
        self.messages = tuple(problems)


@dataclass
class CheckedSeries:
    """Detection input (CHECKED_COLUMNS) and the problems found (empty when it is valid)."""

    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)

    @property
    def series_count(self) -> int:
        return int(self.frame["series_id"].nunique())


def check_series_file(
    source: SeriesFile,
    kind: str | None = None,
    direction: str | None = None,
    grain: GrainName | None = None,
) -> CheckedSeries:
    """Check a file against the contract; raise SeriesInputError listing every problem."""
    checked = checked_series(source, kind, direction, grain)
    if checked.problems:
        raise SeriesInputError(source.path, checked.problems)
    return checked


def checked_series(
    source: SeriesFile,
    kind: str | None = None,
    direction: str | None = None,
    grain: GrainName | None = None,
) -> CheckedSeries:
    """The detection input of a file, with its problems (a problem's rows are dropped)."""
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if direction is not None and direction not in DIRECTIONS:
        raise UsageError(f"--direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    raw = source.frame.reset_index(drop=True)
    names = with_aliases({str(c).lower(): str(c) for c in raw.columns})
    problems = missing_columns(source.path, names)
    if problems:
        return CheckedSeries(pd.DataFrame(columns=list(CHECKED_COLUMNS)), problems)
    where = Locator(source)
    bad = np.zeros(len(raw), dtype=bool)

    if "series_id" in names:
        ids = raw[names["series_id"]]
        ids = ids.astype(str).str.strip().where(ids.notna(), "")
    else:  # one series, named after the file
        ids = pd.Series([single_series_id(source.path)] * len(raw), dtype=object)
    empty_id = (ids == "").to_numpy()
    id_column = names.get("series_id", "series_id")
    problems += [where(i, id_column, "", "the series id is empty") for i in _at(empty_id)]
    bad |= empty_id

    stamps, unparsable = parse_timestamps(raw[names["ts"]])
    problems += [
        where(i, names["ts"], raw[names["ts"]].iloc[i], "is not an ISO 8601 timestamp")
        for i in _at(unparsable)
    ]
    bad |= unparsable

    numbers: dict[str, np.ndarray] = {}
    for column in ("value", "numerator", "denominator", "volume"):
        if column in names:
            values, wrong = parse_numbers(raw[names[column]])
            problems += [
                where(i, names[column], raw[names[column]].iloc[i], "is not a finite number")
                for i in _at(wrong)
            ]
            bad |= wrong
            numbers[column] = values
    value, volume = value_and_volume(numbers)

    frame = pd.DataFrame(
        {
            "series_id": ids,
            "ts": stamps,
            "value": value,
            "volume": volume,
            "position": np.arange(len(raw)),
        }
    )
    for column, flag, choices in (("kind", kind, KINDS), ("direction", direction, DIRECTIONS)):
        labels = raw[names[column]] if column in names else pd.Series([""] * len(raw))
        labels = labels.astype(str).str.strip().str.lower().where(labels.notna(), "")
        unknown = ((labels != "") & ~labels.isin(choices)).to_numpy()
        for i in _at(unknown):
            hint = did_you_mean(labels.iloc[i], choices)
            text = f"must be one of {', '.join(choices)}" + (f"; {hint}" if hint else "")
            problems.append(where(i, names[column], raw[names[column]].iloc[i], text))
        bad |= unknown
        frame[column] = labels.where(labels != "", flag or "")
    frame = frame[~bad]
    problems += constant_per_series(frame, names, where)
    frame = frame.sort_values(["series_id", "ts"], kind="stable")
    grains, timing = series_grains(frame, grain, names["ts"], where)
    problems += timing
    frame["grain"] = frame["series_id"].map(grains)
    frame["kind"] = default_kinds(frame, numbers)
    frame["direction"] = frame["direction"].where(frame["direction"] != "", "both")
    return CheckedSeries(frame[list(CHECKED_COLUMNS)].reset_index(drop=True), problems)


class Locator:
    """Formats a located problem: file, line or row, column, offending value."""

    def __init__(self, source: SeriesFile) -> None:
        self.source = source

    def __call__(self, position: int, column: str, value: object, message: str) -> str:
        shown = "" if value is None or (isinstance(value, float) and np.isnan(value)) else value
        return (
            f"{self.source.path}: {self.source.where(position)}, column '{column}': "
            f"{str(shown)!r} {message}"
        )


#: Other names of the time column, used where there is no `ts` column (the first found).
TIME_ALIASES = ("timestamp", "time", "date", "datetime")


def with_aliases(names: dict[str, str]) -> dict[str, str]:
    """Lower-cased column names to the file's, with `ts` taken from an alias if need be."""
    if "ts" in names:
        return names
    alias = next((a for a in TIME_ALIASES if a in names), None)
    return names if alias is None else {**names, "ts": names[alias]}


def single_series_id(path: str) -> str:
    """The id of a file's one series when it has no `series_id` column: its file name
    without extension (a Delta or Parquet folder's name)."""
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def missing_columns(path: str, names: dict[str, str]) -> list[str]:
    needed = ["ts"]
    if not ("numerator" in names and "denominator" in names):
        needed.append("value")
    problems = []
    for column in needed:
        if column not in names:
            hint = did_you_mean(column, list(names))
            problems.append(
                f"{path}: column '{column}' is missing (columns: {', '.join(names.values())})"
                + (f"; {hint}" if hint else "")
            )
    if ("numerator" in names) != ("denominator" in names) and "value" not in names:
        problems.append(f"{path}: give both 'numerator' and 'denominator', or a 'value' column")
    return problems


def _at(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]


def _blank(column: pd.Series) -> np.ndarray:
    """Cells that are empty: missing, or text that is only spaces."""
    if column.dtype == object:
        text = column.astype(str).str.strip()
        return np.asarray(column.isna() | (text == ""), dtype=bool)
    return np.asarray(column.isna(), dtype=bool)


def parse_timestamps(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Naive UTC timestamps, and which cells are empty or unparsable."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
    else:
        stamps = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
    stamps = stamps.dt.tz_localize(None).astype("datetime64[ns]")
    return stamps, np.asarray(stamps.isna(), dtype=bool)


def parse_numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Floats (empty cells are NaN: missing points), and which cells are not finite numbers
    (text that is not a number, infinities)."""
    if pd.api.types.is_bool_dtype(column):
        column = column.astype(float)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    blank = _blank(column)
    if column.dtype == object:
        blank |= column.astype(str).str.strip().str.lower().isin(("nan", "null", "na")).to_numpy()
    wrong = ~blank & ~np.isfinite(numbers)
    numbers[blank] = np.nan
    return numbers, wrong


def value_and_volume(numbers: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """value (given, else numerator / denominator) and volume (given, else denominator)."""
    denominator = numbers.get("denominator")
    if "value" in numbers:
        value = numbers["value"]
    else:
        assert denominator is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(denominator != 0, numbers["numerator"] / denominator, np.nan)
    if "volume" in numbers:
        volume = numbers["volume"]
    elif denominator is not None:
        volume = denominator
    else:
        volume = np.full(value.shape, np.nan)
    return np.asarray(value, dtype=np.float64), np.asarray(volume, dtype=np.float64)


def constant_per_series(frame: pd.DataFrame, names: dict[str, str], where: Locator) -> list[str]:
    """A series' kind and direction columns must hold one value (empty cells aside)."""
    problems = []
    for column in ("kind", "direction"):
        if column not in names:
            continue
        given = frame[frame[column] != ""]
        first = given.groupby("series_id", sort=False)[column].transform("first")
        for row in given[given[column] != first].itertuples():
            problems.append(
                where(
                    int(row.position),
                    names[column],
                    getattr(row, column),
                    f"differs from the series' first {column}, "
                    f"{first.loc[row.Index]!r} (series {row.series_id!r})",
                )
            )
    return problems


def series_grains(
    frame: pd.DataFrame, forced: GrainName | None, ts_column: str, where: Locator
) -> tuple[dict[str, GrainName | None], list[str]]:
    """Each series' grain (frame sorted by series and time), and its problems: duplicate
    timestamps and spacings that are not a multiple of the grain."""
    grains: dict[str, GrainName | None] = {}
    problems: list[str] = []
    seconds_all = frame["ts"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    positions_all = frame["position"].to_numpy()
    ids = frame["series_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([])
    for start, stop in zip(starts, [*starts[1:], len(ids)], strict=True):
        series_id = str(ids[start])
        seconds = seconds_all[start:stop]
        positions = positions_all[start:stop]
        repeated = np.flatnonzero(np.diff(seconds) == 0) + 1
        for i in repeated:
            problems.append(
                where(
                    int(positions[i]),
                    ts_column,
                    str(pd.Timestamp(seconds[i], unit="s")),
                    f"repeats a timestamp of series {series_id!r} "
                    f"({where.source.where(int(positions[i - 1]))})",
                )
            )
        distinct, first = np.unique(seconds, return_index=True)
        check = check_grain(distinct, forced)
        grains[series_id] = check.grain
        if check.reason is not None and check.off_grain:
            k = check.off_grain[0]
            problems.append(
                where(
                    int(positions[first[k]]),
                    ts_column,
                    str(pd.Timestamp(distinct[k], unit="s")),
                    f"series {series_id!r} fits no grain: {check.reason}",
                )
            )
        for k in check.off_grain if check.reason is None else ():
            assert check.grain is not None
            step = GRAIN_SECONDS[check.grain]
            off = int(distinct[k] - distinct[k - 1]) if k else step
            problems.append(
                where(
                    int(positions[first[k]]),
                    ts_column,
                    str(pd.Timestamp(distinct[k], unit="s")),
                    f"is off the {check.grain} grid of series {series_id!r} (it comes "
                    f"{describe_seconds(off)} after the previous point); mixed grains",
                )
            )
    return grains, problems


def default_kinds(frame: pd.DataFrame, numbers: dict[str, np.ndarray]) -> pd.Series:
    """Empty kinds: 'gauge', or with numerator and denominator 'proportion' where the
    numerator never exceeds the denominator in the series, else 'rate'."""
    kinds = frame["kind"]
    if "numerator" in numbers and "value" not in numbers:
        numerator = pd.Series(numbers["numerator"][frame["position"]], index=frame.index)
        denominator = pd.Series(numbers["denominator"][frame["position"]], index=frame.index)
        above = (numerator > denominator).groupby(frame["series_id"]).transform("any")
        fallback = np.where(above, "rate", "proportion")
    else:
        fallback = np.full(len(frame), "gauge", dtype=object)
    return kinds.where(kinds != "", pd.Series(fallback, index=frame.index))

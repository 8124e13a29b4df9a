"""The metric definition language, as typed, validated Python values.

YAML under `metric_defs/` is parsed by `loader` into these frozen dataclasses; everything
downstream (the planner, the Spark passes, the writer) reads only these. A metric is
normalised into *parts*: the additive, distinct or quantile aggregates that a pass over one
source computes, so that identical parts of different metrics are computed once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from jobs.core.located_yaml import Location
from jobs.metrics.contract_defs import Contract

#: A metric type's name: one of `jobs.metrics.types.TYPE_NAMES` (each type is a module
#: there, implementing `jobs.metrics.types.protocol.MetricType`).
MetricType = str
AggKind = Literal["count", "sum", "distinct_count", "approx_distinct_count"]
AGG_KINDS: tuple[AggKind, ...] = get_args(AggKind)
Grain = Literal["day", "hour"]
GoodDirection = Literal["up", "down", "none"]
CiMethod = Literal["auto", "wilson", "delta", "none"]
CI_METHODS: tuple[CiMethod, ...] = ("auto", "wilson", "delta", "none")

#: The label for "every value of this dimension" in slice ids; nulls in the data become NONE.
ALL = "all"
NONE_VALUE = "(none)"
#: Part of every metric's version: bump it when the engine changes how numbers come out
#: (not only what a definition says), so `run --restate` recomputes the stored dates.
#: 2 (session 15): intervals of cells with no events (or only events); a lookup key repeated
#: on the lookup side takes its first row by the joined columns; exact experiment covariances.
#: 3 (issue 26): exact sums (values rounded once per row to `decimals`), intervals from exact
#: moments with t quantiles (n - 1 degrees of freedom), rows without a unit as clusters of
#: their own, approximate distinct counts independent of the file layout.
COMPUTATION_VERSION = 3
#: Decimals of a row's value kept in exact sums unless the catalog or metric says otherwise.
DEFAULT_DECIMALS = 6
#: A sum's per-unit totals, times 10^decimals, must fit in 64 bits.
MAX_DECIMALS = 12
#: log2 of the buckets of the HyperLogLog sketches behind approximate distinct counts: 2^12
#: buckets, a relative standard error of about 1.6%. Part of those metrics' versions.
HLL_LG_K = 12


@dataclass(frozen=True)
class JoinDef:
    """A lookup join of another source's columns onto a source's rows."""

    source: str
    on: tuple[str, ...]
    columns: tuple[str, ...]
    how: Literal["left", "inner"] = "left"


@dataclass(frozen=True)
class SourceDef:
    """A named dataset: where it is, its time and unit columns, and what may be sliced."""

    name: str
    format: Literal["delta", "parquet", "catalog"]
    location: str  # a path (relative to the warehouse unless absolute) or a catalog table
    time_column: str
    unit: str
    date_column: str | None = None
    independent_rows: bool = False
    #: A day without rows is normal (live sessions of a small deployment): the source's
    #: freshness and volume are not checked, and it does not hold back the run date.
    may_be_empty: bool = False
    filter: str | None = None
    joins: tuple[JoinDef, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()  # derived column name -> SQL expression
    dimensions: tuple[tuple[str, str], ...] = ()  # dimension name -> SQL expression
    #: Dimensions that are attributes of the unit (a viewer's country): constant for a unit
    #: within each period, so a pass groups units without them (checked at run time).
    unit_attributes: tuple[str, ...] = ()
    #: What its rows must satisfy (see `contract_defs`); every source has the implicit
    #: checks on its unit and time columns.
    contract: Contract = field(default_factory=Contract)
    #: Declared (column, Spark SQL type) pairs: expressions are checked against these, so
    #: `validate` needs no data; the real table must match them (`source_schema`).
    schema: tuple[tuple[str, str], ...] = ()
    where: Location | None = field(default=None, compare=False)

    def dimension_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dimensions)


@dataclass(frozen=True)
class Part:
    """One aggregate over one source: what a pass computes and metrics share."""

    source: str
    agg: AggKind
    value: str | None = None  # None for count
    filter: str | None = None
    #: A sum's values are rounded once per row to this many decimals (`exact_sums`); every sum
    #: after that is exact. None for the other aggregates.
    decimals: int | None = None

    @property
    def key(self) -> str:
        """A short stable id, used as a column name inside a pass."""
        identity: list[object] = [self.source, self.agg, self.value, self.filter]
        if self.decimals is not None:
            identity.append(self.decimals)
        text = json.dumps(identity)
        return "p" + hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def additive(self) -> bool:
        return self.agg in ("count", "sum")

    @property
    def scale(self) -> int:
        """The decimals of its exact totals: a sum's `decimals` (default DEFAULT_DECIMALS),
        0 for the other aggregates (whole counts)."""
        if self.agg != "sum":
            return 0
        return DEFAULT_DECIMALS if self.decimals is None else self.decimals

    def describe(self) -> str:
        what = "count(*)" if self.agg == "count" else f"{self.agg}({self.value})"
        return f"{what} where {self.filter}" if self.filter else what


@dataclass(frozen=True)
class PreviousDayCap:
    """A cap a part's value expression reads as the column `column`: per row, the exact
    `quantile` of `value` over the `source`'s rows (where `filter` holds) of the day before
    the row's day (null, so no cap, where that day has no such rows)."""

    source: str
    value: str
    filter: str | None
    quantile: float

    @property
    def column(self) -> str:
        text = json.dumps(
            [self.source, "previous day quantile", self.value, self.filter, self.quantile]
        )
        return "__cap_" + hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class QuantilePart:
    """An event-level quantile of a value over one source."""

    source: str
    value: str
    filter: str | None = None

    @property
    def key(self) -> str:
        text = json.dumps([self.source, "quantile", self.value, self.filter])
        return "q" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def describe(self) -> str:
        return f"values({self.value})" + (f" where {self.filter}" if self.filter else "")


MonitorDirection = Literal["up", "down", "both"]


@dataclass(frozen=True)
class MonitoringDef:
    """How anomaly detection treats a metric (None fields: the detector's defaults)."""

    enabled: bool = True
    sensitivity: float | None = None  # |score| threshold; higher alerts less
    min_volume: float | None = None  # points with less volume (denominator or units) never alert
    direction: MonitorDirection | None = None  # None: from good_direction (down -> alert rises)


@dataclass(frozen=True)
class Settings:
    """Catalog-wide settings."""

    min_cell_size: int = 10
    confidence_level: float = 0.95
    default_windows: tuple[str, ...] = ("1d",)
    gates_on_failure: Literal["fail", "warn"] = "fail"
    volume_history_days: int = 28
    volume_min_ratio: float = 0.5
    volume_max_ratio: float = 2.0
    #: Audits the suppression may run (each hides more cells on the routes it finds).
    suppression_rounds: int = 20
    #: Decimals kept of each row's value in sums and means (a metric may set its own).
    decimals: int = DEFAULT_DECIMALS


@dataclass(frozen=True)
class MetricDef:
    """One metric as the user defined it, plus its normalised parts."""

    name: str
    type: MetricType
    description: str
    owner: str
    unit: str
    good_direction: GoodDirection
    slices: tuple[tuple[str, ...], ...]
    windows: tuple[str, ...]
    grain: Grain
    ci: CiMethod
    source: str | None = None
    numerator: Part | None = None
    denominator: Part | None = None
    quantile: float | None = None
    quantile_part: QuantilePart | None = None
    per: float = 1.0
    expression: str | None = None
    depends_on: tuple[str, ...] = ()
    min_cell_size: int | None = None
    #: A share of events: the numerator counts a filtered subset of the denominator's rows,
    #: so 0 <= numerator <= denominator must hold and a Wilson interval can apply.
    proportion: bool = False
    tags: tuple[str, ...] = ()
    monitoring: MonitoringDef = MonitoringDef()
    #: What else its type says its numbers depend on (a sketch's parameters), hashed into
    #: its definition version (`jobs.metrics.types.protocol.MetricType.version_extra`).
    version_extra: tuple[tuple[str, str], ...] = ()
    #: Statistics of the previous day its parts' expressions read (`PreviousDayCap`),
    #: computed before its pass.
    caps: tuple[PreviousDayCap, ...] = ()
    where: Location | None = field(default=None, compare=False)

    def parts(self) -> tuple[Part, ...]:
        return tuple(p for p in (self.numerator, self.denominator) if p is not None)

    def sources(self) -> tuple[str, ...]:
        names = [p.source for p in self.parts()]
        if self.quantile_part is not None:
            names.append(self.quantile_part.source)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Catalog:
    """Every source and metric, validated together."""

    settings: Settings
    dimensions: tuple[str, ...]
    sources: dict[str, SourceDef]
    metrics: dict[str, MetricDef]

    def metric_version(self, name: str) -> str:
        """A hash of everything in a metric's definition that affects its numbers, and of
        the engine's `COMPUTATION_VERSION`."""
        payload = {"computation": COMPUTATION_VERSION, **self._version_payload(name)}
        return hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode()
        ).hexdigest()[:12]

    def definitions_version(self, names: Iterable[str]) -> str:
        """One hash of the versions of `names` (what a run log records for a run)."""
        text = ",".join(f"{n}={self.metric_version(n)}" for n in sorted(set(names)))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _version_payload(self, name: str) -> dict[str, Any]:
        metric = self.metrics[name]
        payload: dict[str, Any] = {
            "type": metric.type,
            "parts": [p.describe() for p in metric.parts()],
            "decimals": [p.decimals for p in metric.parts() if p.decimals is not None],
            "quantile": metric.quantile,
            "quantile_part": metric.quantile_part.describe() if metric.quantile_part else None,
            "per": metric.per,
            "expression": metric.expression,
            "slices": metric.slices,
            "windows": metric.windows,
            "grain": metric.grain,
            "ci": metric.ci,
            "confidence_level": self.settings.confidence_level,
            "min_cell_size": metric.min_cell_size or self.settings.min_cell_size,
            "sources": {s: _source_payload(self, s) for s in metric.sources()},
            "depends_on": {d: self._version_payload(d) for d in metric.depends_on},
        }
        payload.update(metric.version_extra)
        return payload


def _source_payload(catalog: Catalog, name: str) -> dict[str, Any]:
    source = catalog.sources[name]
    return {
        "format": source.format,
        "location": source.location,
        "time_column": source.time_column,
        "unit": source.unit,
        "filter": source.filter,
        "columns": source.columns,
        "dimensions": source.dimensions,
        "quarantined": source.contract.version_payload(
            source.unit, source.time_column, source.date_column
        ),
        "joins": [
            {
                "on": j.on,
                "columns": j.columns,
                "how": j.how,
                "source": _source_payload(catalog, j.source),
            }
            for j in source.joins
        ],
    }

"""The protocol every metric type implements, and what the rest of the system reads from it.

A metric type turns its YAML keys into the sufficient statistics a pass computes (`Part`s:
counts, exact sums, distinct counts, sketches; or a `QuantilePart`), and declares how
they are finished and used downstream (`Traits`): the value and its interval (`finish`),
monitoring's kind of series, root cause's additivity, experiments. Loading, planning,
assembly, experiments, monitoring and the privacy audit ask the registry
(`jobs.metrics.types.metric_type`), never compare type names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from jobs.core.located_yaml import LocatedDocument, YamlPath
from jobs.metrics.definitions import Part, PreviousDayCap, QuantilePart, SourceDef
from jobs.metrics.spec_problems import Collector, Raw

#: How a cell's value and interval are finished from the pass's statistics:
#: total: the numerator's sum (x per); ratio: numerator / denominator x per, with a delta
#: or Wilson interval; quantile: the exact quantile of the values; derived: an expression
#: over other metrics' values.
Finish = Literal["total", "ratio", "quantile", "derived"]
#: How a change in a parent slice splits over its child slices (root cause).
RootCause = Literal["additive", "ratio", "other"]
#: The detector's kinds of series (`udfs.detector_settings.Kind`); None: read off the parts
#: (a ratio of counts is a proportion or a rate, a ratio of sums a mean).
SeriesKind = Literal["count", "rate", "proportion", "mean", "gauge", "latency"]


@dataclass(frozen=True)
class Traits:
    """What a metric type means to the code after loading."""

    finish: Finish
    root_cause: RootCause
    series_kind: SeriesKind | None
    #: Values are whole counts of events or units (count floors in monitoring, the
    #: small-count publish gate).
    counts: bool = False
    #: Experiments can compare arms on it (per-unit sufficient statistics exist).
    experiments: bool = False
    #: What its `value` expression must be: a number, or anything (distinct counts).
    value_expect: Literal["numeric", "any"] = "numeric"
    #: Its numerator and denominator are additive sums over units, so a delta-method
    #: interval applies (with `ci: auto`, or a Wilson one for proportions).
    ratio_interval: bool = False
    #: The default `unit` of its values ("count", "ratio", ...).
    default_unit: str = "count"


@dataclass(frozen=True)
class Built:
    """A metric's statistics, as its type reads them from the YAML."""

    numerator: Part | None = None
    denominator: Part | None = None
    quantile_part: QuantilePart | None = None
    quantile: float | None = None
    #: A share of events (a filtered count over the count of the same source's rows).
    proportion: bool = False
    expression: str | None = None
    depends_on: tuple[str, ...] = ()
    caps: tuple[PreviousDayCap, ...] = ()


@dataclass(frozen=True)
class BuildContext:
    """One metric's YAML, as a type's `build` reads it (problems go to `out`, located)."""

    name: str
    doc: LocatedDocument
    path: YamlPath
    body: dict[str, Any]
    source: str | None  # the metric's source (None: not given, or derived)
    filter: str | None  # the metric's filter, applied to each of its parts
    value: str | None  # the metric's `value` expression, checked to be non-empty text
    sources: dict[str, SourceDef]
    raw: Raw
    out: Collector

    def add(self, key: str | None, code: str, message: str, hint: str | None = None) -> None:
        """A problem at `key` of this metric (its whole body when None)."""
        where = (*self.path, key) if key is not None else self.path
        self.out.add(self.doc, where, code, message, hint)


class MetricType(Protocol):
    """One metric type: its YAML keys, its statistics and its traits."""

    name: str
    #: Keys it needs ("source" may come from the file's defaults).
    required: tuple[str, ...]
    #: Type-specific keys it uses (other types' keys are a mistake on it).
    allowed: tuple[str, ...]
    #: Whether it reads a source (False: `source:` is a mistake).
    takes_source: bool
    traits: Traits

    def build(self, ctx: BuildContext) -> Built:
        """The statistics the metric needs (its problems added to `ctx.out`)."""
        ...

    def version_extra(self) -> dict[str, Any]:
        """What else its published numbers depend on (part of the definition version)."""
        ...


def conjoined(a: str | None, b: str | None) -> str | None:
    """Two SQL conditions that must both hold (either may be absent)."""
    if a and b:
        return f"({a}) AND ({b})"
    return a or b

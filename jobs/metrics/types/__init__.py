"""Metric types: one module per type, each implementing `protocol.MetricType`.

To add a type, write its module (its YAML keys, the statistics it needs, its traits) and
list it in `REGISTRY`; see docs/architecture.md ("Adding a metric type").
"""

from __future__ import annotations

from types import MappingProxyType

from jobs.metrics.types.approx_distinct_count import ApproxDistinctCount
from jobs.metrics.types.count import Count
from jobs.metrics.types.derived import Derived
from jobs.metrics.types.distinct_count import DistinctCount
from jobs.metrics.types.mean import Mean
from jobs.metrics.types.protocol import MetricType, Traits
from jobs.metrics.types.quantile import Quantile
from jobs.metrics.types.rate import Rate
from jobs.metrics.types.ratio import Ratio
from jobs.metrics.types.sum import Sum
from jobs.metrics.types.winsorized_mean import WinsorizedMean

_TYPES: tuple[MetricType, ...] = (
    Count(),
    Sum(),
    Mean(),
    Ratio(),
    Rate(),
    DistinctCount(),
    ApproxDistinctCount(),
    Quantile(),
    Derived(),
    WinsorizedMean(),
)
#: Type name -> its implementation.
REGISTRY = MappingProxyType({t.name: t for t in _TYPES})
TYPE_NAMES: tuple[str, ...] = tuple(REGISTRY)
#: Keys that belong to some metric types only (a type's other types' keys are a mistake).
TYPE_SPECIFIC: tuple[str, ...] = tuple(dict.fromkeys(k for t in _TYPES for k in t.allowed))


def metric_type(name: str) -> MetricType:
    """The implementation of the metric type `name` (a `KeyError` if there is none)."""
    return REGISTRY[name]


def traits(name: str) -> Traits:
    """What the rest of the system reads about type `name`."""
    return REGISTRY[name].traits


__all__ = [
    "REGISTRY",
    "TYPE_NAMES",
    "TYPE_SPECIFIC",
    "MetricType",
    "Traits",
    "metric_type",
    "traits",
]

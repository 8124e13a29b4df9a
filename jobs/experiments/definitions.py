"""Experiment definitions, as typed, validated values (parsed by `experiments.loader`).

An experiment names an assignment source (the exposure log), its variants with their
intended split, the control, an analysis window and catalog metrics. Each metric is
computed per unit from the catalog definition's parts, over the unit's exposure window
(events at or after its assignment), and optionally over a pre-period as the CUPED
covariate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from jobs.core.located_yaml import Location
from jobs.experiments.decisions import Correction
from jobs.experiments.stats import CupedMode

#: Catalog metric types an experiment can analyse: each is a ratio of per-unit sums, or an
#: event-level quantile with events clustered by unit.
CORRECTIONS: tuple[Correction, ...] = ("bh", "bonferroni", "none")
Method = Literal["delta", "cuped", "bootstrap"]


@dataclass(frozen=True)
class AssignmentSource:
    """Where the assignment (exposure) log is, and which of its columns mean what."""

    name: str
    location: str  # relative to the warehouse unless absolute, or a catalog table
    format: Literal["delta", "parquet", "catalog"] = "delta"
    experiment_column: str = "experiment_id"
    unit_column: str = "unit_id"
    variant_column: str = "variant"
    time_column: str = "assigned_at"


@dataclass(frozen=True)
class ExperimentDef:
    """One experiment as defined in YAML."""

    id: str
    description: str
    owner: str
    assignments: AssignmentSource
    variants: tuple[tuple[str, float], ...]  # (name, intended share), shares sum to 1
    control: str
    start: dt.date
    end: dt.date | None  # None: up to the run date
    metrics: tuple[str, ...]
    unit: str = "unit"
    covariate_days: int = 0  # 0: no pre-period covariate
    alpha: float = 0.05
    replicates: int = 500
    seed: int = 0
    correction: Correction = "bh"
    srm_threshold: float = 0.001
    cuped: CupedMode = "per_comparison"  # CUPED's slope: per comparison, or pooled over arms
    unit_columns: tuple[tuple[str, str], ...] = ()  # source -> column joined to the unit
    active: bool = True
    where: Location | None = field(default=None, compare=False)

    @property
    def treatments(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.variants if name != self.control)

    def unit_column(self, source: str, default: str) -> str:
        return dict(self.unit_columns).get(source, default)

    def version(self) -> str:
        """A hash of everything in the definition that affects the numbers."""
        payload = asdict(self)
        payload.pop("where", None)
        payload.pop("description", None)
        payload.pop("owner", None)
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

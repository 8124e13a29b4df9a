"""Root-cause slices of an anomaly: which child slices explain a parent slice's deviation.

For an anomalous (metric, parent slice) on a date, the children are the same metric's slices
that refine the parent (country=BR under the overall total; country=BR|surface=shorts_feed
under country=BR and under surface=shorts_feed). Following Adtributor (Bhagwan et al., NSDI
2014), each child gets:

- explanatory power: the share of the parent's deviation from its expected value that the
  child's own deviation accounts for. For counts and sums the deviation is value - expected.
  For ratios, rates and means it is measured on the numerator at the observed denominator:
  numerator - expected ratio x denominator ("excess events"), so that a child with few views
  but many excess violative views explains the move, as it should;
- surprise: the Jensen-Shannon divergence between the child's expected share of the parent
  (expected numerator or value) and its actual share: large when a child's share changed
  much relative to what it usually holds, so a small slice that suddenly carries the whole
  excess outranks the large slice that merely contains it.

Shares are taken within each slice set (the siblings that partition the parent), so that
separately forecast children still have expected shares summing to 1. Children explaining
less than MIN_EXPLANATORY_POWER of the change, or whose share moved against it (a bystander
that grew less than the rest), are dropped; the rest are ranked by explanatory power x the
child's own anomaly score (`_strength`), then by surprise. Surprise alone let a sparse
bystander (2 events where its median is 0: its share jumps from 0) outrank the child
carrying 72% of the change, whose share had hardly moved because its own baseline already
held the previous day's spike; the child's score measures its change in its own noise.
Quantile and distinct metrics are not additive: their children whose own score moved the
same way are ranked by that score; an unscored child is never named.
Inputs are the day's scored cells (a few thousand rows), so this runs on the driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd  # type: ignore[import-untyped]

from jobs.metrics.types import traits

Kind = Literal["additive", "ratio", "other"]
MIN_EXPLANATORY_POWER = 0.1
TOP = 5

ROOT_CAUSE_COLUMNS = (
    "metric",
    "parent_slice_id",
    "rank",
    "slice_set",
    "slice_id",
    "explanatory_power",
    "surprise",
    "score",
    "value",
    "expected",
)


@dataclass(frozen=True)
class MetricKind:
    kind: Kind
    per: float = 1.0  # a rate's scale: value = per x numerator / denominator


def parse_slice(slice_id: str) -> dict[str, str]:
    """`country=BR|surface=shorts_feed` -> {country: BR, surface: shorts_feed}; `all` -> {}."""
    if slice_id == "all" or not slice_id:
        return {}
    return dict(part.split("=", 1) for part in slice_id.split("|"))


def refines(child: dict[str, str], parent: dict[str, str]) -> bool:
    return len(child) > len(parent) and all(child.get(k) == v for k, v in parent.items())


def _js(p: float, q: float) -> float:
    """Jensen-Shannon divergence of one element's shares (Adtributor's surprise)."""

    def term(a: float, b: float) -> float:
        return 0.0 if a <= 0 else a * math.log(2 * a / (a + b))

    return 0.5 * (term(p, q) + term(q, p))


def _actual_and_expected(row: Any, kind: MetricKind) -> tuple[float, float] | None:
    if kind.kind == "additive":
        return float(row["value"]), float(row["expected"])
    if kind.kind == "ratio":
        den = row["denominator"]
        if den is None or (isinstance(den, float) and math.isnan(den)):
            return None
        return float(row["numerator"]), float(row["expected"]) * float(den) / kind.per
    return None


def explain(points: pd.DataFrame, kinds: dict[str, MetricKind], top: int = TOP) -> pd.DataFrame:
    """Ranked child slices for every anomalous cell of `points` (one date's scored cells with
    columns metric, slice_set, slice_id, value, expected, score, is_anomaly, numerator,
    denominator); ROOT_CAUSE_COLUMNS."""
    rows: list[dict[str, Any]] = []
    usable = points[points["expected"].notna() & points["value"].notna()]
    for metric, cells in usable.groupby("metric", sort=True):
        kind = kinds.get(str(metric), MetricKind("other"))
        dims = {sid: parse_slice(str(sid)) for sid in cells["slice_id"]}
        for _, parent in cells[cells["is_anomaly"].astype(bool)].iterrows():
            parent_dims = dims[parent["slice_id"]]
            children = cells[[refines(dims[s], parent_dims) for s in cells["slice_id"]]]
            ranked = _rank(parent, children, kind)
            for rank, child in enumerate(ranked[:top], start=1):
                rows.append(
                    {"metric": metric, "parent_slice_id": parent["slice_id"], "rank": rank, **child}
                )
    return pd.DataFrame(rows, columns=list(ROOT_CAUSE_COLUMNS))


def _rank(parent: Any, children: pd.DataFrame, kind: MetricKind) -> list[dict[str, Any]]:
    base = _actual_and_expected(parent, kind)
    sign = 1.0 if (parent["score"] or 0.0) >= 0 else -1.0
    entries: list[dict[str, Any]] = []
    for _, child in children.iterrows():
        entries.append(
            {
                "slice_set": child["slice_set"],
                "slice_id": child["slice_id"],
                "explanatory_power": None,
                "surprise": None,
                "score": float(child["score"]) if pd.notna(child["score"]) else None,
                "value": float(child["value"]),
                "expected": float(child["expected"]),
                "_totals": _actual_and_expected(child, kind),
            }
        )
    if base is None:  # not additive: children whose own score moved the same way, by score
        scored = [e for e in entries if e["score"] is not None and sign * e["score"] > 0]
        return [_public(e) for e in sorted(scored, key=lambda e: -sign * e["score"])]
    a_p, f_p = base
    change = a_p - f_p
    if change == 0 or f_p <= 0:
        return []
    usable = [e for e in entries if e["_totals"] is not None]  # no denominator: skipped
    # Shares within each slice set (siblings partition the parent): expected and actual.
    totals: dict[str, tuple[float, float]] = {}
    for e in usable:
        a, f = e["_totals"]
        s_a, s_f = totals.get(e["slice_set"], (0.0, 0.0))
        totals[e["slice_set"]] = (s_a + max(a, 0.0), s_f + max(f, 0.0))
    out = []
    for e in usable:
        a_c, f_c = e["_totals"]
        s_a, s_f = totals[e["slice_set"]]
        p = max(f_c, 0.0) / s_f if s_f > 0 else 0.0
        q = max(a_c, 0.0) / s_a if s_a > 0 else 0.0  # a parent at 0 (an outage): shares 0
        e["explanatory_power"] = (a_c - f_c) / change
        e["surprise"] = _js(p, q)
        # A cause explains part of the change, and its share moved the same way.
        if e["explanatory_power"] >= MIN_EXPLANATORY_POWER and (q - p) * sign >= -1e-12:
            out.append(e)
    ranked = sorted(out, key=lambda e: (-_strength(e, sign), -e["surprise"]))
    return [_public(e) for e in ranked]


def _strength(entry: dict[str, Any], sign: float) -> float:
    """How strongly a candidate child is the cause: its explanatory power times its own
    anomaly score in the parent's direction (0 when unscored or against it). The score is
    the child's change in its own noise units, so at equal power the slice that carries
    the excess in a small volume (the planted slice) outranks the large slice that merely
    contains it, and a sparse slice with a couple of extra events (score about 2) does not
    outrank the one carrying most of the change (score 4 and up)."""
    score = entry["score"]
    return float(entry["explanatory_power"]) * max(sign * (score or 0.0), 0.0)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def metric_kinds(catalog: Any) -> dict[str, MetricKind]:
    """How each catalog metric decomposes over slices."""
    kinds: dict[str, MetricKind] = {}
    for metric in catalog.metrics.values():
        split = traits(metric.type).root_cause
        kinds[metric.name] = MetricKind(split, metric.per if split == "ratio" else 1.0)
    return kinds

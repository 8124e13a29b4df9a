"""The planted truth: experiments and incidents, derived from the parameters alone.

The builders read these objects to plant the signals and `ground_truth` serialises them, so
what the data contains and what the truth file claims cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.generate import catalog
from jobs.generate.params import GeneratorParams, sizes, window

RANKING_EXPERIMENT = "exp_ranking_safety_v2"
REPORT_EXPERIMENT = "exp_report_button_v3"
SPIKE_INCIDENT = "inc_br_shorts_violative_spike"
SHIFT_INCIDENT = "inc_in_suspicious_login_shift"
DRIFT_INCIDENT = "inc_automated_tta_drift"


@dataclass(frozen=True)
class Effect:
    metric: str
    relative_effect: float

    @property
    def direction(self) -> str:
        if self.relative_effect == 0:
            return "none"
        return "increase" if self.relative_effect > 0 else "decrease"


@dataclass(frozen=True)
class Experiment:
    """An account-randomised A/B test; effects apply to events at or after `assigned_at`."""

    experiment_id: str
    start_day: int
    split: tuple[tuple[str, float], ...]
    control: str
    treatment: str
    control_drop: float  # share of control assignments lost from the log (planted SRM)
    effects: tuple[Effect, ...]

    def observed_split(self) -> dict[str, float]:
        kept = {
            variant: weight * (1.0 - self.control_drop if variant == self.control else 1.0)
            for variant, weight in self.split
        }
        total = sum(kept.values())
        return {variant: weight / total for variant, weight in kept.items()}

    def effect(self, metric: str) -> float:
        return next((e.relative_effect for e in self.effects if e.metric == metric), 0.0)


@dataclass(frozen=True)
class Incident:
    """A known anomaly; `magnitude` multiplies the metric's rate (drift: at its last day)."""

    incident_id: str
    kind: str
    table: str
    metric: str
    slice: tuple[tuple[str, str], ...]
    start_day: int
    end_day: int | None  # inclusive; None = lasts to the end of the data
    magnitude: float
    description: str


def experiments(params: GeneratorParams) -> tuple[Experiment, Experiment]:
    """Ranking experiment from day 0; report-button experiment from day 7, with an SRM."""
    halves = (("control", 0.5), ("treatment", 0.5))
    ranking = Experiment(
        RANKING_EXPERIMENT, 0, halves, "control", "treatment", 0.0,
        (Effect("violative_view_rate", params.ranking_effect),),
    )  # fmt: skip
    reports = Experiment(
        REPORT_EXPERIMENT, 7, halves, "control", "treatment", params.srm_control_drop,
        (Effect("user_reports_per_1k_views", params.report_button_effect),),
    )  # fmt: skip
    return ranking, reports


def incidents(params: GeneratorParams) -> tuple[Incident, Incident, Incident]:
    """Spike, level shift and drift, all in the second half so each has clean history."""
    days = params.days
    spike_start = days * 5 // 8
    shift_start = days * 3 // 4
    drift_days = min(14, days // 4)
    spike = Incident(
        SPIKE_INCIDENT, "spike", "views", "violative_view_rate",
        (("country", "BR"), ("surface", "shorts_feed")), spike_start, spike_start + 1,
        params.spike_multiplier, "violative views in BR x shorts_feed multiplied for two days",
    )  # fmt: skip
    shift = Incident(
        SHIFT_INCIDENT, "level_shift", "security_events", "suspicious_login_rate",
        (("country", "IN"),), shift_start, None, 1.0 + params.login_shift,
        "suspicious logins per login in IN jump and stay up",
    )  # fmt: skip
    drift = Incident(
        DRIFT_INCIDENT, "drift", "moderation_actions", "time_to_action_minutes",
        (("source", "automated"),), days - drift_days, days - 1, params.drift_multiplier,
        "automated time to action (actioned_at - detected_at) grows linearly from x1 to the "
        "magnitude over the window, by detection day",
    )  # fmt: skip
    return spike, shift, drift


def _experiment_truth(params: GeneratorParams, exp: Experiment) -> dict[str, Any]:
    observed = exp.observed_split()
    return {
        "experiment_id": exp.experiment_id,
        "unit": "account",
        "unit_column": "unit_id",
        "variants": [variant for variant, _ in exp.split],
        "control": exp.control,
        "start_date": window(params).date(exp.start_day).isoformat(),
        "intended_split": dict(exp.split),
        "observed_split_expected": {k: round(v, 6) for k, v in observed.items()},
        "srm": exp.control_drop > 0,
        "srm_cause": (
            f"{exp.control_drop:.1%} of control assignments are missing from the log"
            if exp.control_drop > 0
            else None
        ),
        "exposure": "effects apply only to events at or after the unit's assigned_at",
        "effects": [
            {"metric": e.metric, "relative_effect": e.relative_effect, "direction": e.direction}
            for e in exp.effects
        ],
    }


def _incident_truth(params: GeneratorParams, inc: Incident) -> dict[str, Any]:
    win = window(params)
    return {
        "incident_id": inc.incident_id,
        "kind": inc.kind,
        "table": inc.table,
        "metric": inc.metric,
        "slice": dict(inc.slice),
        "start_date": win.date(inc.start_day).isoformat(),
        "end_date": None if inc.end_day is None else win.date(inc.end_day).isoformat(),
        "magnitude": inc.magnitude,
        "magnitude_kind": "multiplier",
        "description": inc.description,
    }


def ground_truth(params: GeneratorParams) -> dict[str, Any]:
    """The planted truth as JSON-ready data: experiments, incidents, base rates, sizes."""
    win = window(params)
    size = sizes(params)
    return {
        "generator": "safety-metrics synthetic v1",
        "params": {
            "seed": params.seed,
            "scale": params.scale,
            "start_date": params.start_date.isoformat(),
            "days": params.days,
        },
        "window": {
            "start_date": params.start_date.isoformat(),
            "end_date": win.date(params.days - 1).isoformat(),
            "timezone": "UTC",
        },
        "experiments": [_experiment_truth(params, e) for e in experiments(params)],
        "incidents": [_incident_truth(params, i) for i in incidents(params)],
        "base_rates_note": "rates before experiments and incidents are applied",
        "base_rates": {
            "violative_view_rate": catalog.VIOLATIVE_VIEW_RATE,
            "violating_upload_share": round(_violating_upload_share(), 6),
            "fake_account_share": round(
                catalog.NEW_ACCOUNT_SHARE * catalog.FAKE_SHARE_NEW
                + (1 - catalog.NEW_ACCOUNT_SHARE) * catalog.FAKE_SHARE_OLD,
                6,
            ),
            "action_false_positive_share": catalog.FALSE_POSITIVE_SHARE,
            "suspicious_login_rate": catalog.SECURITY_PER_LOGIN["suspicious_login"],
            "confirmed_takeover_rate": catalog.SECURITY_PER_LOGIN["confirmed_takeover"],
        },
        "sizes": {
            "accounts": size.accounts,
            "uploads": size.videos,
            "views_approx": round(_views_approx(params)),
        },
        "encodings": {
            "video_id": "bit 0 = violating video; bits 1-2 index content_type "
            f"{list(catalog.CONTENT_TYPES)}",
            "creator_accounts": f"account_id % {catalog.CREATOR_STRIDE} == 0",
        },
    }


def _violating_upload_share() -> float:
    return sum(
        catalog.UPLOAD_CONTENT_MIX[c] * catalog.UPLOAD_VIOLATING_SHARE[c]
        for c in catalog.CONTENT_TYPES
    )


def _views_approx(params: GeneratorParams) -> float:
    """Expected views: new accounts watch about half the window, fakes watch less."""
    accounts = sizes(params).accounts
    new_share = catalog.NEW_ACCOUNT_SHARE * (1 - 1 / catalog.CREATOR_STRIDE)
    fake_share = new_share * catalog.FAKE_SHARE_NEW + (1 - new_share) * catalog.FAKE_SHARE_OLD
    active = 1 - new_share / 2
    fake_factor = 1 - fake_share * (1 - catalog.FAKE_ACTIVITY)
    return catalog.VIEWS_PER_ACCOUNT_DAY * accounts * params.days * active * fake_factor

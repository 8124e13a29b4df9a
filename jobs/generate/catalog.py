"""The platform's fixed shapes: dimension mixes, base rates and per-slice multipliers.

Kept in one place, as read-only mappings, so the builders and the stated ground truth read
the same numbers. Rates are per event unless named otherwise; weights need not sum to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

V = TypeVar("V")


def _frozen(mapping: dict[str, V]) -> Mapping[str, V]:
    return MappingProxyType(mapping)


# --- volumes per unit of scale ------------------------------------------------------------
ACCOUNTS_PER_SCALE = 20_000
#: Mean views per active account-day before activity and weekday factors (~1M views/scale
#: over the default 56 days).
VIEWS_PER_ACCOUNT_DAY = 0.97
UPLOADS_PER_SCALE_DAY = 1_500.0
#: Uploads start this many days before the window, so day one already has a catalogue.
CATALOG_LEAD_DAYS = 28
#: Every CREATOR_STRIDE-th account id is a creator, so any table can tell without a join.
CREATOR_STRIDE = 12
#: Caps that keep composite ids (`(entity * days + day) * cap + k`) unique.
MAX_VIEWS_PER_DAY = 1_024
MAX_EVENTS_PER_DAY = 64
MAX_LIVE_PER_DAY = 16

# --- accounts -----------------------------------------------------------------------------
COUNTRY_WEIGHTS = _frozen(
    {"US": 0.16, "IN": 0.18, "BR": 0.10, "ID": 0.09, "MX": 0.07, "GB": 0.05,
     "DE": 0.05, "FR": 0.04, "JP": 0.06, "NG": 0.05, "PH": 0.07, "TR": 0.08}
)  # fmt: skip
NEW_ACCOUNT_SHARE = 0.15  # created inside the window
OLD_ACCOUNT_MEAN_AGE_DAYS = 700.0
FAKE_SHARE_NEW = 0.12
FAKE_SHARE_OLD = 0.015
ACTIVITY_SIGMA = 1.5  # lognormal spread of per-account activity: the heavy tail of viewing
FAKE_ACTIVITY = 0.3
AGE_BUCKETS = ((7, "<7d"), (30, "7-30d"), (90, "30-90d"), (365, "90-365d"), (1095, "1-3y"))
OLDEST_AGE_BUCKET = "3y+"

# --- time shapes --------------------------------------------------------------------------
#: Monday..Sunday; weekends are busier for viewing.
WEEKDAY_VIEW_FACTOR = (0.93, 0.92, 0.94, 0.97, 1.05, 1.12, 1.07)
#: Hour-of-day (UTC) shape: a night trough and an evening peak.
HOUR_WEIGHTS = (
    2.0, 1.3, 0.9, 0.7, 0.6, 0.7, 1.0, 1.6, 2.2, 2.6, 2.9, 3.1,
    3.4, 3.4, 3.4, 3.6, 4.0, 4.6, 5.4, 6.2, 6.6, 6.2, 4.8, 3.2,
)  # fmt: skip

# --- content ------------------------------------------------------------------------------
#: Order matters: a video id's bits 1-2 index this tuple (see `videos.py`).
CONTENT_TYPES = ("short", "long", "live_vod", "music")
UPLOAD_CONTENT_MIX = _frozen({"short": 0.55, "long": 0.30, "live_vod": 0.05, "music": 0.10})
UPLOAD_VIOLATING_SHARE = _frozen({"short": 0.018, "long": 0.012, "live_vod": 0.020, "music": 0.008})
POLICY_WEIGHTS = _frozen(
    {"spam": 0.30, "hate": 0.08, "violence": 0.12, "nudity": 0.15, "harassment": 0.12,
     "misinformation": 0.12, "dangerous_acts": 0.09, "child_safety": 0.02}
)  # fmt: skip

# --- views --------------------------------------------------------------------------------
SURFACE_WEIGHTS = _frozen(
    {"home_feed": 0.30, "shorts_feed": 0.28, "search": 0.12, "watch_next": 0.18,
     "subscriptions": 0.08, "external": 0.04}
)  # fmt: skip
SHORTS_FEED_CONTENT = _frozen({"short": 0.97, "music": 0.03})
OTHER_SURFACE_CONTENT = _frozen({"short": 0.20, "long": 0.55, "live_vod": 0.10, "music": 0.15})
#: Overall share of views on violating videos, before incidents and experiments.
VIOLATIVE_VIEW_RATE = 0.0035
VIOLATIVE_BY_COUNTRY = _frozen(
    {"US": 0.9, "IN": 1.2, "BR": 1.3, "ID": 1.25, "MX": 1.1, "GB": 0.8,
     "DE": 0.7, "FR": 0.8, "JP": 0.6, "NG": 1.4, "PH": 1.3, "TR": 1.1}
)  # fmt: skip
VIOLATIVE_BY_SURFACE = _frozen(
    {"home_feed": 1.0, "shorts_feed": 1.4, "search": 0.8, "watch_next": 1.1,
     "subscriptions": 0.5, "external": 1.6}
)  # fmt: skip
VIOLATIVE_BY_CONTENT = _frozen({"short": 1.2, "long": 0.9, "live_vod": 1.3, "music": 0.6})
WATCH_MEDIAN_SECONDS = _frozen({"short": 14.0, "long": 260.0, "live_vod": 320.0, "music": 150.0})
WATCH_SIGMA = _frozen({"short": 0.8, "long": 1.3, "live_vod": 1.4, "music": 0.9})
WATCH_CAP_SECONDS = _frozen({"short": 180.0, "long": 14_400.0, "live_vod": 21_600.0,
                             "music": 1_800.0})  # fmt: skip
#: Recency bias of which video a view lands on: offset from the newest = avail * u**power.
RECENCY_POWER = 2.5

# --- reports ------------------------------------------------------------------------------
REPORT_PROB_VIOLATIVE = 0.08
REPORT_PROB_CLEAN = 0.0035
REPORT_REASON_MATCHES_POLICY = 0.7
REPORT_BORDERLINE_ACTIONABLE = 0.06
REPORT_DELAY_MEDIAN_SECONDS = 90.0

# --- moderation ---------------------------------------------------------------------------
ACTION_RECALL = 0.85  # share of violating uploads that get actioned
FALSE_POSITIVE_SHARE = 0.05  # share of actions taken on non-violating uploads
SOURCE_CORRECT = _frozen({"automated": 0.88, "human": 0.07, "user_report": 0.05})
SOURCE_FALSE_POSITIVE = _frozen({"automated": 0.85, "human": 0.08, "user_report": 0.07})
ACTION_WEIGHTS = _frozen(
    {"remove": 0.70, "age_restrict": 0.10, "limit_distribution": 0.12, "demonetize": 0.08}
)
PREPUBLICATION_SHARE = 0.55  # automated detections at upload, before any view
TTA_MEDIAN_SECONDS = _frozen({"automated": 240.0, "human": 5 * 3600.0, "user_report": 18 * 3600.0})
TTA_SIGMA = _frozen({"automated": 1.0, "human": 1.2, "user_report": 1.3})
APPEAL_PROB = _frozen({"correct": 0.07, "false_positive": 0.50})
REINSTATE_PROB = _frozen({"correct": 0.06, "false_positive": 0.75})

# --- security -----------------------------------------------------------------------------
LOGINS_PER_ACCOUNT_DAY = 0.25
SECURITY_PER_LOGIN = _frozen(
    {"suspicious_login": 0.012, "2fa_challenge": 0.05, "password_reset": 0.015,
     "confirmed_takeover": 0.0004}
)  # fmt: skip
FAKE_BLOCK_PROB = 0.7
FAKE_BLOCK_MEAN_DAYS = 3.0

# --- live ---------------------------------------------------------------------------------
LIVE_PER_CREATOR_DAY = 0.06
LIVE_DURATION_MEDIAN_SECONDS = 2_700.0
LIVE_INTERRUPT_PROB = 0.006
LIVE_INTERRUPT_POLICY = _frozen(
    {"nudity": 0.25, "violence": 0.2, "hate": 0.15, "harassment": 0.15, "dangerous_acts": 0.15,
     "child_safety": 0.02, "spam": 0.08}
)  # fmt: skip

# --- privacy ------------------------------------------------------------------------------
PRIVACY_REQUEST_PROB = 0.012  # per account over the window
PRIVACY_REQUEST_TYPES = _frozen(
    {"access": 0.45, "deletion": 0.35, "correction": 0.10, "portability": 0.10}
)
JURISDICTION = _frozen(
    {"DE": "EU_GDPR", "FR": "EU_GDPR", "GB": "UK_GDPR", "US": "US_CCPA", "BR": "BR_LGPD",
     "IN": "IN_DPDP"}
)  # fmt: skip
DEFAULT_JURISDICTION = "OTHER"
SLA_DAYS = _frozen(
    {"EU_GDPR": 30, "UK_GDPR": 30, "US_CCPA": 45, "BR_LGPD": 15, "IN_DPDP": 30, "OTHER": 30}
)
PRIVACY_NEVER_FULFILLED = 0.03

"""Generator parameters, and the table sizes and time window they imply.

Everything downstream is a pure function of `GeneratorParams`, so two runs with equal
parameters produce identical tables, and the planted truth can be stated without Spark.
"""

from __future__ import annotations

import calendar
import datetime
import math
from dataclasses import dataclass

from jobs.generate import catalog

MAX_SCALE = 10_000.0
MAX_DAYS = 730
MIN_DAYS = 28
DAY_SECONDS = 86_400


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class GeneratorParams:
    """What to generate; the defaults give ~1M views over 8 weeks with every truth planted.

    The effect fields size the planted experiments and incidents (ground truth reports them),
    so tests can set one to its null value and check the signal disappears.
    """

    seed: int = 42
    scale: float = 1.0
    start_date: datetime.date = datetime.date(2026, 9, 1)
    days: int = 56
    partitions: int | None = None
    ranking_effect: float = -0.20
    report_button_effect: float = 0.15
    srm_control_drop: float = 0.06
    spike_multiplier: float = 5.0
    login_shift: float = 0.60
    drift_multiplier: float = 3.0

    def __post_init__(self) -> None:
        if not _is_int(self.seed) or not -(2**63) <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer that fits in 64 bits, got {self.seed!r}")
        if not _is_real(self.scale) or not math.isfinite(self.scale):
            raise ValueError(f"scale must be a finite number, got {self.scale!r}")
        if not 0 < self.scale <= MAX_SCALE:
            raise ValueError(f"scale must be in (0, {MAX_SCALE:g}], got {self.scale!r}")
        if type(self.start_date) is not datetime.date:
            raise ValueError(f"start_date must be a datetime.date, got {self.start_date!r}")
        if not _is_int(self.days) or not MIN_DAYS <= self.days <= MAX_DAYS:
            raise ValueError(
                f"days must be an integer in [{MIN_DAYS}, {MAX_DAYS}] (incidents need four "
                f"clean weeks of history), got {self.days!r}"
            )
        if self.partitions is not None and (not _is_int(self.partitions) or self.partitions < 1):
            raise ValueError(
                f"partitions must be None or a positive integer, got {self.partitions!r}"
            )
        for name in ("ranking_effect", "report_button_effect", "login_shift"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= -1.0:
                raise ValueError(f"{name} is a relative change and must be > -1, got {value!r}")
        for name in ("spike_multiplier", "drift_multiplier"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} is a multiplier and must be > 0, got {value!r}")
        drop = self.srm_control_drop
        if not _is_real(drop) or not 0.0 <= drop < 1.0:
            raise ValueError(f"srm_control_drop must be in [0, 1), got {drop!r}")


@dataclass(frozen=True)
class Window:
    """The generated period in UTC epoch seconds; day 0 is `start_date`."""

    start_date: datetime.date
    days: int

    @property
    def start_epoch(self) -> int:
        return calendar.timegm(self.start_date.timetuple())

    @property
    def end_epoch(self) -> int:
        """Exclusive end: nothing is observed at or after this instant."""
        return self.start_epoch + self.days * DAY_SECONDS

    def date(self, day: int) -> datetime.date:
        return self.start_date + datetime.timedelta(days=day)


@dataclass(frozen=True)
class Sizes:
    """Entity counts for a scale; every count is at least one so tiny scales still work."""

    accounts: int
    creators: int
    videos_by_code: tuple[int, ...]

    @property
    def videos(self) -> int:
        return sum(self.videos_by_code)


def window(params: GeneratorParams) -> Window:
    return Window(params.start_date, params.days)


def sizes(params: GeneratorParams) -> Sizes:
    accounts = max(catalog.CREATOR_STRIDE, round(catalog.ACCOUNTS_PER_SCALE * params.scale))
    creators = -(-accounts // catalog.CREATOR_STRIDE)
    span_days = catalog.CATALOG_LEAD_DAYS + params.days
    total_videos = catalog.UPLOADS_PER_SCALE_DAY * params.scale * span_days
    by_code: list[int] = []
    for content_type in catalog.CONTENT_TYPES:
        share = catalog.UPLOAD_CONTENT_MIX[content_type]
        violating = catalog.UPLOAD_VIOLATING_SHARE[content_type]
        by_code.append(max(1, round(total_videos * share * (1.0 - violating))))
        by_code.append(max(1, round(total_videos * share * violating)))
    return Sizes(accounts=accounts, creators=creators, videos_by_code=tuple(by_code))

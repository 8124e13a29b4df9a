"""The generator's tables: name -> builder of a lazy DataFrame, and their partitioning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pyspark.sql import DataFrame, SparkSession

from jobs.generate.accounts import build_accounts
from jobs.generate.experiments import build_experiment_assignments
from jobs.generate.live import build_live_sessions
from jobs.generate.moderation import build_moderation_actions
from jobs.generate.params import GeneratorParams
from jobs.generate.scenario import ground_truth
from jobs.generate.security import build_privacy_requests, build_security_events
from jobs.generate.videos import build_uploads
from jobs.generate.views import build_user_reports, build_views

__all__ = ["TABLE_BUILDERS", "GeneratorParams", "build_tables", "ground_truth", "partition_columns"]

Builder = Callable[[SparkSession, GeneratorParams], DataFrame]

#: Table name -> builder, in the order a writer should go (small tables first).
TABLE_BUILDERS: Mapping[str, Builder] = MappingProxyType(
    {
        "accounts": build_accounts,
        "uploads": build_uploads,
        "views": build_views,
        "moderation_actions": build_moderation_actions,
        "user_reports": build_user_reports,
        "security_events": build_security_events,
        "live_sessions": build_live_sessions,
        "privacy_requests": build_privacy_requests,
        "experiment_assignments": build_experiment_assignments,
    }
)


def build_tables(spark: SparkSession, params: GeneratorParams) -> dict[str, DataFrame]:
    """Table name -> lazy DataFrame; nothing runs until the caller writes or counts."""
    return {name: build(spark, params) for name, build in TABLE_BUILDERS.items()}


def partition_columns() -> dict[str, list[str]]:
    """Table -> partition columns: the DateType `date` for event tables, none for accounts."""
    return {name: [] if name == "accounts" else ["date"] for name in TABLE_BUILDERS}

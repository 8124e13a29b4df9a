"""Experiment assignment as pure functions of the account id, and the assignment log.

The views and reports builders call `assignment` for the viewer to decide whether an event
is treated, and the log is built from the same expressions, so they agree without a join.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate.accounts import account_attrs
from jobs.generate.common import date_of_day, day_of, id_range, ts
from jobs.generate.params import DAY_SECONDS, GeneratorParams, sizes, window
from jobs.generate.scenario import Experiment, experiments
from udfs import seeded_random as sr

#: Mean delay between eligibility (experiment start or sign-up) and first exposure.
EXPOSURE_MEAN_SECONDS = 1.5 * DAY_SECONDS


@dataclass(frozen=True)
class Assignment:
    variant: Column
    assigned_epoch: Column  # may fall after the window: then the unit is never exposed
    logged: Column  # whether the assignment log records it (the planted SRM drops some)


def assignment(
    params: GeneratorParams, exp: Experiment, account_id: Column, created_epoch: Column
) -> Assignment:
    seed, win = params.seed, window(params)
    salt = f"exp:{exp.experiment_id}"
    variant = sr.categorical(sr.uniform(seed, salt, account_id), dict(exp.split))
    eligible = F.greatest(F.lit(win.start_epoch + exp.start_day * DAY_SECONDS), created_epoch + 60)
    delay = sr.exponential(seed, f"{salt}:exposure", account_id, mean=EXPOSURE_MEAN_SECONDS)
    assigned_epoch = eligible + F.floor(delay).cast("bigint")
    dropped = (variant == exp.control) & sr.bernoulli(
        seed, f"{salt}:log_loss", account_id, p=exp.control_drop
    )
    logged = (assigned_epoch < win.end_epoch) & ~dropped
    return Assignment(variant=variant, assigned_epoch=assigned_epoch, logged=logged)


def treated(exp: Experiment, assigned: Assignment, event_epoch: Column) -> Column:
    """True for treatment-arm events at or after exposure (log loss does not matter here)."""
    return (assigned.variant == exp.treatment) & (event_epoch >= assigned.assigned_epoch)


def build_experiment_assignments(spark: SparkSession, params: GeneratorParams) -> DataFrame:
    """One row per (experiment, account) exposed inside the window, as the log recorded it."""
    win = window(params)
    accounts = id_range(spark, params, sizes(params).accounts)
    account_id = F.col("id")
    created = account_attrs(params, account_id).created_epoch
    parts = []
    for exp in experiments(params):
        assigned = assignment(params, exp, account_id, created)
        rows = accounts.select(
            F.lit(exp.experiment_id).alias("experiment_id"),
            account_id.alias("unit_id"),
            assigned.variant.alias("variant"),
            assigned.assigned_epoch.alias("assigned_epoch"),
            assigned.logged.alias("logged"),
        ).where(F.col("logged"))
        parts.append(rows)
    epoch = F.col("assigned_epoch")
    return reduce(DataFrame.unionByName, parts).select(
        "experiment_id",
        "unit_id",
        "variant",
        ts(epoch).alias("assigned_at"),
        date_of_day(win, day_of(win, epoch)).alias("date"),
    )

"""Daily partitions on Whop ``created_at`` for the extract of memberships and payments, so a
backfill of a date range is an ordinary Dagster backfill. Everything downstream follows the mirror's
change queue instead of partitions: one run of any range does per-record work only for what changed.
"""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from whop_pipeline.settings import start_date_from_env

# `backfill_policy` is marked beta in Dagster 1.13; this project relies on single-run backfills on
# purpose (a year of days is one run, not 365 process start-ups). Said once, here, where it is used.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*BackfillPolicy.*")

# end_offset=1: today's partition exists from midnight, so the incremental sync can fill it.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=start_date_from_env().isoformat(), end_offset=1, timezone="UTC"
)

# The daily-partitioned assets take these: one run covers any range of days, its reads paged.
DAILY = {"partitions_def": daily_partitions, "backfill_policy": dg.BackfillPolicy.single_run()}


def partition_window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime]:
    """The run's [start, end) in UTC: one day, or the whole range of a single-run backfill."""
    window = context.partition_time_window
    return window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC)


def trailing_keys(now: dt.datetime, days: int) -> tuple[str, str]:
    """First and last partition keys of the ``days`` most recent partitions (today included)."""
    keys = daily_partitions.get_partition_keys(current_time=now)
    return keys[max(0, len(keys) - days)], keys[-1]


# How often the incremental schedule syncs each connection; freshness allows twice this.
INCREMENTAL_INTERVAL_MINUTES = 15

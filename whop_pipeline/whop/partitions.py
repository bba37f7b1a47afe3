"""Daily partitions on Whop ``created_at``, shared by every asset downstream of memberships and
payments (so a backfill of a date range is an ordinary Dagster backfill)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from whop_pipeline.settings import start_date_from_env

# Where a partition window is widened on both sides when reading Whop: rows near a boundary (bound
# inclusiveness is undocumented, clocks drift) are read twice rather than missed. Writes are
# idempotent upserts keyed by id, so reading twice costs nothing but a few rows.
WINDOW_OVERLAP = dt.timedelta(hours=1)

# end_offset=1: today's partition exists from midnight, so the incremental sync can fill it.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=start_date_from_env().isoformat(), end_offset=1, timezone="UTC"
)


# Every daily-partitioned asset takes these: one run covers any range of days, so a backfill of a
# year is one run (its reads paged, so memory does not grow with the range), not 365 process
# start-ups.
DAILY = {"partitions_def": daily_partitions, "backfill_policy": dg.BackfillPolicy.single_run()}


def partition_window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime]:
    """The run's [start, end) in UTC: one day, or the whole range of a single-run backfill."""
    window = context.partition_time_window
    return window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC)

"""The sync job and its schedules: a frequent incremental sync and a daily reconcile.

Whop cannot list "what changed since", so (reference §7, §10.4):
- incremental: members and products in full, memberships and payments created in the last two
  daily partitions (yesterday as overlap), then transform and load;
- reconcile: every membership (statuses change long after creation) and the trailing
  ``RECONCILE_PAYMENT_DAYS`` of payments (refunds and disputes change old payments).
Webhooks carry changes in between.
"""

import datetime as dt

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from whop_pipeline.whop.partitions import daily_partitions

SYNC_GROUPS = ("whop", "crm", "twenty")
# The payment branch of the graph. The reconcile reads it over a shorter window than memberships.
PAYMENT_ASSETS = ("whop_payments", "crm_notes", "crm_note_targets", "twenty_notes")
INCREMENTAL_DAYS = 2
RECONCILE_PAYMENT_DAYS = 90

whop_sync_job = dg.define_asset_job(
    "whop_sync_job",
    selection=dg.AssetSelection.groups(*SYNC_GROUPS),
    description="Whop → raw mirror → CRM frames → Twenty, for a range of daily partitions.",
)


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags that make one run cover a partition range (the assets use single-run backfills)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first_key, ASSET_PARTITION_RANGE_END_TAG: last_key}


def trailing_keys(now: dt.datetime, days: int) -> tuple[str, str]:
    """First and last partition keys of the ``days`` most recent partitions (today included)."""
    keys = daily_partitions.get_partition_keys(current_time=now)
    return keys[max(0, len(keys) - days)], keys[-1]


def _sync_in_progress(context: dg.ScheduleEvaluationContext) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=whop_sync_job.name,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        ),
        limit=1,
    )
    return bool(runs)


@dg.schedule(
    job=whop_sync_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: members, products, and the last two days of memberships and "
    "payments, pushed to Twenty (only changed rows are written).",
)
def whop_incremental_schedule(context: dg.ScheduleEvaluationContext):
    if _sync_in_progress(context):
        return dg.SkipReason("a whop_sync_job run is still queued or running")
    first, last = trailing_keys(context.scheduled_execution_time, INCREMENTAL_DAYS)
    return dg.RunRequest(
        tags={**range_tags(first, last), "whop/sync": "incremental"},
    )


@dg.schedule(
    job=whop_sync_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Daily: every membership since the start date, and the last "
    f"{RECONCILE_PAYMENT_DAYS} days of payments, re-read and pushed to Twenty.",
)
def whop_reconcile_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time
    all_first, all_last = trailing_keys(now, days=10**6)
    pay_first, pay_last = trailing_keys(now, RECONCILE_PAYMENT_DAYS)
    everything = dg.AssetSelection.groups(*SYNC_GROUPS)
    payments = dg.AssetSelection.assets(*PAYMENT_ASSETS)
    asset_graph = context.repository_def.asset_graph
    day = now.strftime("%Y-%m-%d")
    yield dg.RunRequest(
        run_key=f"reconcile-memberships-{day}",
        asset_selection=sorted((everything - payments).resolve(asset_graph)),
        tags={**range_tags(all_first, all_last), "whop/sync": "reconcile-memberships"},
    )
    yield dg.RunRequest(
        run_key=f"reconcile-payments-{day}",
        asset_selection=sorted(payments.resolve(asset_graph)),
        tags={**range_tags(pay_first, pay_last), "whop/sync": "reconcile-payments"},
    )

"""The sync schedules: a frequent incremental sync and a daily reconcile.

Whop cannot list "what changed since" (docs/whop-api.md#listing-and-paging), so:
- incremental: products, new members, memberships and payments created in the last two daily
  partitions (yesterday as overlap), the members those need; CRM records rebuilt for what changed
  and loaded;
- reconcile: every member and membership (statuses change long after creation) and the trailing
  ``RECONCILE_PAYMENT_DAYS`` of payments (refunds and disputes change old payments), every CRM record
  compared with what Twenty last got.
Webhooks carry changes in between.
"""

import dagster as dg

from whop_pipeline.orchestration.jobs import SYNC_GROUPS, whop_sync_job
from whop_pipeline.orchestration.partitions import trailing_keys
from whop_pipeline.orchestration.tags import SYNC_MODE_TAG, SyncMode, range_tags

INCREMENTAL_DAYS = 2
RECONCILE_PAYMENT_DAYS = 90
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _sync_in_progress(context: dg.ScheduleEvaluationContext) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=whop_sync_job.name, statuses=ACTIVE_RUN_STATUSES), limit=1
    )
    return bool(runs)


@dg.schedule(
    job=whop_sync_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: products, new members, the last two days of memberships and "
    "payments; CRM records rebuilt for what changed and pushed to Twenty.",
)
def whop_incremental_schedule(context: dg.ScheduleEvaluationContext):
    if _sync_in_progress(context):
        return dg.SkipReason("a whop_sync_job run is still queued or running")
    first, last = trailing_keys(context.scheduled_execution_time, INCREMENTAL_DAYS)
    return dg.RunRequest(tags={**range_tags(first, last), SYNC_MODE_TAG: SyncMode.INCREMENTAL})


@dg.schedule(
    job=whop_sync_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Daily: every member and membership, and the last {RECONCILE_PAYMENT_DAYS} days "
    "of payments, re-read; every CRM record compared with Twenty.",
)
def whop_reconcile_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time
    all_first, all_last = trailing_keys(now, days=10**6)
    pay_first, pay_last = trailing_keys(now, RECONCILE_PAYMENT_DAYS)
    everything = dg.AssetSelection.groups(*SYNC_GROUPS)
    payments = dg.AssetSelection.assets("whop_payments")
    asset_graph = context.repository_def.asset_graph
    day = now.strftime("%Y-%m-%d")
    # One partition range per run: memberships over all days, then payments over the trailing
    # window (each run then rebuilds and loads what its reads changed).
    yield dg.RunRequest(
        run_key=f"reconcile-memberships-{day}",
        asset_selection=sorted((everything - payments).resolve(asset_graph)),
        tags={**range_tags(all_first, all_last), SYNC_MODE_TAG: "reconcile-memberships"},
    )
    yield dg.RunRequest(
        run_key=f"reconcile-payments-{day}",
        asset_selection=sorted(
            (everything - dg.AssetSelection.assets("whop_memberships", "whop_members")).resolve(
                asset_graph
            )
        ),
        tags={**range_tags(pay_first, pay_last), SYNC_MODE_TAG: "reconcile-payments"},
    )

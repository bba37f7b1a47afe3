"""The schedules, per connection: a frequent incremental sync, a daily reconcile, a daily customer
health score and a weekly retraining of the health models.

Whop cannot list "what changed since" (docs/whop-api.md#listing-and-paging), so:
- incremental: products, new members, memberships and payments created in the last two daily
  partitions (yesterday as overlap), the members those need; CRM records rebuilt for what changed
  and loaded;
- reconcile: every member and membership (statuses change long after creation) and the trailing
  ``RECONCILE_PAYMENT_DAYS`` of payments (refunds and disputes change old payments), every CRM record
  compared with what Twenty last got.
Webhooks carry changes in between.

Each tick reads the connections table, so a connection added, paused or disconnected while the
daemon runs counts from the next tick; every run request is for one connection (tag
``whop/connection``), and a connection whose sync is still queued or running is skipped.
"""

from collections.abc import Iterator

import dagster as dg

from whop_pipeline.orchestration.jobs import (
    SYNC_GROUPS,
    health_models_job,
    health_scores_job,
    whop_sync_job,
)
from whop_pipeline.orchestration.partitions import INCREMENTAL_INTERVAL_MINUTES, trailing_keys
from whop_pipeline.orchestration.tags import CONNECTION_TAG, SYNC_MODE_TAG, SyncMode, range_tags
from whop_pipeline.store import connections
from whop_pipeline.store.resource import PipelineDatabase

INCREMENTAL_DAYS = 2
RECONCILE_PAYMENT_DAYS = 90
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def connection_runs_in_flight(
    instance: dg.DagsterInstance, connection: str, job_name: str | None = None, limit: int = 1
) -> list[dg.RunRecord]:
    """The connection's queued or running runs (of ``job_name``, or of any job)."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job_name, statuses=ACTIVE_RUN_STATUSES, tags={CONNECTION_TAG: connection}
            ),
            limit=limit,
        )
    )


def due_connections(pipeline_db: PipelineDatabase) -> list[str]:
    with pipeline_db.engine().connect() as conn:
        return connections.schedulable(conn)


@dg.schedule(
    job=whop_sync_job,
    cron_schedule=f"*/{INCREMENTAL_INTERVAL_MINUTES} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes, per active connection: products, new members, the last two "
    "days of memberships and payments; CRM records rebuilt for what changed and pushed to Twenty.",
)
def whop_incremental_schedule(
    context: dg.ScheduleEvaluationContext, pipeline_db: PipelineDatabase
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    first, last = trailing_keys(context.scheduled_execution_time, INCREMENTAL_DAYS)
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    launched = 0
    busy = []
    for name in due_connections(pipeline_db):
        if connection_runs_in_flight(context.instance, name, whop_sync_job.name):
            busy.append(name)
            continue
        launched += 1
        yield dg.RunRequest(
            run_key=f"incremental-{name}-{stamp}",
            tags={
                **range_tags(first, last),
                SYNC_MODE_TAG: SyncMode.INCREMENTAL,
                CONNECTION_TAG: name,
            },
        )
    if not launched:
        yield dg.SkipReason(
            f"a sync is still queued or running for {', '.join(busy)}"
            if busy
            else "no active connection (add one with `whop-pipeline connections add`)"
        )


@dg.schedule(
    job=whop_sync_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Daily, per active connection: every member and membership, and the last "
    f"{RECONCILE_PAYMENT_DAYS} days of payments, re-read; every CRM record compared with Twenty.",
)
def whop_reconcile_schedule(
    context: dg.ScheduleEvaluationContext, pipeline_db: PipelineDatabase
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    now = context.scheduled_execution_time
    all_first, all_last = trailing_keys(now, days=10**6)
    pay_first, pay_last = trailing_keys(now, RECONCILE_PAYMENT_DAYS)
    everything = dg.AssetSelection.groups(*SYNC_GROUPS)
    payments = dg.AssetSelection.assets("whop_payments")
    asset_graph = context.repository_def.asset_graph
    day = now.strftime("%Y-%m-%d")
    names = due_connections(pipeline_db)
    if not names:
        yield dg.SkipReason("no active connection")
        return
    for name in names:
        # One partition range per run: memberships over all days, then payments over the
        # trailing window (each run then rebuilds and loads what its reads changed). The
        # connection's run limit (dagster.yaml) runs them one after the other.
        yield dg.RunRequest(
            run_key=f"reconcile-memberships-{name}-{day}",
            asset_selection=sorted((everything - payments).resolve(asset_graph)),
            tags={
                **range_tags(all_first, all_last),
                SYNC_MODE_TAG: "reconcile-memberships",
                CONNECTION_TAG: name,
            },
        )
        yield dg.RunRequest(
            run_key=f"reconcile-payments-{name}-{day}",
            asset_selection=sorted(
                (everything - dg.AssetSelection.assets("whop_memberships", "whop_members")).resolve(
                    asset_graph
                )
            ),
            tags={
                **range_tags(pay_first, pay_last),
                SYNC_MODE_TAG: "reconcile-payments",
                CONNECTION_TAG: name,
            },
        )


def _per_connection(
    context: dg.ScheduleEvaluationContext, pipeline_db: PipelineDatabase, job_name: str, what: str
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    """One run of ``job_name`` per active connection without one already queued or running."""
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    names = due_connections(pipeline_db)
    launched = 0
    for name in names:
        if connection_runs_in_flight(context.instance, name, job_name):
            continue
        launched += 1
        yield dg.RunRequest(run_key=f"{what}-{name}-{stamp}", tags={CONNECTION_TAG: name})
    if not launched:
        yield dg.SkipReason(
            f"{what}: already queued or running" if names else "no active connection"
        )


@dg.schedule(
    job=health_scores_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily, per active connection, after the reconcile: every customer re-scored with "
    "the newest models; only changed values are written to Twenty.",
)
def health_scores_schedule(
    context: dg.ScheduleEvaluationContext, pipeline_db: PipelineDatabase
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    yield from _per_connection(context, pipeline_db, health_scores_job.name, "health-scores")


@dg.schedule(
    job=health_models_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly (Monday), per active connection: the churn and lead models retrained on "
    "the account's history, stored as new versions and checked.",
)
def health_models_schedule(
    context: dg.ScheduleEvaluationContext, pipeline_db: PipelineDatabase
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    yield from _per_connection(context, pipeline_db, health_models_job.name, "health-models")

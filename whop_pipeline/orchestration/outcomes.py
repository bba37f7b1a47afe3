"""What each connection's runs came to, recorded on its row, and its freshness evaluated.

Run status sensors write a sync run's start, end, outcome and error to the ``connections`` table,
so `whop-pipeline connections list` and the freshness check see them without opening Dagster. A run
that failed because a key was refused (401/403) marks the connection ``needs_reauth``; the next
successful run makes it ``active`` again.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from whop_pipeline.orchestration.jobs import whop_inbox_job, whop_sync_job
from whop_pipeline.orchestration.tags import CONNECTION_TAG
from whop_pipeline.settings import SettingsError, load_settings
from whop_pipeline.store import connections, sync_history
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty import freshness

AUTH_ERRORS = ("WhopAuthError", "TwentyAuthError")


def _connection_of(run: dg.DagsterRun, pipeline_db: PipelineDatabase) -> str:
    return run.tags.get(CONNECTION_TAG) or pipeline_db.connection_name


def _ensure_row(conn, name: str) -> bool:
    """The environment connection gets its row on first use; unknown names are ignored."""
    if connections.get(conn, name) is not None:
        return True
    if connections.environment_connection(os.environ) != name:
        return False
    try:
        settings = load_settings().connection
    except SettingsError:
        return False
    connections.ensure_environment_row(conn, settings, dt.datetime.now(dt.UTC))
    return True


FAILURE_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RESOURCE_INIT_FAILURE}


def first_error(instance: dg.DagsterInstance, run_id: str) -> tuple[str, bool] | None:
    """The run's first step or resource error in one line, and whether a key was refused."""
    records = instance.get_records_for_run(run_id, of_type=FAILURE_EVENTS, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is None:
            continue
        causes = [error]
        while causes[-1].cause is not None:
            causes.append(causes[-1].cause)
        auth = any(c.cls_name in AUTH_ERRORS or "refused the key" in c.message for c in causes)
        text = error.message.strip().removeprefix("dagster._core.definitions.events.Failure: ")
        where = event.step_key or "resources"
        return f"{where}: {text.splitlines()[0] if text else error.cls_name}", auth
    return None


def failure_summary(context: dg.RunFailureSensorContext) -> tuple[str, bool]:
    found = first_error(context.instance, context.dagster_run.run_id)
    return found or (context.failure_event.message or "the run failed", False)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.STARTED,
    monitored_jobs=[whop_sync_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a sync run's start on its connection.",
)
def connection_sync_started(context: dg.RunStatusSensorContext, pipeline_db: PipelineDatabase):
    run = context.dagster_run
    name = _connection_of(run, pipeline_db)
    with pipeline_db.engine().begin() as conn:
        if _ensure_row(conn, name):
            sync_history.record_sync_start(conn, name, run.run_id, dt.datetime.now(dt.UTC))


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[whop_sync_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a sync run's success on its connection (and clears its last error).",
)
def connection_sync_succeeded(context: dg.RunStatusSensorContext, pipeline_db: PipelineDatabase):
    run = context.dagster_run
    name = _connection_of(run, pipeline_db)
    with pipeline_db.engine().begin() as conn:
        if _ensure_row(conn, name):
            sync_history.record_sync_end(
                conn, name, run.run_id, succeeded=True, error=None, now=dt.datetime.now(dt.UTC)
            )


@dg.run_failure_sensor(
    monitored_jobs=[whop_sync_job, whop_inbox_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a failed run's error on its connection; a refused key marks it "
    "needs_reauth. The other connections go on.",
)
def connection_run_failed(context: dg.RunFailureSensorContext, pipeline_db: PipelineDatabase):
    run = context.dagster_run
    name = _connection_of(run, pipeline_db)
    message, auth = failure_summary(context)
    with pipeline_db.engine().begin() as conn:
        if not _ensure_row(conn, name):
            return
        if run.job_name == whop_sync_job.name:
            sync_history.record_sync_end(
                conn, name, run.run_id, succeeded=False, error=message, now=dt.datetime.now(dt.UTC)
            )
        else:
            connections.set_status(
                conn, name, connections.require(conn, name).status, error=message
            )
        if auth:
            connections.set_status(conn, name, "needs_reauth", error=message)


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: the connections_fresh check (each active connection synced "
    "within twice the incremental interval).",
)
def connection_freshness_sensor(
    context: dg.SensorEvaluationContext, pipeline_db: PipelineDatabase
) -> dg.SensorResult:
    del context
    return dg.SensorResult(asset_events=[freshness.evaluate(pipeline_db)])

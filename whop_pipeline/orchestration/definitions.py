"""The jobs, schedules and sensors as one ``Definitions`` (merged with the systems' assets)."""

import dagster as dg

from whop_pipeline.orchestration import jobs, outcomes, schedules, sensors

defs = dg.Definitions(
    jobs=[
        jobs.whop_sync_job,
        jobs.whop_inbox_job,
        jobs.health_models_job,
        jobs.health_scores_job,
    ],
    schedules=[
        schedules.whop_incremental_schedule,
        schedules.whop_reconcile_schedule,
        schedules.health_scores_schedule,
        schedules.health_models_schedule,
    ],
    sensors=[
        sensors.whop_webhook_sensor,
        outcomes.connection_sync_started,
        outcomes.connection_sync_succeeded,
        outcomes.connection_run_failed,
        outcomes.connection_freshness_sensor,
    ],
)

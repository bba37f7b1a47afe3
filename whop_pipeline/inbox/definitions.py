"""The webhook path: the inbox asset and its check, the job the sensor launches, the sensor."""

import dagster as dg

from whop_pipeline.inbox import assets, sensor

defs = dg.Definitions(
    assets=[assets.whop_webhook_inbox],
    asset_checks=[assets.whop_webhook_inbox_has_no_dead_events],
    jobs=[sensor.whop_inbox_job],
    sensors=[sensor.whop_webhook_sensor],
)

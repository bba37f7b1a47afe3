"""Everything Dagster needs from the Whop side: extract assets, their checks, the sync schedules."""

import dagster as dg

from whop_pipeline.whop import assets, checks, schedules

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[schedules.whop_sync_job],
    schedules=[schedules.whop_incremental_schedule, schedules.whop_reconcile_schedule],
)

"""The load assets (CRM records → Twenty)."""

import dagster as dg

from whop_pipeline.twenty import assets, freshness

defs = dg.Definitions(
    assets=[assets.twenty_schema, *assets.LOAD_ASSET_DEFS, assets.twenty_customer_health],
    asset_checks=[freshness.connections_fresh],
)

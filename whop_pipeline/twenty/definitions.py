"""The load assets (CRM frames → Twenty)."""

import dagster as dg

from whop_pipeline.twenty import assets

defs = dg.Definitions(
    assets=[
        assets.twenty_schema,
        assets.twenty_people,
        assets.twenty_products,
        assets.twenty_opportunities,
        assets.twenty_notes,
    ]
)

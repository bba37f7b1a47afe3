"""The transform assets (raw mirror → CRM frames)."""

import dagster as dg

from whop_pipeline.crm import assets

defs = dg.Definitions(
    assets=[
        assets.crm_people,
        assets.crm_products,
        assets.crm_opportunities,
        assets.crm_notes,
        assets.crm_note_targets,
    ]
)

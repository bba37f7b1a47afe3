"""The transform assets (mirror changes → CRM records)."""

import dagster as dg

from whop_pipeline.crm import assets

defs = dg.Definitions(assets=[assets.crm_records])

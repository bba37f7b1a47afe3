"""The health assets (models and scores; their load into Twenty lives with the other loads)."""

import dagster as dg

from whop_pipeline.health import assets

defs = dg.Definitions(assets=[assets.churn_model, assets.lead_model, assets.customer_health])

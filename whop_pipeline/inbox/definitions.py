"""The webhook path's assets: the inbox batch and its check."""

import dagster as dg

from whop_pipeline.inbox import assets

defs = dg.Definitions(
    assets=[assets.whop_webhook_inbox],
    asset_checks=[assets.whop_webhook_inbox_has_no_dead_events],
)

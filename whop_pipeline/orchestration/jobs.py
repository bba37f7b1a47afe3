"""The jobs: the sync (Whop → mirror → CRM records → Twenty), the webhook inbox batch, and customer
health (the models, weekly; the scores, daily)."""

import os

import dagster as dg

from whop_pipeline.orchestration.tags import CONNECTION_TAG
from whop_pipeline.settings import DEFAULT_CONNECTION

# A run launched by hand names no connection: it is the environment connection's, and says so, so
# the per-connection run limit and the UI's tag filter cover it too. Schedules, the sensor, the
# CLI and backfills tagged whop/connection=NAME override this.
DEFAULT_TAGS = {CONNECTION_TAG: os.environ.get("WHOP_PIPELINE_CONNECTION") or DEFAULT_CONNECTION}

SYNC_GROUPS = ("whop", "crm", "twenty")

# The freshness check looks at every connection; its sensor evaluates it, not a connection's run.
FRESHNESS_CHECK = dg.AssetCheckKey(dg.AssetKey("twenty_people"), "connections_fresh")
# The webhook's health costs a Whop call: each sync checks its connection's, webhook batches don't.
WEBHOOK_CHECK = dg.AssetCheckKey(dg.AssetKey("whop_webhook_inbox"), "whop_webhook_healthy")

whop_sync_job = dg.define_asset_job(
    "whop_sync_job",
    selection=(dg.AssetSelection.groups(*SYNC_GROUPS) - dg.AssetSelection.checks(FRESHNESS_CHECK))
    | dg.AssetSelection.checks(WEBHOOK_CHECK),
    description="Whop → raw mirror → CRM records → Twenty; memberships and payments over a range "
    "of daily partitions, the rest following what changed.",
    tags=DEFAULT_TAGS,
)

whop_inbox_job = dg.define_asset_job(
    "whop_inbox_job",
    selection=dg.AssetSelection.groups("inbox") - dg.AssetSelection.checks(WEBHOOK_CHECK),
    description="Apply one batch of webhook events and push what changed to Twenty.",
    tags=DEFAULT_TAGS,
)

health_models_job = dg.define_asset_job(
    "health_models_job",
    selection=dg.AssetSelection.assets("churn_model", "lead_model"),
    description="Retrain the churn and lead models on the connection's history; each training is "
    "stored as a new version and checked on a later window than it learned from.",
    tags=DEFAULT_TAGS,
)

health_scores_job = dg.define_asset_job(
    "health_scores_job",
    selection=dg.AssetSelection.assets("customer_health", "twenty_customer_health"),
    description="Score every customer with the newest models and write what changed to Twenty.",
    tags=DEFAULT_TAGS,
)

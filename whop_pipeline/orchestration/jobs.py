"""The jobs: the sync (Whop → mirror → CRM records → Twenty) and the webhook inbox batch."""

import dagster as dg

SYNC_GROUPS = ("whop", "crm", "twenty")

# The freshness check looks at every connection; its sensor evaluates it, not a connection's run.
FRESHNESS_CHECK = dg.AssetCheckKey(dg.AssetKey("twenty_people"), "connections_fresh")

whop_sync_job = dg.define_asset_job(
    "whop_sync_job",
    selection=dg.AssetSelection.groups(*SYNC_GROUPS) - dg.AssetSelection.checks(FRESHNESS_CHECK),
    description="Whop → raw mirror → CRM records → Twenty; memberships and payments over a range "
    "of daily partitions, the rest following what changed.",
)

whop_inbox_job = dg.define_asset_job(
    "whop_inbox_job",
    selection=dg.AssetSelection.groups("inbox"),
    description="Apply one batch of webhook events and push what changed to Twenty.",
)

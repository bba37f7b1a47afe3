"""Pool and tag names: what the assets, schedules, sensors and commands agree on."""

from __future__ import annotations

import dagster as dg

from whop_pipeline.settings import CONNECTION_TAG

__all__ = ["CONNECTION_TAG"]

# Which API budget a step spends (shown in the UI; ``whop/api``). The API budgets are a connection's
# own (its Whop key, its Twenty workspace), and a connection's runs never overlap: dagster.yaml
# limits runs per ``whop/connection`` value to one, and a run executes its steps in one process,
# one at a time. So no global pool is needed, and none serialises different connections.
API_TAG = "whop/api"
WHOP_API = {API_TAG: "whop"}
TWENTY_API = {API_TAG: "twenty"}

# How a sync run reads Whop and what it compares (see ``SyncMode``).
SYNC_MODE_TAG = "whop/sync"
# The inbox batch a run applies (set by `whop-pipeline inbox process`; the sensor uses run keys).
INBOX_BATCH_TAG = "whop/inbox_batch"
INBOX_ROWS_TAG = "whop/inbox_rows"

# Dagster's tags for a run over a partition range (single-run backfills), as the UI sets them:
# https://docs.dagster.io/guides/build/partitions-and-backfills/backfilling-data
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


class SyncMode:
    """``incremental``: new members (``created_after``) and the members that new memberships and
    payments lack; loads the CRM records rebuilt since the last load. Any other mode (``full``,
    ``since``, the reconcile's): every member, and every CRM record compared with what Twenty last
    got. A run without the tag (launched by hand in the UI) is incremental."""

    INCREMENTAL = "incremental"
    FULL = "full"

    @staticmethod
    def is_full(context: dg.AssetExecutionContext) -> bool:
        return context.run.tags.get(SYNC_MODE_TAG, SyncMode.INCREMENTAL) != SyncMode.INCREMENTAL


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags that make one run cover a partition range (the assets use single-run backfills)."""
    return {PARTITION_RANGE_START_TAG: first_key, PARTITION_RANGE_END_TAG: last_key}

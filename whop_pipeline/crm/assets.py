"""The transform: mirror changes → CRM records (``crm_records``), one step for the five objects.

The step consumes the mirror's change queue a chunk at a time, so its work follows what changed;
the mapping itself is the pure pandas functions of ``frames``.
"""

import dagster as dg

from whop_pipeline.crm import build
from whop_pipeline.store import crm as store
from whop_pipeline.store.resource import PipelineDatabase

# CRM object → asset name, in load order.
CRM_ASSETS = {
    "people": "crm_people",
    "whopProducts": "crm_products",
    "opportunities": "crm_opportunities",
    "notes": "crm_notes",
    "noteTargets": "crm_note_targets",
}
DESCRIPTIONS = {
    "people": "One Twenty Person per Whop user (or business buyer), emails de-duplicated.",
    "whopProducts": "One whopProduct record per Whop product.",
    "opportunities": "One Opportunity per membership: stage, amount, renewal date, its person.",
    "notes": "One Note per payment, titled with status, amount and product.",
    "noteTargets": "Links from each payment's Note to its Person and, with one, its Opportunity.",
}
WHOP_DEPS = ["whop_members", "whop_products", "whop_memberships", "whop_payments"]


class TransformConfig(dg.Config):
    rebuild: bool = False
    """Rebuild every CRM record from the mirror (a new mapping version does this by itself)."""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CRM_ASSETS[name],
            deps=WHOP_DEPS,
            group_name="crm",
            kinds={"pandas", "sql"},
            description=DESCRIPTIONS[name],
        )
        for name in build.OBJECTS
    ],
    name="crm_records",
)
def crm_records(
    context: dg.AssetExecutionContext, config: TransformConfig, pipeline_db: PipelineDatabase
):
    """CRM records rebuilt for the mirror rows that changed since the last transform."""
    engine = pipeline_db.engine()
    connection = pipeline_db.connection
    report = build.build_queued(
        engine, connection, rebuild=config.rebuild, progress=context.log.info
    )
    with engine.connect() as conn:
        totals = {name: store.count_records(conn, connection, name) for name in build.OBJECTS}
    for name in build.OBJECTS:
        yield dg.MaterializeResult(
            asset_key=CRM_ASSETS[name],
            metadata={
                "dagster/row_count": totals[name],
                "connection": connection,
                "rebuilt": report.rebuilt_count[name],
                "changed": report.changed_count[name],
                "mirror_changes": report.changes_consumed,
                "full_rebuild": report.full_rebuild,
            },
        )

"""Load assets: CRM records → Twenty, one per object in the load order (``OBJECTS``), each after
the one before. Each sends its records whose digest differs from ``sync_state`` in batch upserts and
records every outcome (``TwentyLoad.load``, the same call the webhook runs make)."""

import dagster as dg

from whop_pipeline.crm.assets import CRM_ASSETS
from whop_pipeline.crm.build import OBJECTS
from whop_pipeline.health.records import OPPORTUNITY_HEALTH, PERSON_HEALTH
from whop_pipeline.orchestration.tags import TWENTY_API, SyncMode
from whop_pipeline.store import sync_history
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.twenty.schema import missing_schema
from whop_pipeline.twenty.upserter import LoadCounts

# CRM object → load asset name.
LOAD_ASSETS = {
    "people": "twenty_people",
    "whopProducts": "twenty_products",
    "opportunities": "twenty_opportunities",
    "notes": "twenty_notes",
    "noteTargets": "twenty_note_targets",
}
DESCRIPTIONS = {
    "people": "People upserted into Twenty, matched on whopUserId or email (contacts are linked).",
    "whopProducts": "Whop products upserted as whopProduct records, matched on whopProductId.",
    "opportunities": "Opportunities upserted by deterministic id, linked to their person.",
    "notes": "Payment notes upserted by deterministic id and whopPaymentId.",
    "noteTargets": "Links from payment notes to their people and opportunities.",
}


class LoadConfig(dg.Config):
    dry_run: bool = False
    """Plan only: count what would be written, write nothing to Twenty."""


load = {"group_name": "twenty", "kinds": {"twenty"}, "op_tags": TWENTY_API}


@dg.asset(**load)
def twenty_schema(
    context: dg.AssetExecutionContext, config: LoadConfig, twenty: TwentyResource
) -> dg.MaterializeResult:
    """The workspace's custom fields, stages and whopProduct object, created where missing."""
    with twenty.client(on_retry=context.log.warning) as client:
        caps, report = twenty.capabilities(
            client, context.run.run_id, create_missing=not config.dry_run
        )
        calls = client.stats.calls
    created = report.created if report else []
    for item in created:
        context.log.info(f"created {item}")
    return dg.MaterializeResult(
        metadata={
            "created": len(created),
            "created_items": dg.MetadataValue.json(created),
            "would_create": dg.MetadataValue.json(missing_schema(caps) if config.dry_run else []),
            "already_present": report.present if report else 0,
            "note_target_links": caps.note_target_links.person,
            "note_body_field": caps.note_body_field,
            "stages": dg.MetadataValue.json(caps.stage_values()),
            "api_calls": calls,
            "connection": twenty.connection,
        }
    )


def _result(session: TwentyLoad, counts: LoadCounts, **extra: object) -> dg.MaterializeResult:
    """Metadata: the object's counts and the API's bill."""
    stats = session.client.stats
    metadata: dict[str, object] = {
        "dagster/row_count": counts.created + counts.updated,
        "connection": session.connection,
        **counts.metadata(),
        **extra,
        "api_calls": stats.calls,
        "write_calls": session.client.write_calls,
        "throttled_429": stats.throttled,
        "retries": stats.retries,
        "dry_run": session.dry_run,
    }
    return dg.MaterializeResult(metadata=metadata)


def _session(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
):
    """The run's load session for its connection, logging to the run."""
    return twenty.load_session(
        run_id=context.run.run_id,
        engine=pipeline_db.engine(),
        connection=pipeline_db.connection,
        log=context.log.info,
        on_retry=context.log.warning,
        dry_run=config.dry_run,
    )


def _load_asset(object_name: str, previous: str | None) -> dg.AssetsDefinition:
    deps = ["twenty_schema", CRM_ASSETS[object_name], *([previous] if previous else [])]

    @dg.asset(
        name=LOAD_ASSETS[object_name],
        deps=deps,
        description=DESCRIPTIONS[object_name],
        **load,
    )
    def load_object(
        context: dg.AssetExecutionContext,
        config: LoadConfig,
        twenty: TwentyResource,
        pipeline_db: PipelineDatabase,
    ) -> dg.MaterializeResult:
        with _session(context, config, twenty, pipeline_db) as session:
            full = SyncMode.is_full(context)
            counts = session.load(object_name, full=full)
            extra: dict[str, object] = {"compared": "every record" if full else "changed records"}
            if object_name == "opportunities":
                extra["without_point_of_contact"] = session.outcome.unlinked_opportunities
            if not session.dry_run:
                with pipeline_db.engine().begin() as conn:
                    sync_history.record_written(
                        conn,
                        session.connection,
                        context.run.run_id,
                        counts.created + counts.updated,
                    )
            return _result(session, counts, **extra)

    return load_object


LOAD_ASSET_DEFS = [
    _load_asset(name, LOAD_ASSETS[OBJECTS[i - 1]] if i else None) for i, name in enumerate(OBJECTS)
]


@dg.asset(
    deps=["customer_health", "twenty_people", "twenty_opportunities"],
    group_name="health",
    kinds={"twenty"},
    op_tags=TWENTY_API,
)
def twenty_customer_health(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
) -> dg.MaterializeResult:
    """Health fields written onto Twenty people and opportunities, only where a value changed."""
    with _session(context, config, twenty, pipeline_db) as session:
        people = session.load(PERSON_HEALTH)
        opportunities = session.load(OPPORTUNITY_HEALTH)
        extra = {
            f"{prefix}_{name}": value
            for prefix, counts in (("people", people), ("opportunities", opportunities))
            for name, value in counts.metadata().items()
        }
        total = people + opportunities
        return _result(session, total, **extra)

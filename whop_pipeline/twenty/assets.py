"""Load assets: CRM frames → Twenty. Each diffs its rows against ``sync_state``, sends only what
changed in batch upserts, and retries the rows an earlier run could not land (``TwentyLoad``)."""

import dagster as dg
import pandas as pd

from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.twenty.schema import missing_schema
from whop_pipeline.twenty.upserter import LoadCounts
from whop_pipeline.whop.partitions import DAILY

# Every step that spends the workspace's rate limit runs alone across runs (dagster.yaml sets the
# pool limit); the client's own limiter paces the calls within a step.
TWENTY_POOL = "twenty_api"


class LoadConfig(dg.Config):
    dry_run: bool = False
    """Plan only: count what would be written, write nothing to Twenty."""


load = {"group_name": "twenty", "kinds": {"twenty"}, "pool": TWENTY_POOL}


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
        }
    )


def _session(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
):
    return twenty.load_session(
        run_id=context.run.run_id,
        engine=pipeline_db.engine(),
        connection=pipeline_db.connection_name,
        log=context.log.info,
        on_retry=context.log.warning,
        dry_run=config.dry_run,
    )


def _result(
    session: TwentyLoad, rows: int, counts: dict[str, LoadCounts], **extra: object
) -> dg.MaterializeResult:
    """Metadata: the frame's rows, each object's counts (under its prefix), the API's bill."""
    metadata: dict[str, object] = {"dagster/row_count": rows, **extra}
    for prefix, c in counts.items():
        metadata.update({f"{prefix}{k}": v for k, v in c.metadata().items()})
    stats = session.client.stats
    metadata.update(
        {
            "api_calls": stats.calls,
            "write_calls": session.client.write_calls,
            "throttled_429": stats.throttled,
            "retries": stats.retries,
            "dry_run": session.dry_run,
        }
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(deps=[twenty_schema], **load)
def twenty_people(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_people: pd.DataFrame,
) -> dg.MaterializeResult:
    """People upserted into Twenty, matched on whopUserId or email (existing contacts are linked)."""
    with _session(context, config, twenty, pipeline_db) as session:
        return _result(session, len(crm_people), {"": session.people(crm_people)})


@dg.asset(deps=[twenty_schema], **load)
def twenty_products(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_products: pd.DataFrame,
) -> dg.MaterializeResult:
    """Whop products upserted as whopProduct records, matched on whopProductId."""
    with _session(context, config, twenty, pipeline_db) as session:
        return _result(session, len(crm_products), {"": session.products(crm_products)})


@dg.asset(deps=[twenty_schema, twenty_people], **load, **DAILY)
def twenty_opportunities(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_opportunities: pd.DataFrame,
) -> dg.MaterializeResult:
    """Opportunities upserted by deterministic id and whopMembershipId, linked to their person."""
    with _session(context, config, twenty, pipeline_db) as session:
        counts = session.opportunities(crm_opportunities)
        return _result(
            session,
            len(crm_opportunities),
            {"": counts},
            without_point_of_contact=session.outcome.unlinked_opportunities,
        )


@dg.asset(deps=[twenty_schema, twenty_people, twenty_opportunities], **load, **DAILY)
def twenty_notes(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_notes: pd.DataFrame,
    crm_note_targets: pd.DataFrame,
) -> dg.MaterializeResult:
    """Payment notes upserted by deterministic id, then their links to people and opportunities."""
    with _session(context, config, twenty, pipeline_db) as session:
        notes, targets = session.notes(crm_notes, crm_note_targets)
        return _result(session, len(crm_notes), {"notes_": notes, "targets_": targets})

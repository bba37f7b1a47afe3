"""The webhook path in the asset graph: each run applies one batch of inbox rows and pushes what
they changed to Twenty; a check keeps dead events in sight."""

import dagster as dg
import sqlalchemy as sa

from whop_pipeline.inbox import store
from whop_pipeline.inbox.processing import process_batch
from whop_pipeline.orchestration.tags import INBOX_BATCH_TAG, TWENTY_API
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.whop.resource import WhopResource

SAMPLE = 5


class InboxBatchConfig(dg.Config):
    inbox_ids: list[int]
    """The webhook_inbox rows this run applies (rows another run already claimed are skipped)."""


def _run_key(context: dg.AssetExecutionContext) -> str:
    tags = context.run.tags
    return tags.get("dagster/run_key") or tags.get(INBOX_BATCH_TAG) or f"run-{context.run.run_id}"


@dg.asset(group_name="inbox", kinds={"whop", "twenty"}, op_tags=TWENTY_API)
def whop_webhook_inbox(
    context: dg.AssetExecutionContext,
    config: InboxBatchConfig,
    whop: WhopResource,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
) -> dg.MaterializeResult:
    """Webhook events applied to the raw mirror and pushed to Twenty through the sync's load code."""
    engine = pipeline_db.engine()
    report = process_batch(
        config.inbox_ids,
        run_key=_run_key(context),
        run_id=context.run.run_id,
        engine=engine,
        connection=pipeline_db.connection,
        whop=whop,
        twenty=twenty,
        log=context.log.info,
    )
    with engine.connect() as conn:
        statuses = store.status_counts(conn, pipeline_db.connection)
    metadata: dict[str, object] = {
        "dagster/row_count": len(report.claimed),
        "connection": pipeline_db.connection,
        "claimed": len(report.claimed),
        "done": len(report.done),
        "failed": len(report.failed),
        "ignored": report.ignored,
        "inbox": dg.MetadataValue.json(statuses),
    }
    if report.affected is not None:
        metadata["mirror_written"] = report.affected.mirror.written
        metadata["mirror_stale_ignored"] = report.affected.mirror.stale
        metadata["whop_fetches"] = report.affected.fetched
    if report.built is not None:
        metadata["crm_records_changed"] = sum(report.built.changed_count.values())
    for name, counts in report.counts.items():
        metadata.update({f"{name}_{k}": v for k, v in counts.metadata().items() if v})
    context.log.info(str(metadata))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=whop_webhook_inbox,
    description=f"No webhook event has failed {store.MAX_ATTEMPTS} times (dead events need a person).",
)
def whop_webhook_inbox_has_no_dead_events(pipeline_db: PipelineDatabase) -> dg.AssetCheckResult:
    t = store.inbox
    with pipeline_db.engine().connect() as conn:
        counts = store.status_counts(conn, pipeline_db.connection)
        dead = conn.execute(
            sa.select(t.c.id, t.c.event_type, t.c.object_id, t.c.last_error)
            .where(t.c.status == "dead", t.c.connection == pipeline_db.connection)
            .order_by(t.c.id.desc())
            .limit(SAMPLE)
        ).all()
    return dg.AssetCheckResult(
        passed=not counts.get("dead"),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            None
            if not counts.get("dead")
            else f"{counts['dead']} webhook events gave up after {store.MAX_ATTEMPTS} attempts; "
            "the newest errors are in the metadata. Fix the cause, then set their status back to "
            "'pending' (or run `whop-pipeline sync --full`, which re-reads everything)."
        ),
        metadata={
            "connection": pipeline_db.connection,
            "inbox": dg.MetadataValue.json(counts),
            "dead_sample": dg.MetadataValue.json([dict(row._mapping) for row in dead]),
        },
    )

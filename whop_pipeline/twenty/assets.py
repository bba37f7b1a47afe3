"""Load assets: CRM frames → Twenty. Each diffs its rows against ``sync_state``, sends only what
changed in batch upserts, and retries the rows an earlier run could not land."""

import dagster as dg
import pandas as pd

from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty import records
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.twenty.upserter import LoadCounts, TwentyUpserter, stored_retries, synced_ids
from whop_pipeline.whop.partitions import daily_partitions

# Every step that spends the workspace's rate limit runs alone across runs (dagster.yaml sets the
# pool limit); the client's own limiter paces the calls within a step.
TWENTY_POOL = "twenty_api"


class LoadConfig(dg.Config):
    dry_run: bool = False
    """Plan only: count what would be written, write nothing to Twenty."""


load = {"group_name": "twenty", "kinds": {"twenty"}, "pool": TWENTY_POOL}
partitioned = {
    "partitions_def": daily_partitions,
    "backfill_policy": dg.BackfillPolicy.single_run(),
}


@dg.asset(**load)
def twenty_schema(
    context: dg.AssetExecutionContext, config: LoadConfig, twenty: TwentyResource
) -> dg.MaterializeResult:
    """The workspace's custom fields, stages and whopProduct object, created where missing."""
    with twenty.client(on_retry=context.log.warning) as client:
        caps, report = twenty.capabilities(
            client, context.run_id, create_missing=not config.dry_run
        )
        calls = client.stats.calls
    created = report.created if report else []
    for item in created:
        context.log.info(f"created {item}")
    return dg.MaterializeResult(
        metadata={
            "created": len(created),
            "created_items": dg.MetadataValue.json(created),
            "already_present": report.present if report else 0,
            "note_target_links": caps.note_target_links.person,
            "note_body_field": caps.note_body_field,
            "stages": dg.MetadataValue.json(caps.stage_values()),
            "api_calls": calls,
        }
    )


class _Load:
    """One load step: a client, the run's capabilities, and an upserter per object."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        config: LoadConfig,
        twenty: TwentyResource,
        pipeline_db: PipelineDatabase,
    ) -> None:
        self.context = context
        self.config = config
        self.twenty = twenty
        self.engine = pipeline_db.engine()
        self.connection = pipeline_db.connection_name
        self.client: TwentyClient = twenty.client(on_retry=context.log.warning)
        self.caps: Capabilities
        self.caps, _ = twenty.capabilities(
            self.client, context.run_id, create_missing=not config.dry_run
        )

    def upserter(self, plural: str, singular: str) -> TwentyUpserter:
        return TwentyUpserter(
            self.client,
            self.engine,
            connection=self.connection,
            plural=plural,
            unique_paths=self.caps.unique_fields(singular),
            batch_size=self.twenty.batch_size,
            log=self.context.log.info,
        )

    def frame_rows(self, frame: pd.DataFrame, plural: str) -> list[dict]:
        return records.merge_retries(
            records.frame_rows(frame), stored_retries(self.engine, self.connection, plural)
        )

    def run(self, upserter: TwentyUpserter, rows: list[records.PreparedRow]) -> LoadCounts:
        changed = upserter.plan(rows)
        if self.config.dry_run:
            self.context.log.info(f"dry run: {len(changed)} {upserter.plural} would be written")
            counts = upserter.counts
            counts.created = sum(1 for r in changed if r.key not in upserter._previous)
            counts.updated = len(changed) - counts.created
            return counts
        return upserter.send(changed)

    def ids(self, plural: str, keys) -> dict[str, str]:
        return synced_ids(self.engine, self.connection, plural, keys)

    def result(
        self, rows: int, counts: dict[str, LoadCounts], **extra: object
    ) -> dg.MaterializeResult:
        """Metadata: the frame's rows, each object's counts (under its prefix), the API's bill."""
        metadata: dict[str, object] = {"dagster/row_count": rows, **extra}
        for prefix, c in counts.items():
            metadata.update({f"{prefix}{k}": v for k, v in c.metadata().items()})
        metadata.update(
            {
                "api_calls": self.client.stats.calls,
                "write_calls": self.client.write_calls,
                "throttled_429": self.client.stats.throttled,
                "retries": self.client.stats.retries,
                "batch_size": self.twenty.batch_size,
                "dry_run": self.config.dry_run,
            }
        )
        self.client.close()
        self.context.log.info(str(metadata))
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
    step = _Load(context, config, twenty, pipeline_db)
    upserter = step.upserter("people", "person")
    rows = records.prepare_plain(step.frame_rows(crm_people, "people"))
    return step.result(len(crm_people), {"": step.run(upserter, rows)})


@dg.asset(deps=[twenty_schema], **load)
def twenty_products(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_products: pd.DataFrame,
) -> dg.MaterializeResult:
    """Whop products upserted as whopProduct records, matched on whopProductId."""
    step = _Load(context, config, twenty, pipeline_db)
    upserter = step.upserter("whopProducts", "whopProduct")
    rows = records.prepare_plain(step.frame_rows(crm_products, "whopProducts"))
    return step.result(len(crm_products), {"": step.run(upserter, rows)})


@dg.asset(deps=[twenty_schema, twenty_people], **load, **partitioned)
def twenty_opportunities(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_opportunities: pd.DataFrame,
) -> dg.MaterializeResult:
    """Opportunities upserted by deterministic id and whopMembershipId, linked to their person."""
    step = _Load(context, config, twenty, pipeline_db)
    upserter = step.upserter("opportunities", "opportunity")
    source = step.frame_rows(crm_opportunities, "opportunities")
    person_ids = step.ids("people", [r["_person_key"] for r in source if r.get("_person_key")])
    rows, unlinked = records.prepare_opportunities(source, person_ids)
    counts = step.run(upserter, rows)
    return step.result(len(crm_opportunities), {"": counts}, without_point_of_contact=unlinked)


@dg.asset(deps=[twenty_schema, twenty_people, twenty_opportunities], **load, **partitioned)
def twenty_notes(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    twenty: TwentyResource,
    pipeline_db: PipelineDatabase,
    crm_notes: pd.DataFrame,
    crm_note_targets: pd.DataFrame,
) -> dg.MaterializeResult:
    """Payment notes upserted by deterministic id, then their links to people and opportunities."""
    step = _Load(context, config, twenty, pipeline_db)
    notes = step.upserter("notes", "note")
    note_counts = step.run(
        notes, records.prepare_notes(step.frame_rows(crm_notes, "notes"), step.caps)
    )

    targets = step.upserter("noteTargets", "noteTarget")
    source = step.frame_rows(crm_note_targets, "noteTargets")
    by_kind: dict[str, list[str]] = {}
    for row in source:
        by_kind.setdefault(row["_target_kind"], []).append(row["_target_key"])
    ready, waiting = records.prepare_note_targets(
        source,
        step.caps,
        person_ids=step.ids("people", by_kind.get("person", [])),
        opportunity_ids=step.ids("opportunities", by_kind.get("opportunity", [])),
        note_ids=step.ids("notes", {row["_note_key"] for row in source}),
    )
    if not config.dry_run:
        targets.defer(waiting)
    target_counts = step.run(targets, ready)
    return step.result(len(crm_notes), {"notes_": note_counts, "targets_": target_counts})

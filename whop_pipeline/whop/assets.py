"""Extract assets: Whop API → raw mirror. Memberships and payments are read by daily
``created_at`` partitions (widened by ``WINDOW_OVERLAP``); products are a full scan (a few pages);
members are a full scan in full and reconcile runs, and otherwise only the new ones plus those the
run's new memberships and payments need (docs/whop-api.md#listing-and-paging: nothing lists "what
changed since", and member webhooks carry the changes in between)."""

import datetime as dt

import dagster as dg

from whop_pipeline.orchestration.partitions import DAILY, partition_window
from whop_pipeline.orchestration.tags import WHOP_API, SyncMode
from whop_pipeline.store.database import ANALYZE_AFTER_ROWS, analyze
from whop_pipeline.store.raw import count_raw, newest_member
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.store.tables import RAW_TABLES
from whop_pipeline.whop.client import WhopClient
from whop_pipeline.whop.mirror import ExtractStats, copy_listing, copy_objects, members_to_fetch
from whop_pipeline.whop.resource import WhopResource

# Where a read window is widened on both sides: rows near a boundary (bound inclusiveness is
# undocumented, clocks drift) are read twice rather than missed. Writes are idempotent upserts keyed
# by id, so reading twice costs nothing but a few rows.
WINDOW_OVERLAP = dt.timedelta(hours=1)
PROGRESS_EVERY_PAGES = 20
extract = {"group_name": "whop", "kinds": {"whop", "sql"}, "op_tags": WHOP_API}


def _progress(context: dg.AssetExecutionContext, resource: str):
    def report(stats: ExtractStats) -> None:
        if stats.pages % PROGRESS_EVERY_PAGES == 0:
            context.log.info(f"{resource}: {stats.pages} pages, {stats.fetched} rows so far")

    return report


def _metadata(
    stats: dict[str, ExtractStats], client: WhopClient, mirror_rows: int
) -> dict[str, dg.MetadataValue | int | float | str]:
    fetched = sum(s.fetched for s in stats.values())
    return {
        "dagster/row_count": mirror_rows,
        "fetched": fetched,
        "inserted": sum(s.counts.inserted for s in stats.values()),
        "updated": sum(s.counts.updated for s in stats.values()),
        "unchanged": sum(s.counts.unchanged for s in stats.values()),
        "stale_ignored": sum(s.counts.stale for s in stats.values()),
        "pages": sum(s.pages for s in stats.values()),
        "api_calls": client.stats.calls,
        "retries": client.stats.retries,
        "throttled_429": client.stats.throttled,
        "backoff_seconds": round(client.stats.backoff_seconds, 2),
    }


def _extract(
    context: dg.AssetExecutionContext,
    whop: WhopResource,
    pipeline_db: PipelineDatabase,
    listings: list[tuple[str, str]],
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> dg.MaterializeResult:
    engine = pipeline_db.engine()
    created_after = created_before = None
    if window is not None:
        created_after, created_before = window[0] - WINDOW_OVERLAP, window[1] + WINDOW_OVERLAP
        context.log.info(f"reading created_at in ({created_after}, {created_before})")
    stats: dict[str, ExtractStats] = {}
    with whop.client(on_retry=context.log.warning) as client:
        for resource, table in listings:
            stats[table] = copy_listing(
                client,
                engine,
                resource=resource,
                table=table,
                connection_name=pipeline_db.connection,
                created_after=created_after,
                created_before=created_before,
                progress=_progress(context, resource),
            )
        with engine.begin() as conn:
            grown = [t for t, st in stats.items() if st.counts.inserted >= ANALYZE_AFTER_ROWS]
            analyze(conn, *(RAW_TABLES[t].name for t in grown))
            mirror_rows = count_raw(conn, listings[0][1], pipeline_db.connection)
    metadata = _metadata(stats, client, mirror_rows)
    metadata["connection"] = pipeline_db.connection
    context.log.info(f"{listings[0][1]}: {metadata}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(**extract)
def whop_products(
    context: dg.AssetExecutionContext, whop: WhopResource, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """Every product of the account and its plans (variants), copied into the raw mirror."""
    return _extract(context, whop, pipeline_db, [("products", "products"), ("variants", "plans")])


@dg.asset(**extract, **DAILY)
def whop_memberships(
    context: dg.AssetExecutionContext, whop: WhopResource, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """Memberships created in the partition's days, copied into the raw mirror."""
    return _extract(
        context, whop, pipeline_db, [("memberships", "memberships")], partition_window(context)
    )


@dg.asset(**extract, **DAILY)
def whop_payments(
    context: dg.AssetExecutionContext, whop: WhopResource, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """Payments created in the partition's days, copied into the raw mirror."""
    return _extract(
        context, whop, pipeline_db, [("payments", "payments")], partition_window(context)
    )


# After memberships and payments: an incremental run reads the members they need.
@dg.asset(deps=[whop_memberships, whop_payments], **extract)
def whop_members(
    context: dg.AssetExecutionContext, whop: WhopResource, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """The account's members (buyers) with their emails, copied into the raw mirror."""
    if SyncMode.is_full(context):
        return _extract(context, whop, pipeline_db, [("members", "members")])
    engine = pipeline_db.engine()
    connection = pipeline_db.connection
    with engine.connect() as conn:
        newest = newest_member(conn, connection)
    stats: dict[str, ExtractStats] = {}
    with whop.client(on_retry=context.log.warning) as client:
        stats["members"] = copy_listing(
            client,
            engine,
            resource="members",
            table="members",
            connection_name=connection,
            created_after=newest - WINDOW_OVERLAP if newest else None,
            progress=_progress(context, "members"),
        )
        with engine.connect() as conn:
            needed = members_to_fetch(conn, connection)
        if needed:
            context.log.info(f"reading {len(needed)} members that new memberships or payments need")
        stats["referenced"] = copy_objects(client, engine, "members", needed, connection)
        with engine.begin() as conn:
            if stats["members"].counts.inserted >= ANALYZE_AFTER_ROWS:
                analyze(conn, "raw_members")
            mirror_rows = count_raw(conn, "members", connection)
    metadata = _metadata(stats, client, mirror_rows)
    metadata["connection"] = connection
    metadata["mode"] = "new members since the newest in the mirror" if newest else "full scan"
    metadata["referenced_fetched"] = stats["referenced"].fetched
    return dg.MaterializeResult(metadata=metadata)

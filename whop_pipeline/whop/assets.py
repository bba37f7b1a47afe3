"""Extract assets: Whop API → raw mirror. Members and products are full scans; memberships and
payments are read by daily ``created_at`` partitions (widened by ``WINDOW_OVERLAP``)."""

import datetime as dt

import dagster as dg

from whop_pipeline.store.raw import count_raw
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.whop.client import WhopClient
from whop_pipeline.whop.mirror import ExtractStats, copy_listing
from whop_pipeline.whop.partitions import DAILY, WINDOW_OVERLAP, partition_window
from whop_pipeline.whop.resource import WhopResource

# Steps that spend the Whop key's rate limit run one at a time across runs.
WHOP_POOL = "whop_api"
PROGRESS_EVERY_PAGES = 20
extract = {"group_name": "whop", "kinds": {"whop", "sql"}, "pool": WHOP_POOL}


def _progress(context: dg.AssetExecutionContext, resource: str):
    def report(stats: ExtractStats) -> None:
        if stats.pages % PROGRESS_EVERY_PAGES == 0:
            context.log.info(f"{resource}: {stats.pages} pages, {stats.fetched} rows so far")

    return report


def _metadata(
    stats: dict[str, ExtractStats], client: WhopClient, mirror_rows: int
) -> dict[str, dg.MetadataValue | int | float]:
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
                connection_name=pipeline_db.connection_name,
                created_after=created_after,
                created_before=created_before,
                progress=_progress(context, resource),
            )
        with engine.connect() as conn:
            mirror_rows = count_raw(conn, listings[0][1], pipeline_db.connection_name)
    metadata = _metadata(stats, client, mirror_rows)
    context.log.info(f"{listings[0][1]}: {metadata}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(**extract)
def whop_members(
    context: dg.AssetExecutionContext, whop: WhopResource, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """Every member (buyer) of the Whop account, with email, copied into the raw mirror."""
    return _extract(context, whop, pipeline_db, [("members", "members")])


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

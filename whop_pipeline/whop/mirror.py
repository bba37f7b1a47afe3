"""Whop models → raw-mirror records, and the page-by-page copy of a listing into the mirror."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.store.raw import RawRecord, UpsertCounts, upsert_raw
from whop_pipeline.whop.client import WhopClient
from whop_pipeline.whop.models import Member, Membership, Payment, Plan, Product, WhopModel


def to_raw_record(model: WhopModel, observed_at: dt.datetime) -> RawRecord:
    """The mirror row for one object. Members have no ``updated_at``: the time this copy was
    observed stands in, so the newest observation wins."""
    payload = model.to_json()
    if isinstance(model, Member):
        user_id = model.user.id if model.user else None
        links = {"user_id": user_id, "email": model.email}
        return RawRecord(model.id, model.created_at, observed_at, payload, links)
    if isinstance(model, Membership):
        links = {
            "member_id": model.member_id,
            "user_id": model.user_id,
            "product_id": model.product_id,
            "status": model.status,
        }
        return RawRecord(model.id, model.created_at, model.updated_at, payload, links)
    if isinstance(model, Payment):
        links = {
            "membership_id": model.membership_id,
            "member_id": model.member_id,
            "user_id": model.user.id if model.user else None,
            "product_id": model.product_id,
            "status": model.status,
        }
        return RawRecord(model.id, model.created_at, model.updated_at, payload, links)
    if isinstance(model, Plan):
        product_id = model.product.id if model.product else None
        return RawRecord(
            model.id, model.created_at, model.updated_at, payload, {"product_id": product_id}
        )
    if isinstance(model, Product):
        return RawRecord(model.id, model.created_at, model.updated_at, payload)
    raise TypeError(f"no mirror table for {type(model).__name__}")


@dataclass
class ExtractStats:
    fetched: int = 0
    pages: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)


def copy_listing(
    client: WhopClient,
    engine: sa.Engine,
    *,
    resource: str,
    table: str,
    connection_name: str,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    progress: Callable[[ExtractStats], None] | None = None,
) -> ExtractStats:
    """Stream a listing into the mirror one page per transaction: memory holds one page, and a crash
    keeps every page already written (re-running rewrites nothing that did not change)."""
    stats = ExtractStats()
    for page in client.iter_pages(
        resource, created_after=created_after, created_before=created_before
    ):
        observed_at = dt.datetime.now(dt.UTC)
        records = [to_raw_record(item, observed_at) for item in page.data]
        with engine.begin() as conn:
            stats.counts.add(
                upsert_raw(conn, table, connection_name, records, extracted_at=observed_at)
            )
        stats.fetched += len(records)
        stats.pages += 1
        if progress is not None:
            progress(stats)
    return stats

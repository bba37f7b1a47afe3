"""Whop models → raw-mirror records, and the page-by-page copy of a listing into the mirror."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.store.database import in_chunks
from whop_pipeline.store.raw import RawRecord, UpsertCounts, read_raw, upsert_raw
from whop_pipeline.store.tables import mirror_changes, raw_members, raw_memberships, raw_payments
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


def copy_objects(
    client: WhopClient, engine: sa.Engine, resource: str, ids: Sequence[str], connection_name: str
) -> ExtractStats:
    """Read objects one by one (``GET /<resource>/{id}``) into the mirror; an id Whop no longer
    knows (404) is skipped."""
    stats = ExtractStats()
    for object_id in ids:
        model = client.retrieve_if_exists(resource, object_id)
        if model is None:
            continue
        observed_at = dt.datetime.now(dt.UTC)
        with engine.begin() as conn:
            stats.counts.add(
                upsert_raw(conn, resource, connection_name, [to_raw_record(model, observed_at)])
            )
        stats.fetched += 1
        stats.pages += 1
    return stats


def _queued(connection_name: str, object_name: str, table: sa.Table):
    """Mirror rows of ``table`` waiting in the change queue (written since the last transform)."""
    return sa.and_(
        mirror_changes.c.connection == connection_name,
        mirror_changes.c.object_name == object_name,
        table.c.connection == mirror_changes.c.connection,
        table.c.id == mirror_changes.c.object_id,
    )


def members_to_fetch(conn: sa.Connection, connection_name: str) -> list[str]:
    """Members that queued memberships and payments name but the mirror lacks, and members whose
    copy is stale: a queued payment carries its user's current name and username, and they differ
    from the member's copy. Reads only queued rows (what changed), never the whole mirror."""
    wanted: set[str] = set()
    for table, object_name in ((raw_memberships, "memberships"), (raw_payments, "payments")):
        missing = (
            sa.select(table.c.member_id)
            .select_from(mirror_changes)
            .join(table, _queued(connection_name, object_name, table))
            .outerjoin(
                raw_members,
                sa.and_(
                    raw_members.c.connection == table.c.connection,
                    raw_members.c.id == table.c.member_id,
                ),
            )
            .where(table.c.member_id.is_not(None), raw_members.c.id.is_(None))
            .distinct()
        )
        wanted.update(conn.execute(missing).scalars())
    queued_payments = (
        sa.select(raw_payments.c.id)
        .select_from(mirror_changes)
        .join(raw_payments, _queued(connection_name, "payments", raw_payments))
        .where(raw_payments.c.member_id.is_not(None))
        .distinct()
    )
    payment_ids = list(conn.execute(queued_payments).scalars())
    for chunk in in_chunks(payment_ids):
        payments = read_raw(conn, "payments", connection_name, ids=chunk)
        members = {
            m["id"]: m
            for m in read_raw(
                conn, "members", connection_name, ids={p["member_id"] for p in payments}
            )
        }
        for payment in payments:
            member = members.get(payment["member_id"])
            if member and _user_differs(payment.get("user"), member.get("user")):
                wanted.add(member["id"])
    return sorted(wanted)


def _user_differs(seen: dict | None, stored: dict | None) -> bool:
    if not seen or not stored or seen.get("id") != stored.get("id"):
        return False
    return any(seen.get(k) != stored.get(k) for k in ("name", "username"))

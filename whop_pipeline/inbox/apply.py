"""Apply webhook events to the raw mirror, last-write-wins on each object's ``updated_at``, so
duplicated and out-of-order deliveries converge on the newest state.

Refunds and disputes arrive in legacy shapes (docs/whop-api.md#webhooks): rather than translate
them, the payment they name is read again from the API. A membership or payment whose member (or a payment
whose membership) is not in the mirror yet has it fetched too, so the CRM never gets half a link.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store.raw import UpsertCounts, read_raw, upsert_raw
from whop_pipeline.store.tables import RAW_TABLES
from whop_pipeline.whop.client import WhopApiError, WhopClient
from whop_pipeline.whop.mirror import to_raw_record
from whop_pipeline.whop.models import (
    Member,
    Membership,
    Payment,
    Plan,
    Product,
    WhopModel,
    WhopSchemaError,
    parse_object,
)

DIRECT = {
    "membership": (Membership, "memberships"),
    "payment": (Payment, "payments"),
    "member": (Member, "members"),
    "product": (Product, "products"),
    "plan": (Plan, "plans"),
}
# Events whose payload is not the object itself but names a payment to read again.
PAYMENT_REFERENCES = {"refund", "dispute", "dispute_alert"}
IGNORED_TYPES = {"product.deleted", "plan.deleted"}  # the CRM keeps what it has


@dataclass
class Affected:
    """What the applied events touched: mirror ids by table, to be rebuilt and pushed to Twenty."""

    ids: dict[str, set[str]] = field(default_factory=dict)
    mirror: UpsertCounts = field(default_factory=UpsertCounts)
    fetched: int = 0
    ignored: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def _referenced_payment(data: dict[str, Any]) -> str | None:
    payment = data.get("payment")
    if isinstance(payment, dict) and payment.get("id"):
        return payment["id"]
    return data.get("payment_id")


def _write(
    conn: sa.Connection,
    connection: str,
    table: str,
    model: WhopModel,
    seen: dt.datetime,
    affected: Affected,
) -> None:
    affected.mirror.add(upsert_raw(conn, table, connection, [to_raw_record(model, seen)]))
    affected.ids.setdefault(table, set()).add(model.id)


def _missing(
    conn: sa.Connection, connection: str, table: str, ids: Iterable[str | None]
) -> list[str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return []
    t = RAW_TABLES[table]
    present = set(
        conn.execute(
            sa.select(t.c.id).where(t.c.connection == connection, t.c.id.in_(sorted(wanted)))
        ).scalars()
    )
    return sorted(wanted - present)


def apply_events(
    rows: Sequence[Any], engine: sa.Engine, connection: str, whop: WhopClient
) -> Affected:
    """Apply inbox rows (id order) to the mirror. A row whose payload cannot be applied is recorded
    in ``affected.failed`` with the reason; the others still apply."""
    affected = Affected()
    with engine.begin() as conn:
        for row in sorted(rows, key=lambda r: r.id):
            data = (row.payload or {}).get("data") or {}
            seen = row.object_updated_at or row.received_at
            try:
                if row.event_type in IGNORED_TYPES:
                    affected.ignored.append(row.id)
                elif row.object_type in DIRECT:
                    model_type, table = DIRECT[row.object_type]
                    model = parse_object(model_type, data, f"{row.event_type} {row.webhook_id}")
                    _write(conn, connection, table, model, seen, affected)
                elif row.object_type in PAYMENT_REFERENCES and _referenced_payment(data):
                    payment = whop.retrieve_if_exists("payments", _referenced_payment(data))
                    if payment is None:
                        affected.ignored.append(row.id)
                        continue
                    affected.fetched += 1
                    # The fresh read is newer than the event: its own updated_at decides.
                    _write(conn, connection, "payments", payment, payment.updated_at, affected)
                else:
                    affected.ignored.append(row.id)
            except (WhopSchemaError, WhopApiError) as exc:
                affected.failed[row.id] = str(exc)

        _complete_links(conn, connection, whop, affected)
    return affected


def _complete_links(
    conn: sa.Connection, connection: str, whop: WhopClient, affected: Affected
) -> None:
    """Fetch the memberships of affected payments, then the members of affected memberships and
    payments, when the mirror lacks them."""
    now = dt.datetime.now(dt.UTC)
    payments = read_raw(conn, "payments", connection, ids=sorted(affected.ids.get("payments", ())))
    membership_ids = (p.get("membership_id") for p in payments)
    for membership_id in _missing(conn, connection, "memberships", membership_ids):
        if (membership := whop.retrieve_if_exists("memberships", membership_id)) is not None:
            _write(conn, connection, "memberships", membership, now, affected)
            affected.fetched += 1
    touched = sorted(affected.ids.get("memberships", ()))
    memberships = read_raw(conn, "memberships", connection, ids=touched)
    member_ids = [m.get("member_id") for m in memberships] + [p.get("member_id") for p in payments]
    for member_id in _missing(conn, connection, "members", member_ids):
        if (member := whop.retrieve_if_exists("members", member_id)) is not None:
            _write(conn, connection, "members", member, now, affected)
            affected.fetched += 1

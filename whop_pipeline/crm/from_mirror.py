"""Read the raw mirror and build CRM frames: by date window (the sync's partitions) or by id (the
webhook run's affected objects). The frames themselves come from the pure functions in ``frames``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Sequence

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.crm import frames
from whop_pipeline.crm.mapping import member_person_key
from whop_pipeline.store.raw import iter_raw, read_raw
from whop_pipeline.store.tables import raw_members, raw_payments

# Long ranges (a reconcile, a backfill) are read a few thousand rows at a time: memory holds one
# chunk of raw JSON plus the frames, which are far smaller than the JSON they come from.
READ_CHUNK = 5_000

Window = tuple[dt.datetime, dt.datetime]


def _payloads(
    conn: sa.Connection,
    kind: str,
    connection: str,
    window: Window | None,
    ids: Collection[str] | None,
) -> Iterator[list[dict]]:
    if ids is not None:
        yield read_raw(conn, kind, connection, ids=ids)
        return
    assert window is not None, "give a window or ids"
    yield from iter_raw(
        conn, kind, connection, created_from=window[0], created_to=window[1], chunk=READ_CHUNK
    )


def _concat(parts: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else empty


def people(
    conn: sa.Connection, connection: str, keys: Collection[str] | None = None
) -> pd.DataFrame:
    """Every person, or the people of ``keys``. A shared email goes to the older member, so for
    ``keys`` the members sharing their emails are read too: the result is the same as the rows of
    the whole frame, at the cost of a few members instead of all of them."""
    if keys is not None:
        return _some_people(conn, connection, set(keys))
    members = read_raw(conn, "members", connection)
    with_email = {member_person_key(member) for member in members if member.get("email")}
    # Payments matter only for people whose member has no email (customer_email is the fallback) or
    # who have no member yet: read just those payments' JSON.
    payer_rows = conn.execute(
        sa.select(raw_payments.c.id, raw_payments.c.user_id, raw_payments.c.member_id).where(
            raw_payments.c.connection == connection
        )
    ).all()
    needed = [row.id for row in payer_rows if (row.user_id or row.member_id) not in with_email]
    return frames.people_frame(members, read_raw(conn, "payments", connection, ids=needed))


def _some_people(conn: sa.Connection, connection: str, keys: set[str]) -> pd.DataFrame:
    if not keys:
        return frames.people_frame([])
    key_list = sorted(keys)
    scope = raw_members.c.connection == connection
    own = sa.or_(raw_members.c.user_id.in_(key_list), raw_members.c.id.in_(key_list))
    emails = (
        conn.execute(
            sa.select(sa.func.lower(raw_members.c.email)).where(
                scope, own, raw_members.c.email.is_not(None)
            )
        )
        .scalars()
        .all()
    )
    ids = set(conn.execute(sa.select(raw_members.c.id).where(scope, own)).scalars())
    if emails:
        shared = sa.func.lower(raw_members.c.email).in_(sorted(set(emails)))
        ids |= set(conn.execute(sa.select(raw_members.c.id).where(scope, shared)).scalars())
    payment_ids = (
        conn.execute(
            sa.select(raw_payments.c.id).where(
                raw_payments.c.connection == connection,
                sa.or_(
                    raw_payments.c.user_id.in_(key_list), raw_payments.c.member_id.in_(key_list)
                ),
            )
        )
        .scalars()
        .all()
    )
    frame = frames.people_frame(
        read_raw(conn, "members", connection, ids=ids),
        read_raw(conn, "payments", connection, ids=payment_ids),
    )
    return frame[frame["_key"].isin(keys)].reset_index(drop=True)


def products(conn: sa.Connection, connection: str) -> pd.DataFrame:
    return frames.products_frame(read_raw(conn, "products", connection))


def opportunities(
    conn: sa.Connection,
    connection: str,
    *,
    window: Window | None = None,
    ids: Collection[str] | None = None,
) -> pd.DataFrame:
    names = frames.person_names(read_raw(conn, "members", connection))
    parts = [
        frames.opportunities_frame(memberships, names, connection)
        for memberships in _payloads(conn, "memberships", connection, window, ids)
    ]
    return _concat(parts, frames.opportunities_frame([], {}, connection))


def notes(
    conn: sa.Connection,
    connection: str,
    *,
    window: Window | None = None,
    ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """Notes for payments in ``window`` or with ``ids``."""
    titles = {p["id"]: p.get("title") or p["id"] for p in read_raw(conn, "products", connection)}
    parts = [
        frames.notes_frame(payments, titles, connection)
        for payments in _payloads(conn, "payments", connection, window, ids)
    ]
    return _concat(parts, frames.notes_frame([], {}, connection))


_TARGET_COLUMNS = ("id", "created_at", "user_id", "member_id", "membership_id")


def note_targets(
    conn: sa.Connection,
    connection: str,
    *,
    window: Window | None = None,
    ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """Note targets for payments in ``window`` or with ``ids``. Everything a target needs is in the
    mirror's link columns, so no payment JSON is parsed."""
    if ids is not None:
        payments = read_raw(conn, "payments", connection, ids=ids)
        return frames.note_targets_frame(payments, connection)
    assert window is not None, "give a window or ids"
    parts = [
        frames.note_targets_frame([_row_fields(row) for row in rows], connection)
        for rows in iter_raw(
            conn,
            "payments",
            connection,
            created_from=window[0],
            created_to=window[1],
            chunk=READ_CHUNK * 4,
            columns=_TARGET_COLUMNS,
        )
    ]
    return _concat(parts, frames.note_targets_frame([], connection))


def _row_fields(row: Sequence) -> dict:
    """The payment fields ``note_targets_frame`` reads, from the mirror's columns."""
    payment_id, created_at, user_id, member_id, membership_id = row
    return {
        "id": payment_id,
        "created_at": created_at.isoformat(),
        "user": {"id": user_id} if user_id else None,
        "member_id": member_id,
        "membership_id": membership_id,
    }

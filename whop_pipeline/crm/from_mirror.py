"""Read the raw mirror and build CRM frames: by date window (the sync's partitions) or by id (the
webhook run's affected objects). The frames themselves come from the pure functions in ``frames``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.crm import frames
from whop_pipeline.crm.mapping import member_person_key
from whop_pipeline.store.raw import read_raw
from whop_pipeline.store.tables import raw_members, raw_payments

# Long ranges (a reconcile, a backfill) are read a month at a time: memory holds one month of raw
# JSON plus the frames, which are far smaller than the JSON they come from.
READ_CHUNK = dt.timedelta(days=31)

Window = tuple[dt.datetime, dt.datetime]


def _chunks(window: Window) -> Iterator[Window]:
    start, end = window
    while start < end:
        yield start, min(end, start + READ_CHUNK)
        start += READ_CHUNK


def _by_window_or_ids(
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
    for lo, hi in _chunks(window):
        yield read_raw(conn, kind, connection, created_from=lo, created_to=hi)


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
        for memberships in _by_window_or_ids(conn, "memberships", connection, window, ids)
    ]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else frames.opportunities_frame([], {}, connection)
    )


def notes(
    conn: sa.Connection,
    connection: str,
    *,
    window: Window | None = None,
    ids: Collection[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notes and their targets, for payments in ``window`` or with ``ids``."""
    titles = {p["id"]: p.get("title") or p["id"] for p in read_raw(conn, "products", connection)}
    note_parts, target_parts = [], []
    for payments in _by_window_or_ids(conn, "payments", connection, window, ids):
        note_parts.append(frames.notes_frame(payments, titles, connection))
        target_parts.append(frames.note_targets_frame(payments, connection))
    if not note_parts:
        return frames.notes_frame([], {}, connection), frames.note_targets_frame([], connection)
    return pd.concat(note_parts, ignore_index=True), pd.concat(target_parts, ignore_index=True)

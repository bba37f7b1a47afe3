"""Which members an incremental run reads one by one: those queued memberships and payments name
that the mirror lacks, and those a queued payment shows renamed. Reads only queued rows."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import RawRecord, upsert_raw
from whop_pipeline.store.tables import mirror_changes
from whop_pipeline.whop.mirror import members_to_fetch

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
C = "default"


def member(member_id: str, user_id: str, name: str) -> RawRecord:
    user = {"id": user_id, "username": user_id, "name": name}
    payload = {"id": member_id, "created_at": T0.isoformat(), "user": user, "email": None}
    return RawRecord(member_id, T0, T0, payload, {"user_id": user_id, "email": None})


def payment(payment_id: str, member_id: str, user_id: str, name: str) -> RawRecord:
    user = {"id": user_id, "username": user_id, "name": name}
    payload = {"id": payment_id, "member_id": member_id, "user": user}
    links = {"member_id": member_id, "user_id": user_id, "membership_id": None}
    return RawRecord(payment_id, T0, T0, payload, links)


def membership(membership_id: str, member_id: str) -> RawRecord:
    payload = {"id": membership_id, "member_id": member_id}
    return RawRecord(membership_id, T0, T0, payload, {"member_id": member_id})


def test_missing_and_renamed_members_of_queued_rows_only(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        upsert_raw(
            conn,
            "members",
            C,
            [member("mber_a", "user_a", "Ann"), member("mber_b", "user_b", "Bo")],
        )
        conn.execute(sa.delete(mirror_changes))  # the members were read long ago
        assert members_to_fetch(conn, C) == []
        upsert_raw(
            conn,
            "payments",
            C,
            [
                payment("pay_1", "mber_a", "user_a", "Ann"),  # as mirrored: nothing to read
                payment("pay_2", "mber_b", "user_b", "Bob Stone"),  # renamed since
                payment("pay_3", "mber_c", "user_c", "Cy"),  # not mirrored at all
            ],
        )
        upsert_raw(conn, "memberships", C, [membership("mem_1", "mber_d")])
        upsert_raw(conn, "memberships", "other", [membership("mem_9", "mber_z")])
        assert members_to_fetch(conn, C) == ["mber_b", "mber_c", "mber_d"]
        conn.execute(sa.delete(mirror_changes).where(mirror_changes.c.connection == C))
        assert members_to_fetch(conn, C) == []  # once built, those rows are no longer queued

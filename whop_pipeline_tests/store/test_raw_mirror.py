"""Raw mirror upserts: exact counts, last-write-wins on updated_at, connections kept apart."""

from __future__ import annotations

import datetime as dt

import pytest

from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import (
    RawRecord,
    content_hash,
    count_raw,
    read_raw,
    upsert_raw,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def membership(id_: str, status: str, updated_minutes: int) -> RawRecord:
    updated = T0 + dt.timedelta(minutes=updated_minutes)
    payload = {"id": id_, "status": status, "updated_at": updated.isoformat()}
    return RawRecord(id_, T0, updated, payload, {"status": status, "member_id": "mber_1"})


def test_content_hash_ignores_key_order():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_counts_and_last_write_wins(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        first = upsert_raw(conn, "memberships", "default", [membership("mem_1", "active", 0)])
        assert (first.inserted, first.updated, first.unchanged, first.stale) == (1, 0, 0, 0)

        same = upsert_raw(conn, "memberships", "default", [membership("mem_1", "active", 0)])
        assert (same.inserted, same.updated, same.unchanged) == (0, 0, 1)

        newer = upsert_raw(conn, "memberships", "default", [membership("mem_1", "canceled", 5)])
        assert newer.updated == 1

        older = upsert_raw(conn, "memberships", "default", [membership("mem_1", "active", 1)])
        assert older.stale == 1
        assert read_raw(conn, "memberships", "default")[0]["status"] == "canceled"


def test_a_page_with_a_repeated_id_keeps_the_newest(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        counts = upsert_raw(
            conn,
            "memberships",
            "default",
            [membership("mem_1", "canceled", 9), membership("mem_1", "active", 3)],
        )
        assert (counts.inserted, counts.stale) == (1, 1)
        assert read_raw(conn, "memberships", "default")[0]["status"] == "canceled"


def test_connections_do_not_see_each_other(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        upsert_raw(conn, "memberships", "acme", [membership("mem_1", "active", 0)])
        upsert_raw(conn, "memberships", "globex", [membership("mem_1", "expired", 0)])
        assert count_raw(conn, "memberships", "acme") == 1
        assert read_raw(conn, "memberships", "globex")[0]["status"] == "expired"
        assert read_raw(conn, "memberships", "acme")[0]["status"] == "active"


def test_read_by_window_and_ids(db_url):
    engine = get_engine(db_url)
    records = [
        RawRecord(f"pay_{i}", T0 + dt.timedelta(days=i), T0, {"id": f"pay_{i}"}) for i in range(5)
    ]
    with engine.begin() as conn:
        upsert_raw(conn, "payments", "default", records)
        window = read_raw(
            conn,
            "payments",
            "default",
            created_from=T0 + dt.timedelta(days=1),
            created_to=T0 + dt.timedelta(days=3),
        )
        assert [p["id"] for p in window] == ["pay_1", "pay_2"]
        assert {p["id"] for p in read_raw(conn, "payments", "default", ids=["pay_4", "x"])} == {
            "pay_4"
        }


def test_naive_datetimes_are_refused(sqlite_url):
    engine = get_engine(sqlite_url)
    record = RawRecord("mem_1", dt.datetime(2026, 1, 1), T0, {"id": "mem_1"})
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        upsert_raw(conn, "memberships", "default", [record])

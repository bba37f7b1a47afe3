"""The inbox repository on SQLite and Postgres: idempotent inserts, bounded batches, the status
machine (pending → processing → done / failed → ... → dead), stale claims, connection isolation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from whop_pipeline.inbox.events import InboxEvent, parse_envelope
from whop_pipeline.inbox.store import (
    ERROR_LIMIT,
    MAX_ATTEMPTS,
    NewEvent,
    claim,
    clean_error,
    due_rows,
    get_events,
    mark_done,
    mark_failed,
    release_stale,
    retry_delay,
    set_run_id,
    status_counts,
    store_event,
    store_events,
)
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import webhook_inbox

T0 = dt.datetime(2026, 10, 3, 14, 0, tzinfo=dt.UTC)


def envelope(n: int, event_type: str = "membership.updated") -> dict[str, Any]:
    return {
        "id": f"msg_{n:04d}",
        "type": event_type,
        "api_version": "v1",
        "account_id": "biz_1",
        "timestamp": (T0 + dt.timedelta(seconds=n)).isoformat(),
        "data": {"id": f"mem_{n}", "status": "active", "updated_at": T0.isoformat()},
    }


def put(conn: sa.Connection, n: int, connection: str = "acme", **kwargs: Any) -> bool:
    body = envelope(n, **kwargs)
    return store_event(conn, connection, parse_envelope(body), body, T0)


def ids_of(rows: list[sa.Row]) -> list[int]:
    return [row.id for row in rows]


def row(conn: sa.Connection, id_: int) -> sa.Row:
    return get_events(conn, [id_], connection="acme")[0]


@pytest.fixture
def engine(db_url: str) -> sa.Engine:
    return get_engine(db_url)


def test_store_event_is_idempotent(engine):
    with engine.begin() as conn:
        assert put(conn, 1) is True
        assert put(conn, 1) is False  # same (connection, webhook_id): no error, no second row
        assert put(conn, 1, connection="globex") is True  # another tenant's message id space
        rows = conn.execute(sa.select(webhook_inbox).order_by(webhook_inbox.c.id)).all()
    assert [(r.connection, r.webhook_id) for r in rows] == [
        ("acme", "msg_0001"),
        ("globex", "msg_0001"),
    ]
    first = rows[0]
    assert (first.event_type, first.object_type, first.object_id) == (
        "membership.updated",
        "membership",
        "mem_1",
    )
    assert first.object_updated_at == T0 and first.received_at == T0
    assert first.payload == envelope(1)
    assert (first.status, first.attempts, first.status_changed_at) == ("pending", 0, T0)


def test_store_events_reports_each_item_and_dedupes_within_a_batch(engine):
    def item(n: int, connection: str = "acme") -> NewEvent:
        body = envelope(n)
        return NewEvent(connection, parse_envelope(body), body, T0)

    with engine.begin() as conn:
        assert store_events(conn, [item(1)]) == [True]
        results = store_events(conn, [item(1), item(2), item(2), item(3, "globex"), item(2)])
        assert results == [False, True, False, True, False]
        assert store_events(conn, []) == []
        assert sum(status_counts(conn).values()) == 3


def test_legacy_names_are_stored_normalized_with_the_original_in_the_payload(engine):
    with engine.begin() as conn:
        put(conn, 1, event_type="membership.went_invalid")
        stored = get_events(conn, [due_rows(conn, 10)[0].id], connection="acme")[0]
    assert stored.event_type == "membership.deactivated"
    assert stored.payload["type"] == "membership.went_invalid"


def test_due_rows_are_bounded_ordered_and_paged(engine):
    with engine.begin() as conn:
        for n in range(1, 8):
            put(conn, n)
        first = get_events(conn, ids_of(due_rows(conn, 3)), connection="acme")
        assert [r.webhook_id for r in first] == ["msg_0001", "msg_0002", "msg_0003"]
        assert first[0].payload["data"]["id"] == "mem_1"
        second = get_events(
            conn, ids_of(due_rows(conn, 3, after_id=first[-1].id)), connection="acme"
        )
        assert [r.webhook_id for r in second] == ["msg_0004", "msg_0005", "msg_0006"]
        assert due_rows(conn, 0) == []


def test_claim_done_and_a_second_claim_gets_nothing(engine):
    with engine.begin() as conn:
        for n in range(1, 4):
            put(conn, n)
        ids = ids_of(due_rows(conn, 10))
        before_claim = dt.datetime.now(dt.UTC)
        assert claim(conn, ids[:2], "run-key-1", "run-1", connection="acme") == ids[:2]
        assert (
            claim(conn, ids, "run-key-2", connection="acme") == ids[2:]
        )  # only what is still pending
        assert ids_of(due_rows(conn, 10)) == []
        claimed = row(conn, ids[0])
        assert (claimed.status, claimed.run_key, claimed.run_id) == (
            "processing",
            "run-key-1",
            "run-1",
        )
        assert claimed.status_changed_at >= before_claim
        assert set_run_id(conn, "run-key-2", "run-2") == 1
        assert row(conn, ids[2]).run_id == "run-2"
        # A run marks only what it claimed when it says which run it is.
        assert mark_done(conn, ids, run_key="run-key-1", connection="acme") == ids[:2]
        assert mark_done(conn, ids, connection="acme") == ids[2:]
        assert mark_done(conn, ids, connection="acme") == []  # done is final
        assert status_counts(conn) == {
            "pending": 0,
            "processing": 0,
            "done": 3,
            "failed": 0,
            "dead": 0,
        }


def test_failed_rows_come_back_until_they_are_dead(engine):
    with engine.begin() as conn:
        put(conn, 1)
        put(conn, 2)
        target, other = ids_of(due_rows(conn, 10))
        for attempt in range(1, MAX_ATTEMPTS + 1):
            assert claim(conn, [target], f"run-{attempt}", connection="acme") == [target]
            assert mark_failed(
                conn, [target], RuntimeError(f"boom {attempt}"), connection="acme"
            ) == [target]
            failed = row(conn, target)
            assert failed.attempts == attempt
            assert failed.last_error == f"RuntimeError: boom {attempt}"
            if attempt < MAX_ATTEMPTS:
                assert failed.status == "failed"
                assert ids_of(due_rows(conn, 10)) == [other]  # backing off
                later = dt.datetime.now(dt.UTC) + retry_delay(attempt) + dt.timedelta(seconds=1)
                assert ids_of(due_rows(conn, 10, now=later)) == [target, other]
        assert row(conn, target).status == "dead"
        assert ids_of(due_rows(conn, 10)) == [other]
        assert claim(conn, [target], "run-late", connection="acme") == []  # dead is final
        assert mark_failed(conn, [target], "again", connection="acme") == []
        assert status_counts(conn)["dead"] == 1


def test_max_attempts_can_be_lowered(engine):
    with engine.begin() as conn:
        put(conn, 1)
        [target] = ids_of(due_rows(conn, 10))
        mark_failed(conn, [target], "first", max_attempts=2, connection="acme")
        assert row(conn, target).status == "failed"
        assert ids_of(due_rows(conn, 10, max_attempts=1)) == []
        mark_failed(conn, [target], "second", max_attempts=2, connection="acme")
        assert row(conn, target).status == "dead"


def test_pending_and_retryable_failed_rows_interleave_by_id(engine):
    with engine.begin() as conn:
        for n in range(1, 7):
            put(conn, n)
        ids = ids_of(due_rows(conn, 10))
        claim(conn, ids[::2], "run-1", connection="acme")
        mark_failed(conn, ids[::2], "transient", connection="acme")
        later = dt.datetime.now(dt.UTC) + retry_delay(1) + dt.timedelta(seconds=1)
        assert ids_of(due_rows(conn, 4, now=later)) == ids[:4]
        assert ids_of(due_rows(conn, 10, after_id=ids[3], now=later)) == ids[4:]
        assert ids_of(due_rows(conn, 10)) == ids[1::2]  # the failed ones are backing off


def test_last_error_is_truncated_and_redacted(engine):
    secret = "ws_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"
    message = (
        f"signature key {secret}, Authorization: Bearer abc.def.ghi, "
        "db postgresql://app:hunter2@db:5432/x " + "x" * 5000
    )
    with engine.begin() as conn:
        put(conn, 1)
        [target] = ids_of(due_rows(conn, 10))
        mark_failed(conn, [target], ValueError(message), connection="acme")
        stored = row(conn, target).last_error
    assert len(stored) == ERROR_LIMIT and stored.endswith("…")
    for leaked in (secret, "5f2c1b0e", "abc.def.ghi", "hunter2"):
        assert leaked not in stored
    assert stored.startswith("ValueError: signature key ws_[redacted]")
    assert clean_error("token=abc123 ok") == "token=[redacted] ok"


def test_release_stale_hands_dead_runs_back(engine):
    with engine.begin() as conn:
        for n in range(1, 4):
            put(conn, n)
        ids = ids_of(due_rows(conn, 10))
        claim(conn, ids[:2], "run-died", connection="acme")
        # Backdate one claim: its run has been gone for an hour.
        conn.execute(
            sa.update(webhook_inbox)
            .where(webhook_inbox.c.id == ids[0])
            .values(status_changed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )
        assert release_stale(conn, dt.timedelta(minutes=30), connection="acme") == [ids[0]]
        released = row(conn, ids[0])
        assert (released.status, released.attempts) == ("failed", 1)
        assert "did not finish" in released.last_error
        assert row(conn, ids[1]).status == "processing"  # still fresh
        later = dt.datetime.now(dt.UTC) + retry_delay(1) + dt.timedelta(seconds=1)
        assert ids_of(due_rows(conn, 10, now=later)) == [ids[0], ids[2]]
        # With a cutoff in the future every processing row is stale.
        future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        assert release_stale(conn, future, connection="acme") == [ids[1]]
        assert release_stale(conn, future, connection="acme") == []


def test_a_row_that_keeps_killing_its_run_ends_dead(engine):
    with engine.begin() as conn:
        put(conn, 1)
        [target] = ids_of(due_rows(conn, 10))
        future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        for _ in range(MAX_ATTEMPTS):
            assert claim(conn, [target], "run", connection="acme") == [target]
            assert release_stale(conn, future, connection="acme") == [target]
        assert row(conn, target).status == "dead"


def test_connections_are_isolated(engine):
    with engine.begin() as conn:
        put(conn, 1, connection="acme")
        put(conn, 2, connection="globex")
        put(conn, 3, connection="acme")
        acme = get_events(conn, ids_of(due_rows(conn, 10, connection="acme")), connection="acme")
        assert [r.webhook_id for r in acme] == ["msg_0001", "msg_0003"]
        assert {r.connection for r in acme} == {"acme"}
        claim(conn, ids_of(acme), "run-acme", connection="acme")
        assert status_counts(conn, "acme")["processing"] == 2
        assert status_counts(conn, "globex") == {
            "pending": 1,
            "processing": 0,
            "done": 0,
            "failed": 0,
            "dead": 0,
        }
        assert status_counts(conn, "initech") == dict.fromkeys(status_counts(conn), 0)
        assert sum(status_counts(conn).values()) == 3


def test_get_events_skips_unknown_ids_and_handles_large_lists(engine):
    with engine.begin() as conn:
        for n in range(1, 4):
            put(conn, n)
        ids = ids_of(due_rows(conn, 10))
        assert ids_of(get_events(conn, [*reversed(ids), 999_999], connection="acme")) == ids
        assert (
            ids_of(get_events(conn, range(1, 2000), connection="acme")) == ids
        )  # chunked IN lists
        assert get_events(conn, [], connection="acme") == []


def test_inbox_event_fields_round_trip(engine):
    event = InboxEvent(
        webhook_id="msg_x",
        event_type="member.created",
        original_type="member.created",
        object_type="member",
        object_id="mber_1",
        object_updated_at=None,
        account_id=None,
        timestamp=None,
    )
    with engine.begin() as conn:
        assert store_event(conn, "acme", event, {"id": "msg_x"}) is True
        stored = get_events(conn, ids_of(due_rows(conn, 1)), connection="acme")[0]
    assert stored.object_updated_at is None
    assert stored.received_at.tzinfo is not None


def test_no_write_reaches_another_connections_rows(engine):
    """Ids of another connection, passed by mistake, are never claimed, marked or read."""
    with engine.begin() as conn:
        put(conn, 1, connection="acme")
        put(conn, 2, connection="globex")
        ids = ids_of(due_rows(conn, 10, connection="acme")) + ids_of(
            due_rows(conn, 10, connection="globex")
        )
        assert claim(conn, ids, "run-globex", connection="globex") == ids[1:]
        assert get_events(conn, ids, connection="globex")[0].connection == "globex"
        assert len(get_events(conn, ids, connection="globex")) == 1
        assert mark_done(conn, ids, connection="globex") == ids[1:]
        assert mark_failed(conn, ids, "x", connection="globex") == []
        assert status_counts(conn, "acme")["pending"] == 1

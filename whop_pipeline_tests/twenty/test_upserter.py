"""TwentyUpserter against the Twenty emulator: diffs, batches, limits, rejected rows, retries."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from whop_pipeline.crm import frames
from whop_pipeline.crm import mapping as m
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.twenty import create_twenty_app
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import sync_errors
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.records import prepared
from whop_pipeline.twenty.schema import ensure_schema
from whop_pipeline.twenty.upserter import TwentyUpserter

pytestmark = pytest.mark.sandbox
KEY = "upserter-test-key"


@pytest.fixture
def twenty_server():
    def start(**options):
        emulator = create_twenty_app(api_key=KEY, rate_limit_per_minute=100_000, **options)
        server = BackgroundServer(emulator.app).start()
        started.append(server)
        return emulator, server

    started: list[BackgroundServer] = []
    yield start
    for server in started:
        server.stop()


def setup(twenty_server, db_url, **options):
    emulator, server = twenty_server(**options)
    client = TwentyClient(base_url=server.url, api_key=KEY, calls_per_minute=100_000)
    caps, _ = ensure_schema(client)

    def upserter(batch_size=200):
        return TwentyUpserter(
            client,
            get_engine(db_url),
            connection="default",
            plural="people",
            unique_paths=caps.unique_fields("person"),
            batch_size=batch_size,
        )

    return emulator, server, client, upserter


def person(i: int, email: str | None = None, first: str = "P") -> object:
    record = {
        "name": {"firstName": f"{first}{i}", "lastName": ""},
        "emails": {"primaryEmail": email or f"p{i}@example.com", "additionalEmails": None},
        "whopUserId": f"user_{i}",
    }
    return prepared(f"user_{i}", record, {"_key": f"user_{i}"})


def writes(client: TwentyClient) -> int:
    return client.write_calls


def test_only_changed_rows_are_sent(twenty_server, db_url):
    emulator, _, client, upserter = setup(twenty_server, db_url)
    rows = [person(i) for i in range(250)]
    counts = upserter().upsert(rows)
    assert (counts.created, counts.write_calls) == (250, 2)  # 200 + 50
    before = writes(client)
    again = upserter().upsert(rows)
    assert (again.unchanged, again.write_calls) == (250, 0)
    assert writes(client) == before
    changed = upserter().upsert([*rows[:-1], person(249, first="Q")])
    assert (changed.updated, changed.unchanged, changed.write_calls) == (1, 249, 1)
    assert len(emulator.dump()["people"]) == 250


def test_the_batch_shrinks_to_the_server_maximum(twenty_server, sqlite_url):
    emulator, _, _, upserter = setup(twenty_server, sqlite_url, max_batch=60)
    up = upserter(batch_size=200)
    counts = up.upsert([person(i) for i in range(130)])
    # One refused call of 130 rows, then 60 + 60 + 10.
    assert counts.write_calls == 4 and counts.created == 130
    assert up.batch_size == 60
    assert len(emulator.dump()["people"]) == 130


def test_rows_sharing_a_unique_value_go_to_different_calls(twenty_server, sqlite_url):
    emulator, _, _, upserter = setup(twenty_server, sqlite_url)
    counts = upserter().upsert([person(1, "same@example.com"), person(2, "SAME@example.com")])
    # Same email, one call each: both match the same record, the second wins.
    assert counts.write_calls == 2 and counts.rejected == 0
    assert len(emulator.dump()["people"]) == 1


def test_a_rejected_row_is_isolated_recorded_and_retried(twenty_server, db_url):
    emulator, server, _, upserter = setup(twenty_server, db_url)
    # user_7's whopUserId and email match two different records: the server refuses that row.
    emulator.seed_record("people", {"whopUserId": "user_7", "emails": {"primaryEmail": None}})
    blocker = emulator.seed_record("people", {"emails": {"primaryEmail": "p7@example.com"}})
    rows = [person(i) for i in range(20)]
    counts = upserter().upsert(rows)
    assert counts.rejected == 1 and counts.created == 19
    with get_engine(db_url).connect() as conn:
        error = conn.execute(sa.select(sync_errors)).one()
    assert error.source_key == "user_7" and "Multiple records" in error.error
    assert error.resolved_at is None and error.attempts == 1

    again = upserter().upsert(rows)  # still conflicting: counted again, nothing else resent
    assert again.rejected == 1 and again.unchanged == 19
    httpx.delete(
        f"{server.url}/rest/people/{blocker['id']}", headers={"Authorization": f"Bearer {KEY}"}
    ).raise_for_status()
    fixed = upserter().upsert(rows)
    assert fixed.created == 1 and fixed.rejected == 0
    with get_engine(db_url).connect() as conn:
        error = conn.execute(sa.select(sync_errors)).one()
    assert error.resolved_at is not None and error.attempts == 2


def test_a_deferred_row_is_retried_by_the_next_load_even_outside_its_frame(
    twenty_server, sqlite_url
):
    """A note target waiting for its opportunity lands in a later load whose frame no longer holds
    it (an incremental sync of other days): the stored source row is retried."""
    emulator, _, client, _ = setup(twenty_server, sqlite_url)
    caps, _ = ensure_schema(client)
    engine = get_engine(sqlite_url)
    load = lambda: TwentyLoad(client, caps, engine, connection="default", batch_size=200)  # noqa: E731
    person = {"_key": "user_1", "name.firstName": "A", "name.lastName": "", "whopUserId": "user_1"}
    opportunity = {
        "_key": "mem_1",
        "_day": "2026-01-01",
        "_person_key": "user_1",
        "id": m.opportunity_id("default", "mem_1"),
        "name": "O",
        "stage": "CUSTOMER",
        "whopMembershipId": "mem_1",
    }
    payment = {
        "id": "pay_1",
        "created_at": "2026-01-02T00:00:00Z",
        "user": {"id": "user_1"},
        "membership_id": "mem_1",
        "status": "paid",
        "substatus": "succeeded",
        "currency": "usd",
        "total": {"amount": "1.00", "currency": "usd"},
    }
    first = load()
    first.people(pd.DataFrame([person]))
    _, targets = first.notes(
        frames.notes_frame([payment], {}, "default"),
        frames.note_targets_frame([payment], "default"),
    )
    assert (targets.created, targets.deferred) == (1, 1)  # the person link; the opportunity waits

    second = load()
    second.opportunities(pd.DataFrame([opportunity]))
    _, targets = second.notes(
        frames.notes_frame([], {}, "default"), frames.note_targets_frame([], "default")
    )
    assert (targets.created, targets.deferred) == (1, 0)
    links = {t.get("targetOpportunityId") for t in emulator.dump()["noteTargets"]}
    assert m.opportunity_id("default", "mem_1") in links

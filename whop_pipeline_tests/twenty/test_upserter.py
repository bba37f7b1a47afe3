"""CRM records → Twenty through ``TwentyLoad`` against the emulator: the diff in SQL, batches, the
server's limits, rejected rows and retries."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.crm import mapping as m
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.twenty import create_twenty_app
from whop_pipeline.store.crm import CrmRecord, record_digest, write_records
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import sync_errors
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.schema import ensure_schema

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


class Setup:
    def __init__(self, twenty_server, db_url, **options):
        self.emulator, self.server = twenty_server(**options)
        self.client = TwentyClient(base_url=self.server.url, api_key=KEY, calls_per_minute=100_000)
        self.caps, _ = ensure_schema(self.client)
        self.engine = get_engine(db_url)

    def stage(self, object_name: str, records: list[CrmRecord]) -> list[str]:
        """Store CRM records as the transform would; returns the keys that became load-pending."""
        with self.engine.begin() as conn:
            return write_records(conn, "default", object_name, records)

    def load(self, object_name: str = "people", *, batch_size: int = 200, full: bool = False):
        session = TwentyLoad(
            self.client, self.caps, self.engine, connection="default", batch_size=batch_size
        )
        return session.load(object_name, full=full)


def record(key: str, body: dict, links: dict | None = None, **columns) -> CrmRecord:
    return CrmRecord(key, body, record_digest(body, links), links=links, **columns)


def person(i: int, email: str | None = None, first: str = "P") -> CrmRecord:
    body = {
        "name": {"firstName": f"{first}{i}", "lastName": ""},
        "emails": {"primaryEmail": email or f"p{i}@example.com", "additionalEmails": None},
        "whopUserId": f"user_{i}",
    }
    return record(f"user_{i}", body, person_key=f"user_{i}", email=email or f"p{i}@example.com")


def test_only_changed_records_are_sent(twenty_server, db_url):
    t = Setup(twenty_server, db_url)
    rows = [person(i) for i in range(250)]
    t.stage("people", rows)
    counts = t.load()
    assert (counts.created, counts.write_calls) == (250, 2)  # 200 + 50
    assert t.load().write_calls == 0  # nothing pending
    full = t.load(full=True)  # every record compared with sync_state, in SQL
    assert (full.unchanged, full.write_calls) == (250, 0)
    assert t.stage("people", [*rows[:-1], person(249, first="Q")]) == ["user_249"]
    changed = t.load()
    assert (changed.updated, changed.created, changed.write_calls) == (1, 0, 1)
    assert len(t.emulator.dump()["people"]) == 250


def test_a_reset_sync_state_is_caught_by_a_full_load(twenty_server, sqlite_url):
    t = Setup(twenty_server, sqlite_url)
    t.stage("people", [person(i) for i in range(3)])
    t.load()
    with t.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sync_state"))
    assert t.load().write_calls == 0  # incremental: nothing was rebuilt
    assert t.load(full=True).created == 3  # re-sent, matched on whopUserId: no duplicates
    assert len(t.emulator.dump()["people"]) == 3


def test_the_batch_shrinks_to_the_server_maximum(twenty_server, sqlite_url):
    t = Setup(twenty_server, sqlite_url, max_batch=60)
    t.stage("people", [person(i) for i in range(130)])
    counts = t.load(batch_size=200)
    # One refused call of 130 rows, then 60 + 60 + 10.
    assert counts.write_calls == 4 and counts.created == 130
    assert len(t.emulator.dump()["people"]) == 130


def test_rows_sharing_a_unique_value_go_to_different_calls(twenty_server, sqlite_url):
    t = Setup(twenty_server, sqlite_url)
    t.stage("people", [person(1, "same@example.com"), person(2, "SAME@example.com")])
    counts = t.load()
    # Same email, one call each: both match the same record, the second wins.
    assert counts.write_calls == 2 and counts.rejected == 0
    assert len(t.emulator.dump()["people"]) == 1


def test_a_rejected_row_is_isolated_recorded_and_retried(twenty_server, db_url):
    t = Setup(twenty_server, db_url)
    # user_7's whopUserId and email match two different records: the server refuses that row.
    t.emulator.seed_record("people", {"whopUserId": "user_7", "emails": {"primaryEmail": None}})
    blocker = t.emulator.seed_record("people", {"emails": {"primaryEmail": "p7@example.com"}})
    t.stage("people", [person(i) for i in range(20)])
    counts = t.load()
    assert counts.rejected == 1 and counts.created == 19
    with t.engine.connect() as conn:
        error = conn.execute(sa.select(sync_errors)).one()
    assert error.source_key == "user_7" and "Multiple records" in error.error
    assert error.resolved_at is None and error.attempts == 1

    again = t.load()  # still conflicting: the one pending record is sent alone, and refused
    assert (again.rejected, again.created, again.write_calls) == (1, 0, 1)
    httpx.delete(
        f"{t.server.url}/rest/people/{blocker['id']}", headers={"Authorization": f"Bearer {KEY}"}
    ).raise_for_status()
    fixed = t.load()
    assert fixed.created == 1 and fixed.rejected == 0
    with t.engine.connect() as conn:
        error = conn.execute(sa.select(sync_errors)).one()
    assert error.resolved_at is not None and error.attempts == 2


def test_a_deferred_target_is_sent_once_its_opportunity_lands(twenty_server, sqlite_url):
    """A note target waiting for its opportunity stays pending (with the reason in sync_errors)
    and lands in the next load after the opportunity does."""
    t = Setup(twenty_server, sqlite_url)
    t.stage("people", [person(1)])
    note_id = m.note_id("default", "pay_1")
    t.stage("notes", [record("pay_1", {"id": note_id, "title": "T", "whopPaymentId": "pay_1"})])
    targets = [
        record(
            f"pay_1:{kind}",
            {"id": m.note_target_id("default", "pay_1", kind)},
            {"note": "pay_1", "kind": kind, "target": target},
        )
        for kind, target in (("person", "user_1"), ("opportunity", "mem_1"))
    ]
    t.stage("noteTargets", targets)
    for object_name in ("people", "notes"):
        t.load(object_name)
    first = t.load("noteTargets")
    assert (first.created, first.deferred) == (1, 1)  # the person link; the opportunity waits
    with t.engine.connect() as conn:
        waiting = conn.execute(sa.select(sync_errors.c.source_key, sync_errors.c.error)).one()
    assert waiting.source_key == "pay_1:opportunity" and "waiting for opportunity" in waiting.error

    opportunity = {"id": m.opportunity_id("default", "mem_1"), "name": "O", "stage": "CUSTOMER"}
    t.stage("opportunities", [record("mem_1", opportunity, {"person": "user_1"})])
    t.load("opportunities")
    second = t.load("noteTargets")
    assert (second.created, second.deferred, second.write_calls) == (1, 0, 1)
    links = {x.get("targetOpportunityId") for x in t.emulator.dump()["noteTargets"]}
    assert m.opportunity_id("default", "mem_1") in links

"""CRM records built from the mirror's change queue: every object, only what a change reaches, email
ownership across changes, rebuilds on a new mapping version, and reads bounded by the change."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from whop_pipeline.crm import build
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.store import crm as store
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import upsert_raw
from whop_pipeline.store.tables import crm_records
from whop_pipeline.whop.mirror import to_raw_record
from whop_pipeline.whop.models import RESOURCES, parse_object

C = "default"
START = dt.date(2026, 1, 1)
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TABLES = {"members": "members", "products": "products", "variants": "plans"}


def mirror(engine: sa.Engine, size: str = "tiny", seed: int = 0, connection: str = C):
    """The dataset's objects in the mirror, as the extract writes them (each write queued)."""
    data = generate_dataset(size, seed=seed, start_date=START, now=NOW)
    with engine.begin() as conn:
        for resource in ("members", "products", "variants", "memberships", "payments"):
            kind = "plans" if resource == "variants" else resource
            models = [parse_object(RESOURCES[resource], o, kind) for o in data.rendered(kind)]
            for start in range(0, len(models), 500):
                records = [to_raw_record(m, NOW) for m in models[start : start + 500]]
                upsert_raw(conn, kind, connection, records)
    return data


def change(engine: sa.Engine, kind: str, payload: dict[str, Any], seen: dt.datetime) -> None:
    resource = "variants" if kind == "plans" else kind
    model = parse_object(RESOURCES[resource], payload, kind)
    with engine.begin() as conn:
        upsert_raw(conn, kind, C, [to_raw_record(model, seen)])


def records(engine: sa.Engine, object_name: str) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(crm_records).where(
                crm_records.c.connection == C, crm_records.c.object_name == object_name
            )
        ).all()
    return {row.record_key: row for row in rows}


@pytest.fixture
def engine(db_url):
    return get_engine(db_url)


def test_the_queue_builds_every_object_once(engine):
    data = mirror(engine)
    first = build.build_queued(engine, C)
    assert first.full_rebuild  # no mapping version stored yet: everything queued
    assert len(records(engine, "opportunities")) == len(data.rendered("memberships"))
    assert len(records(engine, "notes")) == len(data.rendered("payments"))
    assert len(records(engine, "whopProducts")) == len(data.rendered("products"))
    targets = sum(1 + bool(p["membership_id"]) for p in data.rendered("payments"))
    assert len(records(engine, "noteTargets")) == targets
    assert all(r.load_pending for r in records(engine, "people").values())
    # Each record built once: the extract's queued writes and the first build's queue-everything
    # are one queue, and a new product does not rebuild notes that do not exist yet.
    for name in ("whopProducts", "opportunities", "notes", "noteTargets"):
        assert first.rebuilt_count[name] == len(records(engine, name)), name
    with engine.connect() as conn:
        assert store.queued_changes(conn, C) == 0

    again = build.build_queued(engine, C)
    assert again.changes_consumed == 0 and not again.full_rebuild
    assert sum(again.rebuilt_count.values()) == 0


def test_a_member_rename_rebuilds_its_person_and_its_opportunities_only(engine):
    data = mirror(engine)
    build.build_queued(engine, C)
    member = next(
        m
        for m in data.rendered("members")
        if m["user"] and any(ms["member_id"] == m["id"] for ms in data.rendered("memberships"))
    )
    own = {ms["id"] for ms in data.rendered("memberships") if ms["member_id"] == member["id"]}
    renamed = {**member, "user": {**member["user"], "name": "Zed Quill"}}
    change(engine, "members", renamed, NOW + dt.timedelta(minutes=1))

    report = build.build_queued(engine, C)
    assert report.changes_consumed == 1
    assert report.changed_count["people"] == 1
    assert report.rebuilt_count["opportunities"] == len(own)
    assert report.changed_count["opportunities"] == len(own)
    assert report.rebuilt_count["notes"] == report.rebuilt_count["noteTargets"] == 0
    person = records(engine, "people")[member["user"]["id"]]
    assert person.record["name"] == {"firstName": "Zed", "lastName": "Quill"}
    assert all("Zed Quill" in records(engine, "opportunities")[k].record["name"] for k in own)


def test_a_shared_email_follows_its_holders_across_changes(engine):
    data = mirror(engine)
    build.build_queued(engine, C)
    older, newer = sorted(
        (m for m in data.rendered("members") if m["email"] and m["user"]),
        key=lambda m: m["created_at"],
    )[:2]
    seen = NOW + dt.timedelta(minutes=1)
    # The newer member takes the older one's email: it is shared, the older keeps it as primary.
    change(engine, "members", {**newer, "email": older["email"].upper()}, seen)
    build.build_queued(engine, C)
    people = records(engine, "people")
    older_key, newer_key = older["user"]["id"], newer["user"]["id"]
    assert people[older_key].record["emails"]["primaryEmail"] == older["email"].lower()
    assert people[newer_key].record["emails"] == {
        "primaryEmail": None,
        "additionalEmails": [older["email"].lower()],
    }
    # The older one moves to another email: the newer one, never changed itself, is rebuilt as
    # the email's remaining holder and now has it as primary.
    change(engine, "members", {**older, "email": "moved@example.com"}, seen)
    report = build.build_queued(engine, C)
    assert report.rebuilt_count["people"] == 2
    people = records(engine, "people")
    assert people[newer_key].record["emails"]["primaryEmail"] == older["email"].lower()
    assert people[older_key].record["emails"]["primaryEmail"] == "moved@example.com"


def test_a_product_rename_rebuilds_the_notes_of_its_payments(engine):
    data = mirror(engine)
    build.build_queued(engine, C)
    product = data.rendered("products")[0]
    paid = {p["id"] for p in data.rendered("payments") if p["product_id"] == product["id"]}
    later = (dt.datetime.fromisoformat(product["updated_at"]) + dt.timedelta(days=1)).isoformat()
    change(engine, "products", {**product, "title": "Renamed", "updated_at": later}, NOW)
    report = build.build_queued(engine, C)
    assert report.rebuilt_count["whopProducts"] == 1
    assert report.rebuilt_count["notes"] == len(paid)
    assert report.rebuilt_count["opportunities"] == 0
    assert all("Renamed" in records(engine, "notes")[k].record["title"] for k in paid)


def test_a_new_mapping_version_rebuilds_everything_and_changes_nothing_else(engine, monkeypatch):
    mirror(engine)
    build.build_queued(engine, C)
    before = {k: r.digest for k, r in records(engine, "notes").items()}
    monkeypatch.setattr(build, "MAPPING_VERSION", "next")
    report = build.build_queued(engine, C)
    assert report.full_rebuild and report.rebuilt_count["notes"] == len(before)
    assert report.changed_count["notes"] == 0  # the same rules: the same digests
    assert {k: r.digest for k, r in records(engine, "notes").items()} == before


def _reads_for_one_change(engine: sa.Engine, size: str, monkeypatch) -> tuple[int, int]:
    """SQL statements and mirror payloads read to rebuild after one membership changed."""
    data = mirror(engine, size)
    build.build_queued(engine, C)
    membership = data.rendered("memberships")[0]
    changed = {
        **membership,
        "status": "canceled" if membership["status"] != "canceled" else "active",
    }
    later = dt.datetime.fromisoformat(membership["updated_at"]) + dt.timedelta(days=1)
    change(engine, "memberships", {**changed, "updated_at": later.isoformat()}, NOW)

    payloads = 0
    real_read = build.read_raw

    def counting_read(*args, **kwargs):
        nonlocal payloads
        rows = real_read(*args, **kwargs)
        payloads += len(rows)
        return rows

    statements = 0

    def count(*_args):
        nonlocal statements
        statements += 1

    monkeypatch.setattr(build, "read_raw", counting_read)
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        report = build.build_for(engine, C, build.ChangeSet({"memberships": {membership["id"]}}))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert report.changed_count["opportunities"] == 1 and report.changes_consumed == 1
    return statements, payloads


def test_a_one_event_batch_reads_the_same_whatever_the_account_size(tmp_path, monkeypatch):
    """A webhook batch of one event reads what it touches, not the account: the same statements
    and mirror payloads on a tiny and on a 20x larger account."""
    tiny = get_engine(f"sqlite:///{tmp_path / 'tiny.db'}")
    small = get_engine(f"sqlite:///{tmp_path / 'small.db'}")
    tiny_reads = _reads_for_one_change(tiny, "tiny", monkeypatch)
    small_reads = _reads_for_one_change(small, "small", monkeypatch)
    assert tiny_reads[1] <= 2 and small_reads[1] <= 2  # the membership and its member
    assert tiny_reads == small_reads


def test_a_connection_builds_only_its_own_queue_and_records(engine):
    """Isolation: building one connection neither consumes nor writes another's rows."""
    mirror(engine)
    mirror(engine, seed=1, connection="other")
    with engine.connect() as conn:
        queued_other = store.queued_changes(conn, "other")
    build.build_queued(engine, C)
    with engine.connect() as conn:
        assert store.queued_changes(conn, "other") == queued_other > 0
        assert store.count_records(conn, "other", "people") == 0
        assert store.built_version(conn, "other") is None
    build.build_queued(engine, "other")
    with engine.connect() as conn:
        own = {
            r.record_key
            for r in conn.execute(
                sa.select(crm_records.c.record_key).where(
                    crm_records.c.connection == "other", crm_records.c.object_name == "notes"
                )
            )
        }
    assert own and not own & set(records(engine, "notes"))  # other dataset, other keys

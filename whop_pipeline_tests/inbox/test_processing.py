"""Webhook processing: events applied to the mirror converge on the newest state, land in Twenty
through the sync's loader, and nothing is lost when Twenty fails."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from whop_pipeline.cli.sync import run_sync
from whop_pipeline.inbox import store
from whop_pipeline.inbox.processing import process_batch
from whop_pipeline.sandbox.readings import live_records
from whop_pipeline.store.raw import read_raw
from whop_pipeline_tests.inbox.webhook_helpers import envelope, later, put
from whop_pipeline_tests.pipeline import set_env

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster]


@pytest.fixture
def synced(sqlite_pipeline, monkeypatch):
    set_env(monkeypatch, sqlite_pipeline.env())
    assert run_sync("full", printer=lambda _l: None).success
    return sqlite_pipeline


def process(pipeline, ids, key="batch-1", **resources):
    return process_batch(
        ids,
        run_key=key,
        run_id=f"run-{key}",
        engine=pipeline.engine,
        connection="default",
        whop=resources.get("whop", pipeline.whop()),
        twenty=resources.get("twenty", pipeline.twenty()),
        log=lambda _m: None,
    )


def opportunity(pipeline, membership_id):
    return next(
        o
        for o in live_records(pipeline.twenty_dump(), "opportunities")
        if o["whopMembershipId"] == membership_id
    )


def statuses(pipeline, ids):
    with pipeline.engine.connect() as conn:
        return {row.id: row.status for row in store.get_events(conn, ids, connection="default")}


def active_membership(pipeline):
    return next(
        m
        for m in pipeline.sandbox.whop.dataset.rendered("memberships")
        if m["status"] == "active" and not m["cancel_at_period_end"]
    )


def test_out_of_order_events_converge_on_the_newest(synced):
    membership = active_membership(synced)
    newer = {**membership, "status": "canceled", "updated_at": later(membership["updated_at"], 120)}
    older = {**membership, "status": "past_due", "updated_at": later(membership["updated_at"], 60)}
    # The newest arrives first, the older one after it, in a later batch.
    first = put(synced.engine, envelope("membership.updated", newer))
    report = process(synced, [first], key="b1")
    assert report.done == [first]
    assert opportunity(synced, membership["id"])["stage"] == "LOST"

    second = put(synced.engine, envelope("membership.updated", older))
    report = process(synced, [second], key="b2")
    assert report.done == [second] and report.affected.mirror.stale == 1
    with synced.engine.connect() as conn:
        assert (
            read_raw(conn, "memberships", "default", ids=[membership["id"]])[0]["status"]
            == "canceled"
        )
    assert opportunity(synced, membership["id"])["stage"] == "LOST"


def test_one_batch_with_both_orders_keeps_the_newest(synced):
    membership = active_membership(synced)
    newer = {**membership, "status": "expired", "updated_at": later(membership["updated_at"], 90)}
    older = {**membership, "status": "trialing", "updated_at": later(membership["updated_at"], 30)}
    ids = [
        put(synced.engine, envelope("membership.updated", newer)),
        put(synced.engine, envelope("membership.updated", older)),
    ]
    process(synced, ids)
    assert opportunity(synced, membership["id"])["whopMembershipStatus"] == "expired"


def test_legacy_event_names_are_applied(synced):
    membership = active_membership(synced)
    gone = {**membership, "status": "expired", "updated_at": later(membership["updated_at"], 10)}
    row = put(synced.engine, envelope("membership.went_invalid", gone))
    assert process(synced, [row]).done == [row]
    assert opportunity(synced, membership["id"])["stage"] == "LOST"


def test_a_failed_twenty_write_leaves_the_row_failed_and_a_later_run_completes_it(synced):
    membership = active_membership(synced)
    changed = {
        **membership,
        "cancel_at_period_end": True,
        "updated_at": later(membership["updated_at"], 5),
    }
    row = put(synced.engine, envelope("membership.cancel_at_period_end_changed", changed))
    down = synced.twenty(api_url="http://127.0.0.1:9", max_attempts=2)  # nothing listens there
    with pytest.raises(Exception, match="Twenty"):
        process(synced, [row], key="b1", twenty=down)
    with synced.engine.connect() as conn:
        failed = store.get_events(conn, [row], connection="default")[0]
    assert failed.status == "failed" and failed.attempts == 1 and "Twenty" in failed.last_error
    assert opportunity(synced, membership["id"])["stage"] == "CUSTOMER"

    report = process(synced, [row], key="b2")
    assert report.done == [row] and statuses(synced, [row]) == {row: "done"}
    assert opportunity(synced, membership["id"])["stage"] == "NEGOTIATION"


def test_a_claimed_row_is_not_applied_twice(synced):
    membership = active_membership(synced)
    row = put(
        synced.engine,
        envelope(
            "membership.updated", {**membership, "updated_at": later(membership["updated_at"], 1)}
        ),
    )
    assert process(synced, [row], key="b1").done == [row]
    again = process(synced, [row], key="b2")
    assert again.claimed == [] and again.done == []


def test_a_refund_rereads_its_payment(synced):
    payment = next(
        p for p in synced.sandbox.whop.dataset.rendered("payments") if p["substatus"] == "succeeded"
    )
    synced.sandbox.whop.update_payment(payment["id"], substatus="refunded")
    synced.reset_stats()
    refund = {"id": "rfnd_test_1", "amount": 1.0, "payment": {"id": payment["id"]}}
    row = put(synced.engine, envelope("refund.created", refund))
    report = process(synced, [row])
    assert report.done == [row] and report.affected.fetched == 1
    assert synced.whop_stats()["requests"] == {f"GET /api/v1/payments/{payment['id']}": 1}
    note = next(
        n
        for n in live_records(synced.twenty_dump(), "notes")
        if n["whopPaymentId"] == payment["id"]
    )
    assert note["title"].startswith("Payment refunded")


def test_a_new_membership_brings_its_missing_member(synced):
    data = synced.sandbox.whop.dataset
    member = data.rendered("members")[0]
    with synced.engine.begin() as conn:
        from whop_pipeline.store.tables import raw_members

        conn.execute(sa.delete(raw_members).where(raw_members.c.id == member["id"]))
    created = synced.sandbox.whop.create_membership(member_id=member["id"], status="active")
    row = put(synced.engine, envelope("membership.activated", created))
    report = process(synced, [row])
    assert report.done == [row] and report.affected.fetched == 1
    opp = opportunity(synced, created["id"])
    person = next(
        p
        for p in live_records(synced.twenty_dump(), "people")
        if p["id"] == opp["pointOfContactId"]
    )
    assert person["whopUserId"] == (member["user"] or {}).get("id", member["id"])


def test_an_unusable_payload_fails_alone(synced):
    membership = active_membership(synced)
    good = put(
        synced.engine,
        envelope(
            "membership.updated", {**membership, "updated_at": later(membership["updated_at"], 3)}
        ),
    )
    bad = put(
        synced.engine, envelope("membership.updated", {"id": "mem_broken", "status": "active"})
    )
    report = process(synced, [good, bad])
    assert report.done == [good] and list(report.failed) == [bad]
    assert "plan_id" in report.failed[bad]
    assert statuses(synced, [good, bad]) == {good: "done", bad: "failed"}


def test_unknown_events_are_acknowledged_and_ignored(synced):
    row = put(synced.engine, envelope("course.completed", {"id": "crs_1"}))
    report = process(synced, [row])
    assert report.done == [row] and report.ignored == 1

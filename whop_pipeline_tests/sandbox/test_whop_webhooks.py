"""Changes through ``/_sandbox`` and the signed webhooks they deliver, retries included."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook
from whop_sdk.lib.verify_webhook import WebhookVerificationError, unwrap
from whop_sdk.memberships.types.post_membership_activated_payload import (
    PostMembershipActivatedPayload,
)
from whop_sdk.memberships.types.post_membership_updated_payload import PostMembershipUpdatedPayload
from whop_sdk.payments.types.post_payment_created_payload import PostPaymentCreatedPayload
from whop_sdk.payments.types.post_payment_failed_payload import PostPaymentFailedPayload
from whop_sdk.payments.types.post_payment_succeeded_payload import PostPaymentSucceededPayload
from whop_sdk.refunds.types.post_refund_created_payload import PostRefundCreatedPayload

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline_tests.sandbox.whop_fixtures import (
    WHOP_NOW,
    WhopEnv,
    WhopReceiver,
    start_whop,
    stop_whop,
    whop_fresh,
    whop_receiver,
    whop_shape_problems,
    whop_tiny_dataset,
)

pytestmark = pytest.mark.sandbox
__all__ = ["whop_fresh", "whop_receiver"]  # fixtures, imported for pytest

SECRET = "ws_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"
FAST_RETRIES = (0.05, 0.1, 0.15)
OPTIONAL = frozenset({"previous_attributes"})  # "omitted when no capture is available"


@pytest.fixture
def whop_hooked(whop_receiver: WhopReceiver) -> Iterator[WhopEnv]:
    env = start_whop(
        webhook_url=whop_receiver.url, webhook_secret=SECRET, webhook_retry_delays=FAST_RETRIES
    )
    yield env
    stop_whop(env)


def _events(receiver: WhopReceiver, count: int) -> list[dict[str, Any]]:
    """The first ``count`` deliveries, each verified with the SDK's ``unwrap``."""
    received = receiver.wait_for(count)
    assert len(received) >= count, f"got {len(received)} deliveries, wanted {count}"
    events = []
    for body, headers, _ in received[:count]:
        event = unwrap(body, headers=headers, key=SECRET)
        assert event["id"] == headers["webhook-id"] and event["id"].startswith("msg_")
        events.append(event)
    return events


def _delivered(env: WhopEnv, receiver: WhopReceiver, prefix: str = "") -> list[dict[str, Any]]:
    """Every delivery so far once the queue is idle, verified, keeping types starting ``prefix``."""
    assert env.emulator.wait_for_webhooks(5)
    events = _events(receiver, len(receiver.received))
    return [e for e in events if e["type"].startswith(prefix)]


def _active_membership(env: WhopEnv) -> str:
    return next(
        m.id for m in env.dataset.memberships if m.status == "active" and not m.cancel_at_period_end
    )


def test_changes_bump_updated_at_and_show_in_reads(whop_fresh: WhopEnv) -> None:
    ident = _active_membership(whop_fresh)
    before = whop_fresh.get(f"/memberships/{ident}").json()
    first = whop_fresh.control(
        "POST", f"/memberships/{ident}", json={"cancel_at_period_end": True}
    ).json()
    second = whop_fresh.control("POST", f"/memberships/{ident}", json={"status": "canceled"}).json()
    assert before["updated_at"] < first["updated_at"] < second["updated_at"]
    assert second["canceled_at"] and second["most_recent_action"] == "canceled_on"
    assert second["cancel_at_period_end"] is False
    assert whop_fresh.get(f"/memberships/{ident}").json() == second
    listed = {r["id"]: r for r in whop_fresh.list_all("memberships", statuses="canceled")}
    assert listed[ident] == second
    # Many changes inside one millisecond still order strictly.
    stamps = [
        whop_fresh.emulator.update_membership(ident, metadata={"n": n})["updated_at"]
        for n in range(20)
    ]
    assert stamps == sorted(stamps) and len(set(stamps)) == 20


def test_invalid_changes_are_400_and_change_nothing(whop_fresh: WhopEnv) -> None:
    ident = _active_membership(whop_fresh)
    before = whop_fresh.get(f"/memberships/{ident}").json()
    for body in (
        {"colour": "blue"},
        {"status": "paused"},
        {"cancel_at_period_end": "yes"},
        {"status": "canceled", "x": 1},
    ):
        response = whop_fresh.control("POST", f"/memberships/{ident}", json=body)
        assert response.status_code == 400 and response.json()["error"]["type"] == "bad_request"
    assert whop_fresh.control("POST", f"/memberships/{ident}", content=b"[1]").status_code == 400
    assert (
        whop_fresh.control(
            "POST", "/memberships/mem_missing0000000", json={"status": "canceled"}
        ).status_code
        == 404
    )
    payment = whop_fresh.dataset.payments[0].id
    assert (
        whop_fresh.control(
            "POST", f"/payments/{payment}", json={"refunded_amount": "-1"}
        ).status_code
        == 400
    )
    assert whop_fresh.get(f"/memberships/{ident}").json() == before


def test_payment_changes_keep_derived_fields(whop_fresh: WhopEnv) -> None:
    paid = next(
        p for p in whop_fresh.dataset.payments if p.substatus == "succeeded" and p.currency == "jpy"
    )
    refunded = whop_fresh.control(
        "POST", f"/payments/{paid.id}", json={"substatus": "refunded"}
    ).json()
    assert refunded["status"] == "paid" and refunded["refunded_amount"] == refunded["total"]
    assert refunded["refunded_at"] and refunded["refundable"] is False
    failed = whop_fresh.emulator.update_payment(paid.id, status="uncollectible")
    assert (failed["substatus"], failed["paid_at"], failed["refunded_amount"]) == (
        "failed",
        None,
        None,
    )
    assert failed["failure_message"]
    partial = whop_fresh.emulator.update_payment(
        paid.id, status="paid", substatus="partially_refunded", refunded_amount="1000"
    )
    assert partial["refunded_amount"]["amount"] == "1000" and partial["paid_at"]


def test_created_objects_are_listed_and_reset_restores_the_dataset(whop_fresh: WhopEnv) -> None:
    original = {
        kind: whop_fresh.dataset.rendered(kind) for kind in ("members", "memberships", "payments")
    }
    created = whop_fresh.control(
        "POST", "/memberships", json={"email": "New.Person@Example.com", "name": "New Person"}
    )
    assert created.status_code == 201
    membership = created.json()
    assert membership["status"] == "active" and membership["user_id"].startswith("user_")
    payment = whop_fresh.control(
        "POST", "/payments", json={"membership_id": membership["id"]}
    ).json()
    assert (payment["billing_reason"], payment["status"], payment["customer_email"]) == (
        "subscription_create",
        "paid",
        "New.Person@Example.com",
    )
    assert whop_fresh.list_all("memberships", first=1)[0]["id"] == membership["id"]  # newest first
    assert whop_fresh.list_all("payments")[0]["id"] == payment["id"]
    # Ending a member's only membership takes away their access (and a reset gives it back).
    per_member = Counter(m.member_id for m in whop_fresh.dataset.memberships)
    only = next(
        m
        for m in whop_fresh.dataset.memberships
        if m.status == "active" and per_member[m.member_id] == 1
    )
    whop_fresh.emulator.update_membership(only.id, status="expired")
    member = whop_fresh.get(f"/members/{only.member_id}").json()
    assert (member["access_level"], member["status"]) == ("no_access", "left")
    reset = whop_fresh.control("POST", "/reset", params={"data": "true"})
    assert reset.status_code == 200
    for kind, rows in original.items():
        assert whop_fresh.dataset.rendered(kind) == rows
    assert whop_fresh.get(f"/memberships/{membership['id']}").status_code == 404
    assert original["memberships"] == generate_dataset("tiny", seed=0, now=WHOP_NOW).rendered(
        "memberships"
    )


def test_membership_webhooks_are_signed_and_typed(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    ident = _active_membership(whop_hooked)
    whop_hooked.control("POST", f"/memberships/{ident}", json={"cancel_at_period_end": True})
    after = whop_hooked.control("POST", f"/memberships/{ident}", json={"status": "canceled"}).json()
    events = _delivered(whop_hooked, whop_receiver, "membership.")
    assert [e["type"] for e in events] == [
        "membership.updated",
        "membership.cancel_at_period_end_changed",
        "membership.updated",
        "membership.cancel_at_period_end_changed",
        "membership.deactivated",
    ]
    assert len({e["id"] for e in events}) == 5
    last = events[2]
    assert last["data"] == after == whop_hooked.get(f"/memberships/{ident}").json()
    assert (
        last["previous_attributes"]["status"] == "active"
        and "updated_at" not in last["previous_attributes"]
    )
    assert (last["api_version"], last["api_version_date"], last["account_id"]) == (
        "v1",
        "2026-10-15-1",
        whop_hooked.dataset.account.id,
    )
    for event in events:
        payload = PostMembershipUpdatedPayload.model_validate(event)
        assert payload.timestamp.tzinfo is not None
        assert whop_shape_problems(PostMembershipUpdatedPayload, event, may_omit=OPTIONAL) == []
    created = whop_hooked.emulator.create_membership(member_id=whop_hooked.dataset.members[0].id)
    activated = _delivered(whop_hooked, whop_receiver, "membership.")[5]
    assert activated["type"] == "membership.activated" and activated["data"] == created
    PostMembershipActivatedPayload.model_validate(activated)
    # Standard Webhooks with base64(secret) as the key verifies the same delivery.
    body, headers, _ = whop_receiver.received[0]
    Webhook(base64.b64encode(SECRET.encode()).decode()).verify(body, headers)


def test_payment_webhooks(whop_hooked: WhopEnv, whop_receiver: WhopReceiver) -> None:
    ds = whop_hooked.dataset
    member = ds.members[1].id
    created = whop_hooked.emulator.create_payment(member_id=member)
    paid = next(p for p in ds.payments if p.substatus == "succeeded" and p.membership_id)
    whop_hooked.emulator.update_payment(paid.id, substatus="refunded")
    whop_hooked.emulator.update_payment(paid.id, substatus="failed")
    whop_hooked.emulator.update_payment(paid.id, failure_message="Card expired")  # no event
    events = _events(whop_receiver, 4)
    assert [e["type"] for e in events] == [
        "payment.created",
        "payment.succeeded",
        "refund.created",
        "payment.failed",
    ]
    assert whop_hooked.emulator.wait_for_webhooks(5)
    assert len(whop_receiver.received) == 4  # the failure_message change sends nothing
    created_event, succeeded, refund, failed = events
    assert created_event["data"] == created and created["membership_id"] is None
    assert created["billing_reason"] == "one_time"
    PostPaymentCreatedPayload.model_validate(created_event)
    PostPaymentSucceededPayload.model_validate(succeeded)
    PostPaymentFailedPayload.model_validate(failed)
    refund_model = PostRefundCreatedPayload.model_validate(refund)
    assert refund_model.data.payment.id == paid.id and refund["data"]["id"].startswith("rfnd_")
    assert whop_shape_problems(PostRefundCreatedPayload, refund, may_omit=OPTIONAL) == []
    assert failed["data"]["substatus"] == "failed" and failed["data"]["status"] == "open"
    assert whop_shape_problems(PostPaymentFailedPayload, failed, may_omit=OPTIONAL) == []


def test_tampered_deliveries_fail_verification(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    whop_hooked.emulator.update_membership(_active_membership(whop_hooked), status="past_due")
    body, headers, _ = whop_receiver.wait_for(1)[0]
    unwrap(body, headers=headers, key=SECRET)
    with pytest.raises(WebhookVerificationError):
        unwrap(body, headers=headers, key=SECRET + "x")
    with pytest.raises(WebhookVerificationError):
        unwrap(body.replace(b"past_due", b"active__"), headers=headers, key=SECRET)
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(SECRET[3:].encode()).decode()).verify(
            body, headers
        )  # prefix stripped


def test_failed_deliveries_are_retried_with_the_same_id(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    whop_receiver.statuses = [500, 503]
    whop_hooked.emulator.update_membership(
        _active_membership(whop_hooked), cancel_at_period_end=True
    )
    assert whop_hooked.emulator.wait_for_webhooks(5)
    received = whop_receiver.received
    assert (
        len(received) == 6
    )  # membership.updated and cancel_at_period_end_changed, 3 attempts each
    first_id = received[0][1]["webhook-id"]
    attempts = [r for r in received if r[1]["webhook-id"] == first_id]
    assert len(attempts) == 3 and len({r[0] for r in attempts}) == 1  # same body each time
    for body, headers, _ in attempts:
        unwrap(body, headers=headers, key=SECRET)
    log = [d for d in whop_hooked.emulator.deliveries() if d["webhook_id"] == first_id]
    assert [(d["attempt"], d["status"], d["delivered"], d["will_retry"]) for d in log] == [
        (1, 500, False, True),
        (2, 503, False, True),
        (3, 200, True, False),
    ]
    # Each retry is scheduled after the next delay of Whop's schedule (the emulator's, shortened).
    assert [d["retry_in"] for d in log] == [FAST_RETRIES[0], FAST_RETRIES[1], None]
    assert (
        whop_hooked.control("GET", "/webhooks").json()["data"] == whop_hooked.emulator.deliveries()
    )


def test_deliveries_give_up_after_the_last_retry() -> None:
    env = start_whop(
        webhook_url="http://127.0.0.1:9/unreachable",
        webhook_secret=SECRET,
        webhook_retry_delays=(0.01, 0.02),
    )
    try:
        env.emulator.update_membership(_active_membership(env), status="past_due")
        assert env.emulator.wait_for_webhooks(10)
        log = env.emulator.deliveries()
        assert [d["attempt"] for d in log] == [1, 2, 3]
        assert all(d["status"] is None and d["error"] for d in log)
        assert [d["will_retry"] for d in log] == [True, True, False]
    finally:
        stop_whop(env)


def test_posting_a_change_does_not_wait_for_delivery() -> None:
    """The receiver holds every delivery until released, so a control call that waited for its
    webhook could not answer while no delivery attempt has finished."""
    reached, release = threading.Event(), threading.Event()
    bodies: list[bytes] = []

    async def held_receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        bodies.append(body)
        reached.set()
        await asyncio.to_thread(release.wait, 10)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    receiver = BackgroundServer(held_receiver).start()
    env = start_whop(
        whop_tiny_dataset(), webhook_url=f"{receiver.url}/hooks/whop", webhook_secret=SECRET
    )
    try:
        response = env.control(
            "POST", f"/memberships/{_active_membership(env)}", json={"status": "canceled"}
        )
        assert response.status_code == 200
        assert env.emulator.deliveries() == []  # answered before any delivery attempt finished
        assert reached.wait(5)  # the delivery is under way, held by the receiver
        release.set()
        assert env.emulator.wait_for_webhooks(10)
        assert json.loads(bodies[0])["type"] == "membership.updated"
        assert env.emulator.deliveries()[0]["delivered"]
    finally:
        release.set()
        stop_whop(env)
        receiver.stop()


def test_each_refund_is_its_own_event(whop_hooked: WhopEnv, whop_receiver: WhopReceiver) -> None:
    paid = next(
        p
        for p in whop_hooked.dataset.payments
        if p.substatus == "succeeded" and p.currency == "usd"
    )
    total = paid.subtotal_minor / 100
    whop_hooked.emulator.update_payment(paid.id, refunded_amount="1.25")
    after = whop_hooked.emulator.update_payment(
        paid.id, substatus="refunded", refunded_amount=str(total)
    )
    whop_hooked.emulator.update_payment(paid.id, substatus="dispute_warning")  # no event
    assert whop_hooked.emulator.wait_for_webhooks(5)
    events = _events(whop_receiver, 2)
    assert len(whop_receiver.received) == 2
    assert [e["type"] for e in events] == ["refund.created", "refund.created"]
    assert [e["data"]["amount"] for e in events] == [1.25, round(total - 1.25, 2)]
    assert events[0]["data"]["id"] != events[1]["data"]["id"]
    assert after["refunded_amount"]["amount"] == f"{total:.2f}" and after["substatus"] == "refunded"
    assert whop_hooked.get(f"/payments/{paid.id}").json()["substatus"] == "dispute_warning"

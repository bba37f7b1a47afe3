"""Webhooks managed through the API (``/api/v1/webhooks``): secrets, delivery logs, replays,
auto-disable and deletion (``whop_pipeline/sandbox/whop/hooks.py``). Facts:
docs/whop-api.md#managing-webhooks."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from whop_sdk.lib.verify_webhook import unwrap
from whop_sdk.types.webhook import Webhook
from whop_sdk.types.webhook_delivery import WebhookDelivery
from whop_sdk.types.webhook_list_item import WebhookListItem

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.dataset import iso
from whop_pipeline_tests.sandbox.whop_fixtures import (
    WhopEnv,
    WhopReceiver,
    start_whop,
    stop_whop,
    whop_receiver,
    whop_shape_problems,
)

pytestmark = pytest.mark.sandbox
__all__ = ["whop_receiver"]  # fixture, imported for pytest

DAY = 86_400
LEGACY_SECRET = "ws_0123456789abcdef0123456789abcdef"
_CHANGES = itertools.count()


@dataclass
class SwitchReceiver:
    """A webhook endpoint that answers ``status`` (200 until a test changes it) and records
    ``(body, headers, status answered)``."""

    status: int = 200
    received: list[tuple[bytes, dict[str, str], int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hooks"

    def start(self) -> SwitchReceiver:
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            with self.lock:
                status = self.status
                self.received.append((body, dict(request.headers), status))
            return JSONResponse({"ok": status < 300}, status_code=status)

        routes = [Route("/hooks", hook, methods=["POST"])]
        self.server = BackgroundServer(Starlette(routes=routes)).start()
        return self

    def ids(self) -> list[str]:
        with self.lock:
            return [headers["webhook-id"] for _, headers, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[SwitchReceiver]:
    started = SwitchReceiver().start()
    yield started
    assert started.server is not None
    started.server.stop()


@pytest.fixture
def env() -> Iterator[WhopEnv]:
    """No retries: one attempt per message, so every count is exact."""
    started = start_whop(webhook_retry_delays=())
    yield started
    stop_whop(started)


def create(env: WhopEnv, url: str, **fields: Any) -> dict[str, Any]:
    response = env.http.post(f"{env.base}/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(env: WhopEnv, hook_id: str) -> list[dict[str, Any]]:
    response = env.get(f"/webhooks/{hook_id}/deliveries", {"first": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def change(env: WhopEnv) -> None:
    """One membership change that sends exactly one event (``membership.updated``), then waits
    until its deliveries are done."""
    ident = next(
        m.id for m in env.dataset.memberships if m.status == "active" and not m.cancel_at_period_end
    )
    env.emulator.update_membership(ident, metadata={"n": next(_CHANGES)})
    assert env.emulator.wait_for_webhooks(10)


def test_create_returns_the_secret_once_and_reads_show_null(
    env: WhopEnv, receiver: SwitchReceiver
) -> None:
    """Fact: ``POST /webhooks`` answers the webhook (``hook_…``) with its ``webhook_secret``
    (``ws_…``); later reads, list and get, give ``webhook_secret: null``. Shapes match the SDK's
    ``Webhook`` / ``WebhookListItem`` models."""
    created = create(
        env, receiver.url, events=["membership.updated"], api_version_date="2026-10-15-1"
    )
    assert created["id"].startswith("hook_") and created["webhook_secret"].startswith("ws_")
    assert (created["resource_id"], created["enabled"]) == (env.dataset.account.id, True)
    assert (created["api_version"], created["api_version_date"]) == ("v1", "2026-10-15-1")
    assert (created["consecutive_failures"], created["failing_since"]) == (0, None)
    assert whop_shape_problems(Webhook, created) == []
    got = env.get(f"/webhooks/{created['id']}").json()
    assert got["webhook_secret"] is None
    assert got == {**created, "webhook_secret": None}
    listed = env.get("/webhooks", {"account_id": env.dataset.account.id}).json()["data"]
    assert [row["id"] for row in listed] == [created["id"]]
    assert listed[0]["webhook_secret"] is None
    assert whop_shape_problems(WebhookListItem, listed[0]) == []
    assert env.get("/webhooks", {"company_id": env.dataset.account.id}).json()["data"] == listed


def test_another_account_is_out_of_reach(env: WhopEnv, receiver: SwitchReceiver) -> None:
    """Fact: ``resource_id`` defaults to the key's account; lists for an account the key cannot
    see answer zero rows, and an account outside its reach cannot get a webhook (404)."""
    create(env, receiver.url)
    assert env.get("/webhooks", {"account_id": "biz_SomeoneElse000"}).json()["data"] == []
    refused = env.http.post(
        f"{env.base}/webhooks", json={"url": receiver.url, "resource_id": "biz_SomeoneElse000"}
    )
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "resource_id"
    assert env.http.get(f"{env.base}/webhooks").status_code == 200
    assert (
        env.http.get(f"{env.base}/webhooks", headers={"Authorization": "Bearer x"}).status_code
        == 401
    )


def test_deliveries_record_success_and_failure_signed_with_the_webhook_secret(
    whop_receiver: WhopReceiver,
) -> None:
    """Fact: every attempt is a delivery (``whdel_``), newest first, with ``request_body``,
    ``response_code``, ``success`` and ``sent_at``; a failed first attempt counts one
    ``consecutive_failures`` (retries do not add) and a later success resets the streak. Each
    delivery is signed with the webhook's own secret (Standard Webhooks)."""
    whop_receiver.statuses = [500]  # the first attempt of each message fails, the retry succeeds
    env = start_whop(webhook_retry_delays=(0.01,))
    try:
        hook = create(env, whop_receiver.url)
        ident = next(m.id for m in env.dataset.memberships if m.status == "active")
        env.emulator.update_membership(ident, status="past_due")
        assert env.emulator.wait_for_webhooks(10)
        log = deliveries(env, hook["id"])
        assert [(d["response_code"], d["success"]) for d in log] == [(200, True), (500, False)]
        assert all(d["id"].startswith("whdel_") and d["event"] == "membership.updated" for d in log)
        assert log[0]["request_body"] == log[1]["request_body"]
        assert log[0]["request_body"]["data"]["status"] == "past_due"
        assert log[0]["sent_at"] >= log[1]["sent_at"]
        for delivery in log:
            assert whop_shape_problems(WebhookDelivery, delivery) == []
        after = env.get(f"/webhooks/{hook['id']}").json()
        assert (after["consecutive_failures"], after["failing_since"]) == (0, None)
        for body, headers, _ in whop_receiver.received:
            event = unwrap(body, headers=headers, key=hook["webhook_secret"])
            assert event["id"] == headers["webhook-id"] == log[0]["request_body"]["id"]
        assert env.emulator.deliveries() == []  # no configured target: its log stays empty
    finally:
        stop_whop(env)


def test_failures_set_failing_since_and_count_consecutive_failures(
    env: WhopEnv, receiver: SwitchReceiver
) -> None:
    """Fact: the webhook object exposes ``failing_since`` (the first failure of the current
    streak) and ``consecutive_failures``; a successful delivery resets both."""
    hook = create(env, receiver.url)
    receiver.status = 503
    change(env)
    first = env.get(f"/webhooks/{hook['id']}").json()
    change(env)
    second = env.get(f"/webhooks/{hook['id']}").json()
    assert (first["consecutive_failures"], second["consecutive_failures"]) == (1, 2)
    assert first["failing_since"] == second["failing_since"] is not None
    assert env.get("/webhooks", {"has_failures": "true"}).json()["data"][0]["id"] == hook["id"]
    receiver.status = 200
    change(env)
    healed = env.get(f"/webhooks/{hook['id']}").json()
    assert (healed["consecutive_failures"], healed["failing_since"], healed["enabled"]) == (
        0,
        None,
        True,
    )
    assert [d["success"] for d in deliveries(env, hook["id"])] == [True, False, False]


def test_replay_failed_only_resends_exactly_the_failed_ones_with_their_ids(
    env: WhopEnv, receiver: SwitchReceiver
) -> None:
    """Fact: ``POST /webhooks/{id}/replay {sent_after, failed_only}`` re-sends, asynchronously,
    each message of the window whose latest delivery failed, keeping its original ``webhook-id``;
    each re-send is a new delivery (``replayed_from``). Older failures outside the window stay."""
    hook = create(env, receiver.url)
    receiver.status = 500
    change(env)  # fails, before the window
    env.emulator.clock.advance(3600)
    window_start = iso(env.emulator.clock.now_ms())
    change(env)  # fails, in the window
    change(env)  # fails, in the window
    receiver.status = 200
    change(env)  # succeeds, in the window
    before_ids = receiver.ids()
    assert len(before_ids) == 4
    response = env.http.post(
        f"{env.base}/webhooks/{hook['id']}/replay",
        json={"sent_after": window_start, "failed_only": True},
    )
    assert response.status_code == 200 and response.json() == {"queued": True}
    assert env.emulator.wait_for_webhooks(10)
    assert receiver.ids() == before_ids + before_ids[1:3]
    log = deliveries(env, hook["id"])
    assert len(log) == 6
    originals = {d["id"]: d for d in log[2:]}
    replays = log[:2]
    assert all(d["success"] and d["replayed_from"] in originals for d in replays)
    assert sorted(d["request_body"]["id"] for d in replays) == sorted(before_ids[1:3])
    assert {originals[d["replayed_from"]]["success"] for d in replays} == {False}
    # With regenerate_ids the same window goes out under new ids (every message once).
    env.http.post(
        f"{env.base}/webhooks/{hook['id']}/replay",
        json={"sent_after": window_start, "regenerate_ids": True},
    )
    assert env.emulator.wait_for_webhooks(10)
    fresh = receiver.ids()[6:]
    assert len(fresh) == 3 and not set(fresh) & set(before_ids)


def test_endpoint_failing_for_three_days_is_disabled(
    env: WhopEnv, receiver: SwitchReceiver
) -> None:
    """Fact: an endpoint failing every delivery for 3 days is disabled (``enabled: false``,
    ``disabled_reason: "delivery_failures"``) and gets nothing more; measured with the emulator
    clock (``POST /_sandbox/clock``). Re-enabling clears the streak."""
    hook = create(env, receiver.url)
    receiver.status = 500
    change(env)
    env.control("POST", "/clock", json={"advance_seconds": 2 * DAY})
    change(env)
    still = env.get(f"/webhooks/{hook['id']}").json()
    assert (still["enabled"], still["consecutive_failures"]) == (True, 2)
    env.control("POST", "/clock", json={"advance_seconds": DAY})
    change(env)
    disabled = env.get(f"/webhooks/{hook['id']}").json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "delivery_failures")
    assert disabled["disabled_at"] is not None and disabled["consecutive_failures"] == 3
    change(env)
    assert len(receiver.received) == 3 and len(deliveries(env, hook["id"])) == 3
    replay = env.http.post(
        f"{env.base}/webhooks/{hook['id']}/replay", json={"sent_after": "2020-01-01T00:00:00Z"}
    )
    assert replay.status_code == 400  # replays need an enabled webhook
    enabled = env.http.patch(f"{env.base}/webhooks/{hook['id']}", json={"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["failing_since"]) == (
        True,
        None,
        None,
    )
    assert enabled["consecutive_failures"] == 0


def test_deliveries_are_kept_thirty_days(env: WhopEnv, receiver: SwitchReceiver) -> None:
    """Fact: deliveries are kept 30 days (emulator clock)."""
    hook = create(env, receiver.url)
    change(env)
    env.emulator.clock.advance(29 * DAY)
    assert len(deliveries(env, hook["id"])) == 1
    env.emulator.clock.advance(DAY + 1)
    assert deliveries(env, hook["id"]) == []


def test_delete_stops_deliveries_and_events_filter(
    env: WhopEnv, receiver: SwitchReceiver, whop_receiver: WhopReceiver
) -> None:
    """Fact: ``DELETE /webhooks/{id}`` removes the endpoint (``{deleted: true, id}``) and it gets
    no more deliveries; a webhook with ``events`` gets only those events."""
    doomed = create(env, receiver.url)
    filtered = create(env, whop_receiver.url, events=["membership.deactivated"])
    ident = next(m.id for m in env.dataset.memberships if m.status == "active")
    env.emulator.update_membership(ident, status="past_due")  # membership.updated only
    assert env.emulator.wait_for_webhooks(10)
    assert len(receiver.received) == 1 and whop_receiver.received == []
    deleted = env.http.delete(f"{env.base}/webhooks/{doomed['id']}")
    assert deleted.json() == {"deleted": True, "id": doomed["id"]}
    assert env.get(f"/webhooks/{doomed['id']}").status_code == 404
    env.emulator.update_membership(ident, status="expired")  # updated + deactivated (+ member)
    assert env.emulator.wait_for_webhooks(10)
    assert len(receiver.received) == 1
    events = [
        unwrap(b, headers=h, key=filtered["webhook_secret"]) for b, h, _ in whop_receiver.received
    ]
    assert [e["type"] for e in events] == ["membership.deactivated"]
    assert [row["id"] for row in env.get("/webhooks").json()["data"]] == [filtered["id"]]


def test_the_configured_target_keeps_working_beside_registered_webhooks(
    receiver: SwitchReceiver, whop_receiver: WhopReceiver
) -> None:
    """Rule: the configured target (``configure_webhooks``) gets the same messages as before, with
    its own secret and log; a registered webhook gets the same message ids with its own secret."""
    env = start_whop(
        webhook_url=whop_receiver.url, webhook_secret=LEGACY_SECRET, webhook_retry_delays=()
    )
    try:
        hook = create(env, receiver.url)
        change(env)
        ((legacy_body, legacy_headers, _),) = whop_receiver.received
        ((hook_body, hook_headers, _),) = receiver.received
        legacy = unwrap(legacy_body, headers=legacy_headers, key=LEGACY_SECRET)
        registered = unwrap(hook_body, headers=hook_headers, key=hook["webhook_secret"])
        assert legacy == registered
        assert [d["webhook_id"] for d in env.emulator.deliveries()] == [legacy["id"]]
        assert len(deliveries(env, hook["id"])) == 1
    finally:
        stop_whop(env)


def test_replay_one_delivery_answers_its_result(env: WhopEnv, receiver: SwitchReceiver) -> None:
    """Fact: ``POST /webhooks/{id}/deliveries/{delivery_id}/replay`` re-sends that payload and
    answers ``{status, body, success}``, keeping the ``webhook-id`` unless ``regenerate_id``."""
    hook = create(env, receiver.url)
    receiver.status = 500
    change(env)
    (failed,) = deliveries(env, hook["id"])
    receiver.status = 200
    url = f"{env.base}/webhooks/{hook['id']}/deliveries/{failed['id']}/replay"
    again = env.http.post(url, json={})
    assert again.json() == {"status": 200, "body": '{"ok":true}', "success": True}
    renamed = env.http.post(url, json={"regenerate_id": True}).json()
    assert renamed["success"] is True
    first, second, third = receiver.ids()
    assert first == second != third
    missing = env.http.post(f"{env.base}/webhooks/{hook['id']}/deliveries/whdel_nope/replay")
    assert missing.status_code == 404

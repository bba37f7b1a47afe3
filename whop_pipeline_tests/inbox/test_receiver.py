"""The signed-webhook receiver over HTTP: every answer in its contract, exactly the valid unique
deliveries in the inbox, the group-commit writer, and real deliveries from the Whop emulator."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from whop_pipeline.inbox.events import parse_envelope
from whop_pipeline.inbox.receiver import create_receiver_app
from whop_pipeline.inbox.store import NewEvent, status_counts
from whop_pipeline.inbox.writer import InboxWriter
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.whop import create_whop_app
from whop_pipeline.sandbox.whop.webhooks import sign
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import webhook_inbox
from whop_pipeline_tests.sandbox.whop_fixtures import whop_tiny_dataset

pytestmark = pytest.mark.sandbox

SECRET_ACME = "ws_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"
SECRET_GLOBEX = "ws_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRETS = {"acme": SECRET_ACME, "globex": SECRET_GLOBEX}
MAX_BODY = 8192


def envelope(n: int, event_type: str = "payment.succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"msg_{n:05d}",
        "type": event_type,
        "api_version": "v1",
        "account_id": "biz_1",
        "timestamp": "2026-10-03T14:22:42.118Z",
        "data": {"id": f"pay_{n}", "status": "paid", "updated_at": "2026-10-03T14:22:19.804Z"},
        **extra,
    }


def signed_headers(
    body: bytes, secret: str, webhook_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """Signed the way the emulator (and Whop) sign: HMAC keyed by the secret's raw bytes."""
    sent = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(sent),
        "webhook-signature": sign(secret, webhook_id, sent, body),
    }


@dataclass
class Receiver:
    app: Starlette
    server: BackgroundServer
    http: httpx.Client
    db_url: str

    def post(
        self,
        body: dict[str, Any] | bytes,
        *,
        connection: str = "acme",
        secret: str | None = None,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if webhook_id is None:
            webhook_id = body["id"] if isinstance(body, dict) else "msg_raw"
        signed = signed_headers(
            raw, secret or SECRETS.get(connection, "ws_x"), webhook_id, timestamp
        )
        return self.http.post(
            f"/webhooks/whop/{connection}", content=raw, headers={**signed, **(headers or {})}
        )

    def rows(self) -> list[tuple[str, str]]:
        with get_engine(self.db_url).connect() as conn:
            query = sa.select(webhook_inbox.c.connection, webhook_inbox.c.webhook_id)
            return sorted(tuple(r) for r in conn.execute(query))


@contextlib.contextmanager
def serve(db_url: str, **options: Any) -> Iterator[Receiver]:
    app = create_receiver_app(db_url=db_url, secrets=SECRETS, **options)
    server = BackgroundServer(app).start()
    # httpx.Client is thread-safe; the pool lets the concurrency test keep 16 requests in flight.
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    http = httpx.Client(base_url=server.url, timeout=10, limits=limits)
    try:
        yield Receiver(app, server, http, db_url)
    finally:
        http.close()
        server.stop()
        app.state.writer.close()


@pytest.fixture
def receiver(sqlite_url: str) -> Iterator[Receiver]:
    get_engine(sqlite_url)  # migrated before serving, as `webhooks serve` does
    with serve(sqlite_url, max_body_bytes=MAX_BODY) as running:
        yield running


@pytest.fixture
def any_db_receiver(db_url: str) -> Iterator[Receiver]:
    get_engine(db_url)
    with serve(db_url, max_body_bytes=MAX_BODY) as running:
        yield running


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and fragment in body["error"]
    for secret in SECRETS.values():
        assert secret not in response.text


def test_valid_then_duplicate(any_db_receiver: Receiver):
    first = any_db_receiver.post(envelope(1))
    assert (first.status_code, first.json()) == (200, {"status": "stored"})
    again = any_db_receiver.post(envelope(1))  # a retry or replay: same webhook-id, new signature
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert any_db_receiver.rows() == [("acme", "msg_00001")]
    with get_engine(any_db_receiver.db_url).connect() as conn:
        row = conn.execute(sa.select(webhook_inbox)).one()
    assert (row.event_type, row.object_type, row.object_id, row.status) == (
        "payment.succeeded",
        "payment",
        "pay_1",
        "pending",
    )
    assert row.payload == envelope(1)


def test_rejected_deliveries_are_answered_and_never_stored(receiver: Receiver):
    body = json.dumps(envelope(2)).encode()
    tampered = body.replace(b'"paid"', b'"void"')
    sign_then_tamper = signed_headers(body, SECRET_ACME, "msg_00002")
    cases: list[tuple[Callable[[], httpx.Response], int, str]] = [
        (
            lambda: receiver.http.post(
                "/webhooks/whop/acme", content=tampered, headers=sign_then_tamper
            ),
            401,
            "invalid signature",
        ),
        (lambda: receiver.post(envelope(2), secret="ws_not_the_secret"), 401, "invalid signature"),
        # Taken when sent, rounded away from now: 301 s off however long the earlier cases took.
        (
            lambda: receiver.post(envelope(2), timestamp=math.floor(time.time()) - 301),
            401,
            "tolerance",
        ),
        (
            lambda: receiver.post(envelope(2), timestamp=math.ceil(time.time()) + 301),
            401,
            "tolerance",
        ),
        (
            lambda: receiver.http.post("/webhooks/whop/acme", content=body),
            401,
            "missing signature headers",
        ),
        (
            lambda: receiver.post(envelope(2), headers={"webhook-signature": "v1,not base64!"}),
            401,
            "invalid signature",
        ),
        (
            lambda: receiver.post(envelope(2), headers={"webhook-signature": "garbage"}),
            401,
            "invalid signature",
        ),
        (
            lambda: receiver.post(envelope(2), headers={"webhook-timestamp": "soon"}),
            401,
            "invalid signature",
        ),
        (lambda: receiver.post(b"{not json", webhook_id="msg_00002"), 400, "not valid UTF-8 JSON"),
        (lambda: receiver.post(b"\xff\xfe{}", webhook_id="msg_00002"), 401, "invalid signature"),
        (lambda: receiver.post(b"[1]", webhook_id="msg_00002"), 400, "must be a JSON object"),
        (
            lambda: receiver.post({**envelope(2), "data": {"status": "paid"}}),
            400,
            "missing data.id",
        ),
        (lambda: receiver.post(envelope(2), webhook_id="msg_other"), 400, "webhook-id header"),
        (lambda: receiver.post(envelope(2), connection="initech"), 404, "unknown connection"),
    ]
    for send, status, fragment in cases:
        assert_error(send(), status, fragment)
    assert receiver.rows() == []
    assert receiver.http.get("/webhooks/whop/acme").status_code == 405


def test_a_secret_of_one_connection_cannot_write_into_another(receiver: Receiver):
    stolen = receiver.post(envelope(3), connection="globex", secret=SECRET_ACME)
    assert_error(stolen, 401, "invalid signature")
    assert receiver.post(envelope(3), connection="acme").status_code == 200
    assert receiver.post(envelope(3), connection="globex").json() == {"status": "stored"}
    assert receiver.rows() == [("acme", "msg_00003"), ("globex", "msg_00003")]


def test_oversized_bodies_are_refused(receiver: Receiver):
    padding = "x" * MAX_BODY
    big = json.dumps(envelope(4, note=padding)).encode()
    assert_error(receiver.post(big, webhook_id="msg_00004"), 413, "over 8192 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        for start in range(0, len(big), 1024):
            yield big[start : start + 1024]

    headers = signed_headers(big, SECRET_ACME, "msg_00004")
    response = receiver.http.post("/webhooks/whop/acme", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "over 8192 bytes")
    # The limit is inclusive: a body of exactly MAX_BODY bytes is stored.
    fitting = envelope(5)
    fitting["note"] = ""
    fitting["note"] = "x" * (MAX_BODY - len(json.dumps(fitting).encode()))
    exact = json.dumps(fitting).encode()
    assert len(exact) == MAX_BODY
    assert receiver.post(exact, webhook_id="msg_00005").status_code == 200
    assert receiver.rows() == [("acme", "msg_00005")]


def test_the_inbox_holds_exactly_the_valid_unique_deliveries(receiver: Receiver):
    """Concurrent deliveries with repeats and forgeries: every valid one acknowledged and stored
    once, nothing else stored (group commit batches them, but each is answered after its commit)."""

    def owner(n: int) -> str:
        return "acme" if n % 3 else "globex"

    jobs = [(n, owner(n), SECRETS[owner(n)]) for n in range(60)]  # (n, connection, secret)
    jobs += [(n, owner(n), SECRETS[owner(n)]) for n in range(0, 60, 4)]  # 15 repeats
    jobs += [(n + 1000, "acme", "ws_forged") for n in range(10)]

    def send(job: tuple[int, str, str]) -> tuple[int, int, str]:
        n, connection, secret = job
        raw = json.dumps(envelope(n)).encode()
        headers = signed_headers(raw, secret, f"msg_{n:05d}")
        response = receiver.http.post(f"/webhooks/whop/{connection}", content=raw, headers=headers)
        return n, response.status_code, response.json().get("status", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, jobs))
    statuses = [(status, kind) for n, status, kind in answers if n < 1000]
    assert all(status == 200 for status, _ in statuses)
    assert sum(kind == "stored" for _, kind in statuses) == 60
    assert sum(kind == "duplicate" for _, kind in statuses) == 15
    assert all(status == 401 for n, status, _ in answers if n >= 1000)
    expected = sorted((owner(n), f"msg_{n:05d}") for n in range(60))
    assert receiver.rows() == expected


def test_an_unwritable_database_answers_503_and_stores_nothing(db_url: str):
    with serve(db_url) as receiver:
        assert receiver.post(envelope(6)).status_code == 200
        with get_engine(db_url).begin() as conn:
            webhook_inbox.drop(conn)
        refused = receiver.post(envelope(7))
        assert_error(refused, 503, "retry later")
        assert int(refused.headers["retry-after"]) > 0
        health = receiver.http.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        with get_engine(db_url).begin() as conn:
            webhook_inbox.create(conn)
        # Whop retries later: the delivery is stored once, and the refused attempt left nothing.
        assert receiver.post(envelope(7)).json() == {"status": "stored"}
        assert receiver.rows() == [("acme", "msg_00007")]
        assert receiver.http.get("/healthz").json() == {"status": "ok"}


def test_a_database_that_cannot_be_opened_answers_503(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    with serve(f"sqlite:///{blocker / 'inbox.db'}") as receiver:
        assert_error(receiver.post(envelope(8)), 503, "retry later")
        assert receiver.http.get("/healthz").status_code == 503


def test_a_slow_or_saturated_inbox_answers_503_and_the_retry_is_stored_once(sqlite_url: str):
    gate = threading.Event()
    with serve(sqlite_url, write_timeout=0.3) as receiver:
        writer = receiver.app.state.writer
        commit = writer._commit

        def slow_commit(items: Sequence[NewEvent]) -> list[bool]:
            gate.wait(10)
            return commit(items)

        writer._commit = slow_commit
        writer.max_pending = 1
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                held = pool.submit(receiver.post, envelope(9))  # the writer holds it at the gate
                while not writer._thread or writer._queue or not held.running():
                    time.sleep(0.01)
                time.sleep(0.05)
                queued = pool.submit(receiver.post, envelope(10))  # waits in the queue
                while not writer._queue:
                    time.sleep(0.01)
                assert_error(receiver.post(envelope(11)), 503, "retry later")  # queue full
                for future in (held, queued):
                    refused = future.result(10)
                    assert_error(refused, 503, "timed out")
                    assert refused.headers["retry-after"]
        finally:
            gate.set()
        # Whop retries: each is stored once, whether or not the timed-out attempt got written.
        for n in (9, 10, 11):
            assert receiver.post(envelope(n)).status_code == 200
        assert receiver.rows() == [("acme", f"msg_{n:05d}") for n in (9, 10, 11)]


def test_healthz(receiver: Receiver):
    response = receiver.http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_app_configuration_is_validated(sqlite_url: str):
    with pytest.raises(ValueError, match="must not be empty"):
        create_receiver_app(db_url=sqlite_url, secrets={"acme": ""})
    with pytest.raises(ValueError, match="connection name"):
        create_receiver_app(db_url=sqlite_url, secrets={"Acme Inc": SECRET_ACME})


class GatedWriter(InboxWriter):
    """Holds its first commit until released, so later deliveries pile up into one batch."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url)
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def _commit(self, items: Sequence[NewEvent]) -> list[bool]:
        self.batches.append([item.event.webhook_id for item in items])
        self.gate.wait(5)
        if any(item.event.webhook_id == "msg_bad" for item in items):
            raise ValueError("this row cannot be stored")
        return super()._commit(items)


def new_event(webhook_id: str) -> NewEvent:
    body = {**envelope(0), "id": webhook_id}
    return NewEvent("acme", parse_envelope(body), body, parse_envelope(body).timestamp)


def test_group_commit_batches_and_isolates_a_bad_row(sqlite_url: str):
    writer = GatedWriter(sqlite_url)

    async def scenario() -> tuple[Any, list[Any]]:
        first = writer.submit(new_event("msg_first"))
        while not writer.batches:  # the writer holds "msg_first" at the gate
            await asyncio.sleep(0.005)
        queued = [writer.submit(new_event(i)) for i in ("msg_a", "msg_bad", "msg_b", "msg_a")]
        writer.gate.set()
        return await first, await asyncio.gather(*queued, return_exceptions=True)

    first, queued = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert first is True
    assert queued[0] is True and queued[2] is True and queued[3] is False
    assert isinstance(queued[1], ValueError)
    # One batch for everything queued, then row by row after it failed.
    assert writer.batches == [
        ["msg_first"],
        ["msg_a", "msg_bad", "msg_b", "msg_a"],
        ["msg_a"],
        ["msg_bad"],
        ["msg_b"],
        ["msg_a"],
    ]
    writer.close()

    async def late() -> None:
        writer.submit(new_event("msg_late"))

    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(late())
    with get_engine(sqlite_url).connect() as conn:
        assert status_counts(conn)["pending"] == 3


def test_real_signed_webhooks_from_the_whop_emulator(any_db_receiver: Receiver):
    emulator = create_whop_app(
        whop_tiny_dataset(),
        api_key="whop-test-key",
        webhook_url=f"{any_db_receiver.server.url}/webhooks/whop/acme",
        webhook_secret=SECRET_ACME,
        webhook_retry_delays=(0.05, 0.1),
    )
    try:
        membership = next(m for m in emulator.dataset.memberships if m.status == "active")
        payment = next(
            p
            for p in emulator.dataset.payments
            if p.status == "paid" and p.substatus == "succeeded"
        )
        emulator.update_membership(membership.id, status="canceled")
        emulator.update_payment(payment.id, substatus="refunded")
        assert emulator.wait_for_webhooks(10)
        deliveries = emulator.deliveries()
    finally:
        emulator.close()
    assert deliveries and all(d["status"] == 200 and d["attempt"] == 1 for d in deliveries)
    with get_engine(any_db_receiver.db_url).connect() as conn:
        rows = conn.execute(sa.select(webhook_inbox).order_by(webhook_inbox.c.id)).all()
    assert [r.webhook_id for r in rows] == [d["webhook_id"] for d in deliveries]
    assert {r.connection for r in rows} == {"acme"}
    by_type = {r.event_type: r for r in rows}
    assert {"membership.updated", "membership.deactivated", "refund.created"} <= set(by_type)
    assert by_type["membership.deactivated"].object_id == membership.id
    assert by_type["membership.updated"].payload["data"]["status"] == "canceled"
    refund = by_type["refund.created"]
    assert refund.object_type == "refund" and refund.payload["data"]["payment"]["id"] == payment.id
    # Legacy refunds carry no updated_at: the envelope timestamp orders them.
    assert refund.object_updated_at == parse_envelope(refund.payload).timestamp

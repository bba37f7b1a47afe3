"""Webhook events for changes, signed and delivered the way Whop does.

Event mapping (one message per event, each with its own ``msg_`` id, delivered in this order):

- membership created: ``membership.activated`` if its status grants access, else
  ``membership.updated``. Access = trialing, active, past_due, completed, canceling.
- membership changed: ``membership.updated`` (with ``previous_attributes``); then
  ``membership.cancel_at_period_end_changed`` if that flag flipped; then ``membership.activated`` /
  ``membership.deactivated`` if access flipped.
- member created (a new membership for a new user): ``member.created``, delivered before that
  membership's event; ``data`` is the member at the end of the operation (its access included).
- member changed (``name``/``email``/``username`` through ``/_sandbox/members/{id}``, or access
  level / status following a membership change): ``member.updated`` with ``previous_attributes``,
  only when a rendered field changed, delivered after the membership's events. ``data`` is a
  ``Member`` as ``GET /members/{id}`` renders it (the SDK's ``PostMemberCreatedPayload`` /
  ``PostMemberUpdatedPayload``; both events are in its ``CreateWebhooksRequestEventsItem``).
- payment created: ``payment.created``, then its status event (below; a refunded one counts as
  ``payment.succeeded`` and also gets ``refund.created``).
- payment status/substatus changed → the status event: paid → ``payment.succeeded``; failed or
  uncollectible → ``payment.failed``; pending → ``payment.pending``; authorized →
  ``payment.authorized``; void or canceled → ``payment.canceled``; incomplete →
  ``payment.requires_action``. Moving into refunded / partially_refunded / auto_refunded sends
  ``refund.created`` instead (so does a further partial refund), with the legacy ``RefundLegacy``
  payload Whop still uses for refunds (floats, nested ``payment.user.email``; the ``rfnd_`` id
  prefix is assumed), ``amount`` being what that refund added. Dispute and resolution substatuses
  send nothing (``dispute.*`` is not emulated), nor does any other change: v1 has no
  ``payment.updated``.

Envelope (docs/whop-api.md#envelope): ``id`` (= ``webhook-id``), ``type``, ``api_version: "v1"``,
``api_version_date``, ``account_id``, ``timestamp`` (ISO, first send), ``data`` (the object exactly as
``GET /<resource>/{id}`` renders it), ``previous_attributes`` on ``*.updated`` (changed fields except
``updated_at``). Signature (docs/whop-api.md#signatures): Standard Webhooks headers; the
HMAC-SHA256 key is the raw UTF-8 bytes of the whole secret, prefix included. Every attempt is
re-signed with a fresh ``webhook-timestamp`` (the body and ``webhook-id`` stay the same), so a late
retry still verifies within the five-minute tolerance.

Delivery is asynchronous on one background thread: a non-2xx answer or a connection error is retried
after each of ``retry_delays`` in turn (default 10, 20, 40 s), then dropped. Every attempt is logged.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import hmac
import itertools
import json
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from whop_pipeline.sandbox.dataset import VALID_STATUSES, WhopDataset, iso
from whop_pipeline.sandbox.whop.control import Change
from whop_pipeline.sandbox.whop.fields import REFUNDED
from whop_pipeline.sandbox.whop.ids import Ids
from whop_pipeline.sandbox.whop.money import major_float, to_usd_cents

DEFAULT_API_VERSION_DATE = "2026-10-15-1"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle for every emulator's client is slow.
    return httpx.create_ssl_context()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>`` keyed by the secret's raw bytes."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def payment_status_event(status: str, substatus: str) -> str | None:
    if substatus in REFUNDED:
        return None
    if status == "paid":
        # Dispute and resolution substatuses would be dispute.* / resolution events: not emulated.
        return "payment.succeeded" if substatus == "succeeded" else None
    if substatus == "failed" or status == "uncollectible":
        return "payment.failed"
    if status == "pending":
        return "payment.pending"
    if status == "authorized":
        return "payment.authorized"
    if status == "void" or substatus == "canceled":
        return "payment.canceled"
    if substatus == "incomplete":
        return "payment.requires_action"
    return None


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The old values of the fields that changed, ``updated_at`` left out."""
    return {k: v for k, v in before.items() if k != "updated_at" and after.get(k) != v}


def events_for(change: Change) -> list[tuple[str, dict[str, Any] | None]]:
    """``(event type, previous_attributes or None)`` for one change (not the member changes it
    caused: walk ``change.in_order()`` for those), in delivery order."""
    before, after = change.before, change.after
    if change.kind == "members":
        if before is None:
            return [("member.created", None)]
        previous = previous_attributes(before, after)
        return [("member.updated", previous)] if previous else []
    if change.kind == "memberships":
        valid_after = after["status"] in VALID_STATUSES
        if before is None:
            return [("membership.activated" if valid_after else "membership.updated", None)]
        previous = previous_attributes(before, after)
        events: list[tuple[str, dict[str, Any] | None]] = [("membership.updated", previous)]
        if before["cancel_at_period_end"] != after["cancel_at_period_end"]:
            events.append(("membership.cancel_at_period_end_changed", None))
        valid_before = before["status"] in VALID_STATUSES
        if valid_before != valid_after:
            events.append(
                ("membership.activated" if valid_after else "membership.deactivated", None)
            )
        return events
    status, substatus = after["status"], after["substatus"]
    if before is None:
        first = (
            "payment.succeeded"
            if substatus in REFUNDED
            else payment_status_event(status, substatus)
        )
        events = [("payment.created", None)] + ([(first, None)] if first else [])
        return events + ([("refund.created", None)] if substatus in REFUNDED else [])
    if substatus in REFUNDED and after["refunded_amount"] != before["refunded_amount"]:
        return [("refund.created", None)]  # a first refund, or a further partial one
    if (before["status"], before["substatus"]) == (status, substatus):
        return []
    event = payment_status_event(status, substatus)
    return [(event, None)] if event else []


def refund_payload(ds: WhopDataset, change: Change, refund_id: str) -> dict[str, Any]:
    """The legacy ``RefundLegacy`` shape Whop sends with ``refund.*`` events."""
    p, payment = change.record, change.after
    member = ds.get("members", p.member_id)
    membership = ds.get("memberships", p.membership_id) if p.membership_id else None

    # This refund is what the change added on top of any earlier one.
    earlier = (change.before or {}).get("refunded_amount") or {"amount": "0"}
    amount = float(Decimal(payment["refunded_amount"]["amount"]) - Decimal(earlier["amount"]))

    user = payment["user"]
    card = payment["payment_instrument"]["card"]
    return {
        "id": refund_id,
        "amount": amount,
        "currency": p.currency,
        "status": "succeeded",
        "provider": "stripe",
        "created_at": iso(p.refunded_at),
        "provider_created_at": iso(p.refunded_at),
        "reference_status": "available",
        "reference_type": "acquirer_reference_number",
        "reference_value": None,
        "metadata": None,
        "payment": {
            "id": p.id,
            "billing_reason": p.billing_reason,
            "card_brand": card["brand"],
            "card_last4": card["last4"],
            "created_at": payment["created_at"],
            "currency": p.currency,
            "dispute_alerted_at": None,
            "member": {"id": p.member_id, "phone": None},
            "membership": {"id": membership.id, "status": membership.status}
            if membership
            else None,
            "metadata": None,
            "paid_at": payment["paid_at"],
            "payment_method_type": "card",
            "plan": {"id": p.plan_id, "metadata": None},
            "product": {"id": p.product_id, "metadata": None},
            "subtotal": major_float(p.subtotal_minor, p.currency),
            "tax_amount": None,
            "tax_behavior": None,
            "tax_refunded_amount": 0.0,
            "total": major_float(p.subtotal_minor, p.currency),
            "usd_total": to_usd_cents(p.subtotal_minor, p.currency) / 100,
            "user": None
            if user is None
            else {**{k: user[k] for k in ("id", "username", "name")}, "email": member.email},
        },
    }


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    webhook_id: str = field(compare=False)
    event_type: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)


class WebhookDispatcher:
    """Signs and posts events to one target on a background thread, with retries."""

    def __init__(
        self,
        url: str | None,
        secret: str | None,
        *,
        retry_delays: tuple[float, ...] = (10.0, 20.0, 40.0),
        timeout: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.url, self.secret = url, secret
        self.retry_delays = tuple(retry_delays)
        self._timeout = timeout
        self._ids = Ids(random.Random(f"webhooks:{seed}"))
        self._seq = itertools.count()
        self._queue: list[_Delivery] = []
        self._attempts: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.secret)

    def configure(self, url: str | None, secret: str | None) -> None:
        with self._cond:
            self.url, self.secret = url, secret

    def new_id(self, prefix: str) -> str:
        with self._cond:
            return self._ids.new(prefix)

    def enqueue(self, envelope: dict[str, Any]) -> None:
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        with self._cond:
            if self._closed:
                return
            delivery = _Delivery(
                time.monotonic(), next(self._seq), envelope["id"], envelope["type"], body
            )
            heapq.heappush(self._queue, delivery)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="whop-webhooks")
                self._thread.start()
            self._cond.notify_all()

    def attempts(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(a) for a in self._attempts]

    def clear_log(self) -> None:
        with self._cond:
            self._attempts.clear()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery (retries included) is done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, verify=_tls_context()) as client:
            while True:
                with self._cond:
                    while not self._closed and (
                        not self._queue or self._queue[0].due > time.monotonic()
                    ):
                        wait = self._queue[0].due - time.monotonic() if self._queue else None
                        self._cond.wait(wait)
                    if self._closed:
                        return
                    delivery = heapq.heappop(self._queue)
                    url, secret = self.url, self.secret
                    self._in_flight += 1
                try:
                    self._attempt(client, delivery, url, secret)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _attempt(
        self, client: httpx.Client, delivery: _Delivery, url: str | None, secret: str | None
    ) -> None:
        sent = int(time.time())
        record: dict[str, Any] = {
            "webhook_id": delivery.webhook_id,
            "event_type": delivery.event_type,
            "attempt": delivery.attempt,
            "url": url,
            "status": None,
            "error": None,
            "sent_at": iso(int(time.time() * 1000)),
        }
        if url and secret:
            headers = {
                "content-type": "application/json",
                "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(sent),
                "webhook-signature": sign(secret, delivery.webhook_id, sent, delivery.body),
                "user-agent": "whop-sandbox-webhooks/1",
            }
            try:
                response = client.post(url, content=delivery.body, headers=headers)
                record["status"] = response.status_code
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
        else:
            record["error"] = "no webhook target configured"
        ok = record["status"] is not None and 200 <= record["status"] < 300
        retry = not ok and delivery.attempt <= len(self.retry_delays)
        record["delivered"], record["will_retry"] = ok, retry
        # When the next attempt is due, in seconds (Whop's schedule: docs/whop-api.md#delivery-and-retries).
        record["retry_in"] = self.retry_delays[delivery.attempt - 1] if retry else None
        with self._cond:
            self._attempts.append(record)
            if retry and not self._closed:
                delay = self.retry_delays[delivery.attempt - 1]
                delivery.due, delivery.seq = time.monotonic() + delay, next(self._seq)
                delivery.attempt += 1
                heapq.heappush(self._queue, delivery)

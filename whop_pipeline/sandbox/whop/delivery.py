"""Signed webhook delivery on one background thread, with Whop's retries.

Every message is a ``POST`` of the raw JSON body with Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``); the HMAC-SHA256 key is the raw UTF-8 bytes of the whole
secret, prefix included (docs/whop-api.md#signatures). Every attempt is re-signed with a fresh
``webhook-timestamp`` (the body and ``webhook-id`` stay the same), so a late retry still verifies
within the five-minute tolerance.

A non-2xx answer or a connection error is retried after each of ``retry_delays`` in turn (default
10, 20, 40 s), then dropped. Every attempt to the configured target (``configure``) is logged in
``attempts()``. Webhooks registered through ``POST /webhooks`` share the thread and the retry
schedule: their deliveries carry a ``DeliveryTarget`` (its own URL and secret) that records each
attempt itself (``hooks.py``) and stops its queued deliveries once it is no longer ``active``.
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
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from whop_pipeline.sandbox.dataset import iso
from whop_pipeline.sandbox.whop.ids import Ids


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle for every emulator's client is slow.
    return httpx.create_ssl_context()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>`` keyed by the secret's raw bytes."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(order=True)
class Delivery:
    due: float
    seq: int
    webhook_id: str = field(compare=False)
    event_type: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)
    target: DeliveryTarget | None = field(default=None, compare=False)  # None: the configured URL
    retries: bool = field(default=True, compare=False)
    done: Future | None = field(default=None, compare=False)  # resolved with the last attempt
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # the target's own notes


@dataclass
class AttemptResult:
    """What one POST to a target gave: ``status`` is None when nothing answered."""

    status: int | None
    error: str | None
    body: bytes
    seconds: float
    delivered: bool
    will_retry: bool


class DeliveryTarget(Protocol):
    """A registered webhook as the dispatcher sees it. ``active`` is read without locks."""

    url: str
    secret: str

    @property
    def active(self) -> bool: ...

    def attempted(self, delivery: Delivery, result: AttemptResult) -> None: ...


class WebhookDispatcher:
    """Signs and posts events on a background thread, with retries: to the configured target
    (``url``/``secret``), or to the ``DeliveryTarget`` a delivery carries."""

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
        self._queue: list[Delivery] = []
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

    def enqueue(self, envelope: dict[str, Any], target: DeliveryTarget | None = None) -> None:
        """Queue ``envelope`` for the configured URL, or for ``target``."""
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        self.send(envelope["id"], envelope["type"], body, target=target)

    def send(
        self,
        webhook_id: str,
        event_type: str,
        body: bytes,
        *,
        target: DeliveryTarget | None = None,
        retries: bool = True,
        done: Future | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Queue a signed POST of ``body`` now; without ``retries`` it gets one attempt only."""
        with self._cond:
            if self._closed:
                if done is not None:
                    done.set_result(None)
                return
            delivery = Delivery(
                time.monotonic(), next(self._seq), webhook_id, event_type, body, 1, target
            )
            delivery.retries, delivery.done, delivery.meta = retries, done, meta or {}
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
            for dropped in self._queue:
                if dropped.done is not None and not dropped.done.done():
                    dropped.done.set_result(None)
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
                    target = delivery.target
                    if target is not None and not target.active:
                        if delivery.done is not None:  # disabled or deleted meanwhile: dropped
                            delivery.done.set_result(None)
                        self._cond.notify_all()
                        continue
                    url, secret = (target.url, target.secret) if target else (self.url, self.secret)
                    self._in_flight += 1
                try:
                    if target is None:
                        self._attempt(client, delivery, url, secret)
                    else:
                        self._attempt_target(client, delivery, target)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _post(
        self, client: httpx.Client, delivery: Delivery, url: str, secret: str
    ) -> httpx.Response:
        sent = int(time.time())  # real time: receivers check it against their own clock
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(sent),
            "webhook-signature": sign(secret, delivery.webhook_id, sent, delivery.body),
            "user-agent": "whop-sandbox-webhooks/1",
        }
        return client.post(url, content=delivery.body, headers=headers)

    def _retry_later(self, delivery: Delivery) -> None:
        """Requeue after the next delay of the schedule (call under ``_cond``)."""
        if self._closed:
            return
        delay = self.retry_delays[delivery.attempt - 1]
        delivery.due, delivery.seq = time.monotonic() + delay, next(self._seq)
        delivery.attempt += 1
        heapq.heappush(self._queue, delivery)

    def _attempt_target(
        self, client: httpx.Client, delivery: Delivery, target: DeliveryTarget
    ) -> None:
        started = time.monotonic()
        status, error, body = None, None, b""
        try:
            response = self._post(client, delivery, target.url, target.secret)
            status, body = response.status_code, response.content
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        retry = not ok and delivery.retries and delivery.attempt <= len(self.retry_delays)
        result = AttemptResult(status, error, body, time.monotonic() - started, ok, retry)
        target.attempted(delivery, result)
        if delivery.done is not None and not retry:
            delivery.done.set_result(result)
        if retry:
            with self._cond:
                self._retry_later(delivery)

    def _attempt(
        self, client: httpx.Client, delivery: Delivery, url: str | None, secret: str | None
    ) -> None:
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
            try:
                response = self._post(client, delivery, url, secret)
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
            if retry:
                self._retry_later(delivery)


__all__ = ["AttemptResult", "Delivery", "DeliveryTarget", "WebhookDispatcher", "sign"]

"""The Whop API v1 emulator: ``create_whop_app(dataset, api_key=...)`` → ``WhopEmulator``.

``WhopEmulator.app`` is the ASGI app (wrapped in ``SandboxMiddleware`` for stats, latency and
faults); its Python methods mirror the ``/_sandbox`` control endpoints so tests and the demo can
drive changes without HTTP. Serve it with ``BackgroundServer`` or ``serve_whop``.

``emulator.hooks`` holds the webhooks registered through ``/api/v1/webhooks`` (``hooks.py``);
``emulator.clock`` is the emulator's clock (``clock.py``); OAuth access tokens are accepted once an
``OAuthServer`` (``oauth.py``, set up by ``WhopAccounts``) serves this account.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from whop_pipeline.sandbox.common import (
    BackgroundServer,
    FaultPlan,
    RequestStats,
    SandboxMiddleware,
)
from whop_pipeline.sandbox.dataset import WhopDataset, iso
from whop_pipeline.sandbox.whop.clock import SandboxClock
from whop_pipeline.sandbox.whop.control import Change, Controller
from whop_pipeline.sandbox.whop.errors import fault_body
from whop_pipeline.sandbox.whop.hooks import WebhookRegistry
from whop_pipeline.sandbox.whop.routes import build_app
from whop_pipeline.sandbox.whop.store import WhopStore
from whop_pipeline.sandbox.whop.webhooks import (
    DEFAULT_API_VERSION_DATE,
    WebhookDispatcher,
    events_for,
    refund_payload,
)

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.oauth import OAuthServer


class WhopEmulator:
    """One emulated Whop account. Thread-safe: the server thread and callers share one lock."""

    def __init__(
        self,
        dataset: WhopDataset,
        *,
        api_key: str,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        retry_after_seconds: float = 1.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_retry_delays: tuple[float, ...] = (10.0, 20.0, 40.0),
        webhook_api_version_date: str = DEFAULT_API_VERSION_DATE,
        end_cursor_on_last_page: bool = False,
        clock: SandboxClock | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.dataset = dataset
        self.account_id = dataset.account.id
        self.api_key = api_key
        self.api_version_date = webhook_api_version_date
        self.clock = clock or SandboxClock()
        # The OAuth server whose access tokens this account also accepts (set by ``OAuthServer``).
        self.oauth: OAuthServer | None = None
        self.store = WhopStore(dataset, end_cursor_on_last_page=end_cursor_on_last_page)
        self.store.warm()
        self.controller = Controller(self.store)
        self.stats = RequestStats()
        self.faults = FaultPlan(
            latency_ms=latency_ms,
            rate=fault_rate,
            seed=fault_seed,
            retry_after_seconds=retry_after_seconds,
        )
        if webhook_url and not webhook_secret:
            webhook_secret = "ws_" + secrets.token_hex(24)
        self.webhooks = WebhookDispatcher(
            webhook_url, webhook_secret, retry_delays=tuple(webhook_retry_delays), seed=dataset.seed
        )
        self.hooks = WebhookRegistry(
            self.webhooks,
            self.clock,
            self.account_id,
            seed=dataset.seed,
            api_version_date=webhook_api_version_date,
        )
        self.app = SandboxMiddleware(
            build_app(self),
            stats=self.stats,
            faults=self.faults,
            error_body=lambda status: fault_body(status, self.faults.retry_after_seconds),
        )

    @property
    def webhook_secret(self) -> str | None:
        return self.webhooks.secret

    def accepts(self, token: str) -> bool:
        """``token`` is this account's API key, or an unexpired OAuth access token granted for
        this account."""
        if secrets.compare_digest(token.encode(), self.api_key.encode()):
            return True
        return self.oauth is not None and self.oauth.account_of(token) == self.account_id

    # -- control (mirrors /_sandbox) ------------------------------------------------------------

    def update_membership(self, membership_id: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a membership (e.g. ``status="canceled"``); returns it rendered."""
        with self.store.lock:
            change = self.controller.update_membership(membership_id, changes)
            self._emit(change)
        return change.after

    def update_payment(self, payment_id: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a payment (e.g. ``substatus="refunded"``); returns it rendered."""
        with self.store.lock:
            change = self.controller.update_payment(payment_id, changes)
            self._emit(change)
        return change.after

    def update_member(self, member_id: str, **changes: Any) -> dict[str, Any]:
        """The member's user changes their profile: ``name``, ``email`` and/or ``username``
        (``display_name`` follows). Sends ``member.updated`` if a rendered field changed; returns
        the member rendered."""
        with self.store.lock:
            change = self.controller.update_member(member_id, changes)
            self._emit(change)
        return change.after

    def create_membership(self, **fields: Any) -> dict[str, Any]:
        """New membership. ``member_id`` (else a new member from ``email``/``name``/``username``),
        ``plan_id`` or ``product_id`` (else the first variant), ``status`` (default active, or
        completed for a one-time variant), ``cancel_at_period_end``, ``metadata``, ``created_at``.
        A new member sends ``member.created`` before the membership's event."""
        with self.store.lock:
            change = self.controller.create_membership(fields)
            self._emit(change)
        return change.after

    def create_payment(self, **fields: Any) -> dict[str, Any]:
        """New payment for ``membership_id`` (renewal or first charge) or ``member_id`` (a one-time
        purchase without membership). Optional: ``plan_id``/``product_id``, ``amount`` (major units),
        ``status``/``substatus`` (default paid/succeeded), ``billing_reason``, ``created_at``, ..."""
        with self.store.lock:
            change = self.controller.create_payment(fields)
            self._emit(change)
        return change.after

    def reset(self, data: bool = False) -> None:
        """Clear request stats and the delivery logs (registered webhooks stay); with ``data`` also
        restore the initial dataset."""
        self.stats.reset()
        self.webhooks.clear_log()
        self.hooks.clear_logs()
        if data:
            self.store.reset_data()

    def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt so far, oldest first."""
        return self.webhooks.attempts()

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until queued deliveries (and their retries) are done; False on timeout."""
        return self.webhooks.wait_idle(timeout)

    def configure_webhooks(self, url: str | None, secret: str | None = None) -> None:
        """Point deliveries at another receiver (keeps the current secret unless one is given)."""
        self.webhooks.configure(
            url, secret or self.webhooks.secret or "ws_" + secrets.token_hex(24)
        )

    def close(self) -> None:
        """Stop the webhook delivery thread (pending deliveries are dropped)."""
        self.webhooks.close()

    # -- webhooks -------------------------------------------------------------------------------

    def _emit(self, change: Change) -> None:
        """Queue the events of a change and of the member changes it caused; called under the
        store lock so ``data`` is that moment's. Each event goes to the configured target and to
        every registered webhook that wants it."""
        if not self.webhooks.enabled and not self.hooks.any_active():
            return
        for part in change.in_order():
            for event_type, previous in events_for(part):
                self._enqueue(part, event_type, previous)

    def _enqueue(self, change: Change, event_type: str, previous: dict[str, Any] | None) -> None:
        now = self.store.next_updated_at()
        if event_type.startswith("refund."):
            data = refund_payload(self.dataset, change, self.webhooks.new_id("rfnd_"))
        else:
            data = change.after
        envelope: dict[str, Any] = {
            "id": self.webhooks.new_id("msg_"),
            "type": event_type,
            "api_version": "v1",
            "api_version_date": self.api_version_date,
            "account_id": self.account_id,
            "timestamp": iso(now),
            "data": data,
        }
        if previous is not None:
            envelope["previous_attributes"] = previous
        if self.webhooks.enabled:
            self.webhooks.enqueue(envelope)
        self.hooks.fan_out(envelope)


def create_whop_app(
    dataset: WhopDataset,
    *,
    api_key: str,
    latency_ms: float = 0,
    fault_rate: float = 0.0,
    fault_seed: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    webhook_retry_delays: tuple[float, ...] = (10.0, 20.0, 40.0),
    retry_after_seconds: float = 1.0,
    webhook_api_version_date: str = DEFAULT_API_VERSION_DATE,
    end_cursor_on_last_page: bool = False,
    clock: SandboxClock | None = None,
) -> WhopEmulator:
    """Build the emulator for ``dataset``.

    ``fault_rate`` is the share of API calls answered with a 500, a 429 (``Retry-After:
    retry_after_seconds``) or a dropped connection, in equal parts, drawn from ``fault_seed``.
    Webhooks go to ``webhook_url`` signed with ``webhook_secret`` (a random ``ws_`` secret when
    omitted; read it back from ``emulator.webhook_secret``). ``end_cursor_on_last_page=True``
    returns a cursor on the last page too, as plain Relay servers do. ``clock`` is the emulator's
    clock (``SandboxClock``; a new one by default): codes, tokens and webhook failures age by it.
    """
    return WhopEmulator(
        dataset,
        api_key=api_key,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        retry_after_seconds=retry_after_seconds,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_retry_delays=webhook_retry_delays,
        webhook_api_version_date=webhook_api_version_date,
        end_cursor_on_last_page=end_cursor_on_last_page,
        clock=clock,
    )


def serve_whop(
    dataset: WhopDataset, *, api_key: str, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[WhopEmulator, BackgroundServer]:
    """Create the emulator and start it on a background thread; the API base is
    ``f"{server.url}/api/v1"``. Stop with ``server.stop()`` then ``emulator.close()``."""
    emulator = create_whop_app(dataset, api_key=api_key, **options)
    server = BackgroundServer(emulator.app, host=host, port=port).start()
    return emulator, server

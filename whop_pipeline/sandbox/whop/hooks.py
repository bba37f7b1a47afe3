"""Webhooks registered through the API (``POST /api/v1/webhooks``): their delivery log, failure
tracking, auto-disable and replays. The routes are in ``hooks_api.py``, the records in
``hook_records.py``; the facts behind them are in docs/whop-api.md#managing-webhooks.

- Each enabled webhook gets every event of its account (only the listed ``events`` when the list is
  not empty), signed with its own ``ws_`` secret, on the dispatcher's thread and retry schedule.
  The envelope is the one the configured target gets, with the webhook's pinned
  ``api_version_date`` (the emulator's own when unpinned; ``data`` has the one shape the emulator
  serves either way).
- Every attempt, success or failure, is a delivery (``whdel_``): ``event``, ``request_body``,
  ``response_code`` (0 when nothing answered), ``response_body``, ``success``, ``sent_at`` (the
  emulator clock), ``total_time``, ``replayed_from``. Deliveries older than 30 days are dropped.
- ``consecutive_failures`` counts deliveries whose first attempt failed (retries do not add to it);
  ``failing_since`` is the first failed attempt of the current streak; ``last_failure_at`` the last
  delivery that failed after its last retry. A success resets the streak. A failed attempt 3 days or
  more after ``failing_since`` disables the webhook (``enabled: false``, ``disabled_reason:
  "delivery_failures"``, ``disabled_at``); its queued deliveries are dropped, as are a deleted one's.
  Re-enabling it with ``PATCH`` clears the streak.
- A replay (``replay``) re-sends each message of a window once, with no retries, under its original
  ``webhook-id`` unless ``regenerate_ids``; each re-send is a new delivery with ``replayed_from``.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from concurrent.futures import Future
from typing import Any

from whop_pipeline.sandbox.dataset import DAY_MS
from whop_pipeline.sandbox.whop.clock import SandboxClock, parse_time
from whop_pipeline.sandbox.whop.delivery import AttemptResult, Delivery, WebhookDispatcher
from whop_pipeline.sandbox.whop.errors import WhopApiError, bad_param
from whop_pipeline.sandbox.whop.hook_records import (
    DeliveryRecord,
    RegisteredWebhook,
    response_json,
    with_id,
)
from whop_pipeline.sandbox.whop.ids import Ids
from whop_pipeline.sandbox.whop.paging import relay_page

FAILURE_WINDOW_MS = 3 * DAY_MS
RETENTION_MS = 30 * DAY_MS
_VERSION_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(-\d+)?$")
_EVENT = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


def _flag(fields: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = fields.get(name, default)
    if value is not None and not isinstance(value, bool):
        raise bad_param(name, f"`{name}` must be a boolean")
    return value


class WebhookRegistry:
    """The webhooks of one account. Methods raise ``WhopApiError`` for bad input."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        clock: SandboxClock,
        account_id: str,
        *,
        seed: int = 0,
        api_version_date: str,
    ) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.account_id = account_id
        self.api_version_date = api_version_date
        self.lock = threading.RLock()
        self.hooks: dict[str, RegisteredWebhook] = {}
        self._ids = Ids(random.Random(f"hooks:{seed}"))

    # -- CRUD -----------------------------------------------------------------------------------

    def _parse(self, fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "url" in fields or creating:
            url = fields.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise bad_param("url", "`url` must be an http(s) URL", "parameter_missing")
            values["url"] = url
        if fields.get("events") is not None:
            events = fields["events"]
            if not isinstance(events, list) or not all(
                isinstance(e, str) and _EVENT.match(e) for e in events
            ):
                raise bad_param(
                    "events", "`events` must be a list of event names like payment.succeeded"
                )
            values["events"] = list(dict.fromkeys(events))
        if "api_version_date" in fields:
            date = fields["api_version_date"]
            if date is not None and (not isinstance(date, str) or not _VERSION_DATE.match(date)):
                raise bad_param("api_version_date", "`api_version_date` looks like 2026-10-15-1")
            values["api_version_date"] = date
        for name in ("enabled", "child_resource_events"):
            if name in fields:
                values[name] = _flag(fields, name)
        return values

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = self._parse(fields, creating=True)
        resource = fields.get("resource_id") or self.account_id
        if resource != self.account_id:
            raise WhopApiError(
                404,
                f"Resource not found: {resource}",
                code="resource_not_found",
                param="resource_id",
            )
        with self.lock:
            hook = RegisteredWebhook(
                id=self._ids.new("hook_"),
                url=values["url"],
                secret="ws_" + secrets.token_hex(24),
                events=values.get("events", []),
                api_version_date=values.get("api_version_date"),
                resource_id=resource,
                enabled=values.get("enabled") is not False,
                created_at=self.clock.now_ms(),
                child_resource_events=bool(values.get("child_resource_events")),
                registry=self,
            )
            self.hooks[hook.id] = hook
            return hook.render(with_secret=True)

    def _get(self, ident: str) -> RegisteredWebhook:
        hook = self.hooks.get(ident)
        if hook is None:
            raise WhopApiError(
                404, f"Webhook not found: {ident}", code="resource_not_found", param="id"
            )
        return hook

    def get(self, ident: str) -> dict[str, Any]:
        with self.lock:
            return self._get(ident).render()

    def list(self, params: dict[str, str]) -> dict[str, Any]:
        account = params.get("account_id") or params.get("company_id")
        has_failures = params.get("has_failures")
        with self.lock:
            hooks = list(reversed(self.hooks.values()))  # most recently created first
            if (account and account != self.account_id) or params.get("app_id"):
                hooks = []
            if has_failures is not None:
                failing = has_failures.lower() in ("1", "true", "yes")
                hooks = [h for h in hooks if (h.failing_since is not None) == failing]
            rows, page_info = relay_page(hooks, lambda h: h.id, params)
            return {"data": [h.render(list_item=True) for h in rows], "page_info": page_info}

    def update(self, ident: str, fields: dict[str, Any]) -> dict[str, Any]:
        values = self._parse(fields, creating=False)
        with self.lock:
            hook = self._get(ident)
            for name, value in values.items():
                setattr(hook, name, value)
            if values.get("enabled"):  # (re-)enabled: a fresh start
                hook.consecutive_failures, hook.failing_since = 0, None
                hook.disabled_at, hook.disabled_reason = None, None
            return hook.render()

    def delete(self, ident: str) -> dict[str, Any]:
        with self.lock:
            hook = self._get(ident)
            hook.deleted = True
            del self.hooks[ident]
            return {"deleted": True, "id": ident}

    def deliveries(self, ident: str, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            hook = self._get(ident)
            self._prune(hook)
            newest_first = list(reversed(hook.deliveries))
            rows, page_info = relay_page(newest_first, lambda d: d.id, params)
            return {"data": [d.render(hook.resource_id) for d in rows], "page_info": page_info}

    def clear_logs(self) -> None:
        with self.lock:
            for hook in self.hooks.values():
                hook.deliveries.clear()

    # -- delivery -------------------------------------------------------------------------------

    def any_active(self) -> bool:
        return any(h.active for h in list(self.hooks.values()))

    def fan_out(self, envelope: dict[str, Any]) -> None:
        """Queue ``envelope`` for every enabled webhook that wants its event type."""
        with self.lock:
            for hook in self.hooks.values():
                if not hook.active or not hook.wants(envelope["type"]):
                    continue
                date = hook.api_version_date or envelope["api_version_date"]
                self.dispatcher.enqueue({**envelope, "api_version_date": date}, target=hook)

    def attempted(self, hook: RegisteredWebhook, delivery: Delivery, result: AttemptResult) -> None:
        now = self.clock.now_ms()
        with self.lock:
            hook.deliveries.append(
                DeliveryRecord(
                    id=self._ids.new("whdel_"),
                    message_id=delivery.webhook_id,
                    original_id=delivery.meta.get("original_id", delivery.webhook_id),
                    event=delivery.event_type,
                    body=delivery.body,
                    sent_at=now,
                    response_code=result.status or 0,
                    response_body=response_json(result),
                    success=result.delivered,
                    total_time=result.seconds,
                    replayed_from=delivery.meta.get("replayed_from"),
                )
            )
            self._prune(hook)
            if result.delivered:
                hook.consecutive_failures, hook.failing_since = 0, None
                return
            if delivery.attempt == 1:
                hook.consecutive_failures += 1
            if hook.failing_since is None:
                hook.failing_since = now
            if not result.will_retry:
                hook.last_failure_at = now
            if hook.enabled and now - hook.failing_since >= FAILURE_WINDOW_MS:
                hook.enabled = False
                hook.disabled_at, hook.disabled_reason = now, "delivery_failures"

    def _prune(self, hook: RegisteredWebhook) -> None:
        cutoff = self.clock.now_ms() - RETENTION_MS
        if hook.deliveries and hook.deliveries[0].sent_at < cutoff:
            hook.deliveries = [d for d in hook.deliveries if d.sent_at >= cutoff]

    # -- replays --------------------------------------------------------------------------------

    def _replayable(self, ident: str) -> RegisteredWebhook:
        hook = self._get(ident)
        if not hook.active:
            raise WhopApiError(
                400, f"Webhook {ident} is disabled: enable it to replay", code="webhook_disabled"
            )
        return hook

    def _resend(
        self,
        hook: RegisteredWebhook,
        record: DeliveryRecord,
        regenerate: bool,
        done: Future | None = None,
    ) -> None:
        message_id = self.dispatcher.new_id("msg_") if regenerate else record.original_id
        meta = {"replayed_from": record.id, "original_id": record.original_id}
        body = with_id(record.body, message_id)
        self.dispatcher.send(
            message_id, record.event, body, target=hook, retries=False, done=done, meta=meta
        )

    def replay(self, ident: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Re-send the messages whose deliveries fall in ``[sent_after, sent_before]``."""
        if not isinstance(fields.get("sent_after"), str):
            raise bad_param(
                "sent_after", "`sent_after` (ISO 8601) is required", "parameter_missing"
            )
        window = []
        for name in ("sent_after", "sent_before"):
            value = fields.get(name)
            try:
                window.append(None if value is None else parse_time(value))
            except (TypeError, ValueError) as exc:
                raise bad_param(name, f"`{name}` is not an ISO 8601 timestamp") from exc
        events = fields.get("events")
        if events is not None and not (
            isinstance(events, list) and all(isinstance(e, str) for e in events)
        ):
            raise bad_param("events", "`events` must be a list of event names")
        failed_only = _flag(fields, "failed_only", False)
        regenerate = _flag(fields, "regenerate_ids", False)
        with self.lock:
            hook = self._replayable(ident)
            self._prune(hook)
            now = self.clock.now_ms()
            after = max(window[0], now - RETENTION_MS)
            before = now if window[1] is None else window[1]
            latest: dict[str, DeliveryRecord] = {}  # per message, in first-seen order
            for record in hook.deliveries:
                if after <= record.sent_at <= before:
                    latest[record.original_id] = record
            for record in latest.values():
                if (failed_only and record.success) or (events and record.event not in events):
                    continue
                self._resend(hook, record, bool(regenerate))
        return {"queued": True}

    def replay_delivery(self, ident: str, delivery_id: str, regenerate: bool) -> Future:
        """Re-send one delivery's payload; the future resolves with its ``AttemptResult``."""
        with self.lock:
            hook = self._replayable(ident)
            record = next((d for d in hook.deliveries if d.id == delivery_id), None)
            if record is None:
                raise WhopApiError(
                    404,
                    f"Delivery not found: {delivery_id}",
                    code="resource_not_found",
                    param="delivery_id",
                )
            done: Future = Future()
            self._resend(hook, record, regenerate, done)
            return done


__all__ = ["FAILURE_WINDOW_MS", "RETENTION_MS", "RegisteredWebhook", "WebhookRegistry"]

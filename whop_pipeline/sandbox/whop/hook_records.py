"""The records behind registered webhooks (``hooks.py``): a webhook endpoint and its delivery
attempts, rendered the way the SDK's ``Webhook`` / ``WebhookListItem`` / ``WebhookDelivery`` models
describe them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whop_pipeline.sandbox.dataset import iso
from whop_pipeline.sandbox.whop.delivery import AttemptResult, Delivery

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.hooks import WebhookRegistry


@dataclass
class DeliveryRecord:
    id: str
    message_id: str  # the webhook-id it was sent under
    original_id: str  # the message's first webhook-id (replays group on it)
    event: str
    body: bytes
    sent_at: int
    response_code: int
    response_body: dict[str, Any] | None
    success: bool
    total_time: float
    replayed_from: str | None

    def render(self, resource_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "request_body": json.loads(self.body),
            "resource_id": resource_id,
            "response_body": self.response_body,
            "response_code": self.response_code,
            "sent_at": iso(self.sent_at),
            "success": self.success,
            "total_time": round(self.total_time, 6),
            "replayed_from": self.replayed_from,
        }


@dataclass
class RegisteredWebhook:
    """One webhook endpoint; also the dispatcher's ``DeliveryTarget`` for its deliveries."""

    id: str
    url: str
    secret: str
    events: list[str]
    api_version_date: str | None
    resource_id: str
    enabled: bool
    created_at: int
    child_resource_events: bool = False
    consecutive_failures: int = 0
    failing_since: int | None = None
    last_failure_at: int | None = None
    disabled_at: int | None = None
    disabled_reason: str | None = None
    deleted: bool = False
    deliveries: list[DeliveryRecord] = field(default_factory=list)  # oldest first
    registry: WebhookRegistry | None = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.enabled and not self.deleted

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events

    def attempted(self, delivery: Delivery, result: AttemptResult) -> None:
        if self.registry is not None:
            self.registry.attempted(self, delivery, result)

    def render(self, *, with_secret: bool = False, list_item: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "enabled": self.enabled,
            "events": list(self.events),
            "api_version": "v1",
            "api_version_date": self.api_version_date,
            "child_resource_events": self.child_resource_events,
            "resource_id": self.resource_id,
            "created_at": iso(self.created_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso(self.failing_since),
            "last_failure_at": iso(self.last_failure_at),
            "disabled_at": iso(self.disabled_at),
            "disabled_reason": self.disabled_reason,
            "webhook_secret": self.secret if with_secret else None,
        }
        if not list_item:
            body["testable_events"] = list(self.events)
        return body


def response_json(result: AttemptResult) -> dict[str, Any] | None:
    if result.status is None or not result.body:
        return None
    try:
        value = json.loads(result.body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    raw = result.body[:100].decode("utf-8", "replace")
    return {"error": "The response is not a JSON object", "raw_body": raw}


def with_id(body: bytes, message_id: str) -> bytes:
    envelope = json.loads(body)
    if envelope.get("id") == message_id:
        return body
    envelope["id"] = message_id
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = ["DeliveryRecord", "RegisteredWebhook", "response_json", "with_id"]

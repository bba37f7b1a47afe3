"""The v1 webhook the pipeline registers for an OAuth connection: create, read, delete, replay
(docs/whop-api.md#managing-webhooks). The secret is in the create answer only; the caller stores it
encrypted at once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from whop_pipeline.whop.client import WHOP_API_VERSION_DATE, WhopApiError, WhopClient, iso_utc

# What the pipeline applies (inbox/events.py); the legacy names are sent on existing webhooks only.
EVENTS = (
    "membership.activated",
    "membership.deactivated",
    "membership.updated",
    "membership.cancel_at_period_end_changed",
    "payment.created",
    "payment.succeeded",
    "payment.failed",
    "payment.pending",
    "refund.created",
    "refund.updated",
    "dispute.created",
    "dispute.updated",
    "member.created",
    "member.updated",
)


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    enabled: bool
    secret: str | None = field(default=None, repr=False)
    failing_since: str | None = None
    consecutive_failures: int = 0
    disabled_reason: str | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Webhook:
        return cls(
            id=body["id"],
            url=body.get("url", ""),
            enabled=bool(body.get("enabled", True)),
            secret=body.get("webhook_secret"),
            failing_since=body.get("failing_since"),
            consecutive_failures=int(body.get("consecutive_failures") or 0),
            disabled_reason=body.get("disabled_reason"),
        )


def create(client: WhopClient, url: str) -> Webhook:
    body = client.send(
        "POST",
        "webhooks",
        json={
            "url": url,
            "events": list(EVENTS),
            "api_version_date": WHOP_API_VERSION_DATE,
            "resource_id": client.account_id,
            "enabled": True,
        },
    )
    return Webhook.from_api(body)


def get(client: WhopClient, webhook_id: str) -> Webhook | None:
    try:
        return Webhook.from_api(client.send("GET", f"webhooks/{webhook_id}"))
    except WhopApiError as exc:
        if exc.status == 404:
            return None
        raise


def delete(client: WhopClient, webhook_id: str) -> bool:
    """True when deleted, False when Whop no longer knew it."""
    try:
        client.send("DELETE", f"webhooks/{webhook_id}")
    except WhopApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def replay(
    client: WhopClient, webhook_id: str, *, sent_after: dt.datetime, failed_only: bool = True
) -> Any:
    """Ask Whop to send again what it sent after ``sent_after`` (the original webhook-ids are kept,
    so the inbox stores each event once)."""
    return client.send(
        "POST",
        f"webhooks/{webhook_id}/replay",
        json={"sent_after": iso_utc(sent_after), "failed_only": failed_only},
    )

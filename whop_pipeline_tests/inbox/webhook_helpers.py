"""Helpers for tests that put webhook events straight into the inbox (no HTTP), or sign them."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

from whop_pipeline.inbox.events import parse_envelope
from whop_pipeline.inbox.store import store_event

_ids = itertools.count(1)


def envelope(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": f"msg_test_{next(_ids)}",
        "type": event_type,
        "api_version": "v1",
        "api_version_date": "2026-10-15-1",
        "account_id": "biz_test",
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
        **extra,
    }


def put(engine, body: dict[str, Any], connection: str = "default") -> int:
    """Store one envelope; returns its inbox id."""
    import sqlalchemy as sa

    from whop_pipeline.store.tables import webhook_inbox

    with engine.begin() as conn:
        store_event(conn, connection, parse_envelope(body), body)
        return conn.execute(
            sa.select(webhook_inbox.c.id).where(webhook_inbox.c.webhook_id == body["id"])
        ).scalar_one()


def later(timestamp: str, seconds: int) -> str:
    moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")) + dt.timedelta(
        seconds=seconds
    )
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_headers(
    body: bytes, secret: str, webhook_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers signed the way Whop signs: HMAC keyed by the secret's raw bytes."""
    from whop_pipeline.sandbox.whop.webhooks import sign

    sent = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(sent),
        "webhook-signature": sign(secret, webhook_id, sent, body),
    }

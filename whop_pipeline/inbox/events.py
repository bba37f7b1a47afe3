"""Whop webhook envelopes (docs/whop-api.md#envelope) turned into inbox events. Pure: no I/O, no
clock.

An envelope is ``{"id", "type", "api_version", "api_version_date", "account_id", "timestamp",
"data": {...the REST object...}, "previous_attributes"?}``. The inbox keeps the whole envelope as
received and, next to it, the few fields the processor orders and routes by: the object it is
about, and how new that copy of the object is.

Legacy event names still seen on existing webhooks are mapped to their v1 names
(``membership.went_valid`` → ``membership.activated``, ``membership.went_invalid`` →
``membership.deactivated``); the original name stays in the stored payload's ``type`` and in
``InboxEvent.original_type``. Unknown event types are accepted: they are stored, and the processor
ignores what it does not know.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

LEGACY_EVENT_TYPES: dict[str, str] = {
    "membership.went_valid": "membership.activated",
    "membership.went_invalid": "membership.deactivated",
}

# Limits of the webhook_inbox columns: a longer value is a malformed envelope (answered 400), not a
# database error (answered 503, which would make Whop retry a delivery that can never be stored).
MAX_WEBHOOK_ID = 128
MAX_EVENT_TYPE = 128
MAX_OBJECT_TYPE = 32
MAX_OBJECT_ID = 64

# "<object>.<action>", optionally with more dotted parts; lower-case letters, digits, underscores.
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class MalformedEvent(ValueError):
    """The body is not a usable webhook envelope; the message names the field at fault."""


@dataclass(frozen=True)
class InboxEvent:
    """What the inbox indexes of one delivery (the envelope itself is stored alongside)."""

    webhook_id: str
    event_type: str  # normalized: legacy names mapped to their v1 names
    original_type: str  # exactly as delivered
    object_type: str  # "membership", "payment", "member", "refund", "product", "plan", ...
    object_id: str
    # The object's own ``updated_at``; for objects without one (members, legacy refunds) the
    # envelope ``timestamp``; ``None`` when the envelope carries neither.
    object_updated_at: dt.datetime | None
    account_id: str | None
    timestamp: dt.datetime | None

    @property
    def is_legacy(self) -> bool:
        return self.event_type != self.original_type


def normalize_event_type(event_type: str) -> str:
    """Lower-cased, with legacy names mapped to their v1 replacements."""
    lowered = event_type.strip().lower()
    return LEGACY_EVENT_TYPES.get(lowered, lowered)


def object_type_of(event_type: str) -> str:
    """The object an event is about: the part before the first dot (``payment.succeeded`` →
    ``payment``, ``dispute_alert.created`` → ``dispute_alert``)."""
    return event_type.split(".", 1)[0]


def parse_datetime(value: Any, field: str) -> dt.datetime:
    """An aware UTC datetime from ISO-8601 text (``Z`` or an offset; naive means UTC) or from Unix
    seconds, as legacy payloads send. ``MalformedEvent`` naming ``field`` otherwise."""
    if isinstance(value, bool):
        raise MalformedEvent(f"{field} is not a timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise MalformedEvent(f"{field} is not a finite timestamp")
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MalformedEvent(f"{field} is out of range") from exc
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{field} is not a timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise MalformedEvent(f"{field} is not an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _required_string(container: dict[str, Any], key: str, field: str, limit: int) -> str:
    if key not in container or container[key] is None:
        raise MalformedEvent(f"missing {field}")
    value = container[key]
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{field} must be a non-empty string")
    if len(value) > limit:
        raise MalformedEvent(f"{field} is longer than {limit} characters")
    return value


def parse_envelope(body: Any) -> InboxEvent:
    """Validate one envelope and extract its inbox fields; ``MalformedEvent`` if it is not one."""
    if not isinstance(body, dict):
        raise MalformedEvent(f"the body must be a JSON object, not {_json_kind(body)}")
    webhook_id = _required_string(body, "id", "id", MAX_WEBHOOK_ID)
    original_type = _required_string(body, "type", "type", MAX_EVENT_TYPE)
    event_type = normalize_event_type(original_type)
    if not _EVENT_TYPE.match(event_type):
        raise MalformedEvent(f"type {original_type!r} is not an '<object>.<action>' event type")
    object_type = object_type_of(event_type)
    if len(object_type) > MAX_OBJECT_TYPE:
        raise MalformedEvent(f"type names an object longer than {MAX_OBJECT_TYPE} characters")

    if "data" not in body or body["data"] is None:
        raise MalformedEvent("missing data")
    data = body["data"]
    if not isinstance(data, dict):
        raise MalformedEvent(f"data must be an object, not {_json_kind(data)}")
    object_id = _required_string(data, "id", "data.id", MAX_OBJECT_ID)

    timestamp = None
    if body.get("timestamp") is not None:
        timestamp = parse_datetime(body["timestamp"], "timestamp")
    account_id = body.get("account_id")
    if account_id is not None and not isinstance(account_id, str):
        raise MalformedEvent("account_id must be a string")

    if data.get("updated_at") is not None:
        object_updated_at: dt.datetime | None = parse_datetime(
            data["updated_at"], "data.updated_at"
        )
    else:
        object_updated_at = timestamp

    return InboxEvent(
        webhook_id=webhook_id,
        event_type=event_type,
        original_type=original_type,
        object_type=object_type,
        object_id=object_id,
        object_updated_at=object_updated_at,
        account_id=account_id,
        timestamp=timestamp,
    )


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Postgres would refuse them later, long after the 2xx.
    raise MalformedEvent(f"the body contains {name}, which is not JSON")


def decode_envelope(raw: bytes) -> tuple[dict[str, Any], InboxEvent]:
    """Parse raw body bytes (UTF-8 JSON) into ``(envelope, event)``; ``MalformedEvent`` otherwise."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except MalformedEvent:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent("the body is not valid UTF-8 JSON") from exc
    except RecursionError as exc:
        raise MalformedEvent("the body is nested too deeply") from exc
    return body, parse_envelope(body)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__

"""Envelope parsing: inbox fields, legacy event names, and errors that name the field at fault."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest

from whop_pipeline.inbox.events import (
    MalformedEvent,
    decode_envelope,
    normalize_event_type,
    object_type_of,
    parse_datetime,
    parse_envelope,
)

pytestmark = pytest.mark.unit

# A v1 membership.updated envelope (docs/whop-api.md#envelope), trimmed to the fields the inbox
# reads plus a few it keeps untouched.
MEMBERSHIP_UPDATED: dict[str, Any] = {
    "id": "msg_2nQk8ZrT5vLw1XyBcD",
    "type": "membership.updated",
    "api_version": "v1",
    "api_version_date": "2026-10-15-1",
    "account_id": "biz_Q7yH3nWc9pLs2d",
    "timestamp": "2026-10-03T14:22:42.118Z",
    "previous_attributes": {"current_period_start": "2026-09-03T14:22:10.000Z"},
    "data": {
        "id": "mem_8Kq2LmZxR4vTnB",
        "status": "active",
        "created_at": "2026-09-03T14:22:10.000Z",
        "updated_at": "2026-10-03T14:22:41.512Z",
        "member_id": "mber_H6nLs3Kd0WqPaZ",
    },
}
SENT_AT = dt.datetime(2026, 10, 3, 14, 22, 42, 118000, tzinfo=dt.UTC)
UPDATED_AT = dt.datetime(2026, 10, 3, 14, 22, 41, 512000, tzinfo=dt.UTC)


def envelope(event_type: str, data: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    body = copy.deepcopy(MEMBERSHIP_UPDATED)
    body["type"] = event_type
    if data is not None:
        body["data"] = data
    body.update(top)
    return body


def test_the_reference_envelope():
    event = parse_envelope(MEMBERSHIP_UPDATED)
    assert event.webhook_id == "msg_2nQk8ZrT5vLw1XyBcD"
    assert event.event_type == event.original_type == "membership.updated"
    assert not event.is_legacy
    assert (event.object_type, event.object_id) == ("membership", "mem_8Kq2LmZxR4vTnB")
    assert event.object_updated_at == UPDATED_AT
    assert event.object_updated_at.tzinfo is dt.UTC
    assert event.timestamp == SENT_AT
    assert event.account_id == "biz_Q7yH3nWc9pLs2d"


@pytest.mark.parametrize(
    ("event_type", "object_type"),
    [
        ("membership.activated", "membership"),
        ("membership.cancel_at_period_end_changed", "membership"),
        ("payment.succeeded", "payment"),
        ("payment.requires_action", "payment"),
        ("member.created", "member"),
        ("refund.created", "refund"),
        ("product.unpublished", "product"),
        ("plan.deleted", "plan"),
        ("dispute.updated", "dispute"),
        ("dispute_alert.created", "dispute_alert"),
        ("invoice.past_due", "invoice"),
        ("app_membership.went_valid", "app_membership"),  # unknown to the processor: still stored
    ],
)
def test_object_type_comes_from_the_event_type(event_type: str, object_type: str):
    event = parse_envelope(envelope(event_type))
    assert event.object_type == object_type == object_type_of(event.event_type)
    assert event.event_type == event_type


@pytest.mark.parametrize(
    ("legacy", "current"),
    [
        ("membership.went_valid", "membership.activated"),
        ("membership.went_invalid", "membership.deactivated"),
        ("Membership.Went_Valid", "membership.activated"),
    ],
)
def test_legacy_names_are_mapped_and_the_original_kept(legacy: str, current: str):
    body = envelope(legacy)
    event = parse_envelope(body)
    assert event.event_type == current == normalize_event_type(legacy)
    assert event.original_type == legacy and event.is_legacy
    assert event.object_type == "membership"
    assert body["type"] == legacy  # the stored payload keeps the delivered name


def test_objects_without_updated_at_use_the_envelope_timestamp():
    member = {"id": "mber_H6nLs3Kd0WqPaZ", "email": "jane.doe@example.com"}
    refund = {"id": "rfnd_1", "amount": 49.0, "created_at": "2026-10-03T14:00:00.000Z"}
    for event_type, data in (("member.updated", member), ("refund.created", refund)):
        event = parse_envelope(envelope(event_type, data))
        assert event.object_updated_at == SENT_AT


def test_no_updated_at_and_no_timestamp_leaves_it_unknown():
    body = envelope("member.created", {"id": "mber_1"})
    del body["timestamp"]
    event = parse_envelope(body)
    assert event.object_updated_at is None and event.timestamp is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-03T14:22:41.512Z", UPDATED_AT),
        ("2026-10-03T16:22:41.512+02:00", UPDATED_AT),
        ("2026-10-03T14:22:41.512", UPDATED_AT),  # naive: UTC
        (UPDATED_AT.timestamp(), UPDATED_AT),  # Unix seconds, as legacy payloads send
        (int(UPDATED_AT.timestamp()), UPDATED_AT.replace(microsecond=0)),
    ],
)
def test_datetimes_are_aware_utc(value: Any, expected: dt.datetime):
    parsed = parse_datetime(value, "data.updated_at")
    assert parsed == expected and parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object, not an array"),
        ("msg_1", "must be a JSON object, not a string"),
        (None, "must be a JSON object, not null"),
        ({k: v for k, v in MEMBERSHIP_UPDATED.items() if k != "id"}, "missing id"),
        ({**MEMBERSHIP_UPDATED, "id": ""}, "id must be a non-empty string"),
        ({**MEMBERSHIP_UPDATED, "id": 42}, "id must be a non-empty string"),
        ({**MEMBERSHIP_UPDATED, "id": "m" * 129}, "id is longer than 128"),
        ({k: v for k, v in MEMBERSHIP_UPDATED.items() if k != "type"}, "missing type"),
        ({**MEMBERSHIP_UPDATED, "type": "updated"}, "is not an '<object>.<action>' event type"),
        ({**MEMBERSHIP_UPDATED, "type": "payment succeeded"}, "event type"),
        ({k: v for k, v in MEMBERSHIP_UPDATED.items() if k != "data"}, "missing data"),
        ({**MEMBERSHIP_UPDATED, "data": None}, "missing data"),
        ({**MEMBERSHIP_UPDATED, "data": ["mem_1"]}, "data must be an object, not an array"),
        ({**MEMBERSHIP_UPDATED, "data": {"status": "active"}}, "missing data.id"),
        ({**MEMBERSHIP_UPDATED, "data": {"id": 7}}, "data.id must be a non-empty string"),
        ({**MEMBERSHIP_UPDATED, "data": {"id": "x" * 65}}, "data.id is longer than 64"),
        (
            {**MEMBERSHIP_UPDATED, "data": {"id": "mem_1", "updated_at": "yesterday"}},
            "data.updated_at is not an ISO-8601 timestamp",
        ),
        ({**MEMBERSHIP_UPDATED, "timestamp": True}, "timestamp is not a timestamp"),
        ({**MEMBERSHIP_UPDATED, "account_id": 5}, "account_id must be a string"),
    ],
)
def test_malformed_envelopes_name_the_field(body: Any, message: str):
    with pytest.raises(MalformedEvent, match=re.escape(message)):
        parse_envelope(body)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b'{"id": "\xff"}', "not valid UTF-8 JSON"),
        (b'{"id": "msg_1", "type": "payment.created", "data": {"id": NaN}}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[1, 2]", "not an array"),
    ],
)
def test_decode_envelope_rejects_what_is_not_a_json_envelope(raw: bytes, message: str):
    with pytest.raises(MalformedEvent, match=message):
        decode_envelope(raw)


def test_decode_envelope_returns_the_body_untouched():
    raw = json.dumps(envelope("membership.went_invalid")).encode()
    body, event = decode_envelope(raw)
    assert body == json.loads(raw)
    assert body["type"] == "membership.went_invalid"
    assert event.event_type == "membership.deactivated"


def test_unknown_top_level_fields_are_kept_and_ignored():
    body = envelope("payment.succeeded", {"id": "pay_1", "updated_at": "2026-10-03T14:22:41.512Z"})
    body["something_new"] = {"nested": [1, 2]}
    event = parse_envelope(body)
    assert (event.object_type, event.object_id) == ("payment", "pay_1")

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

Signing and delivery (one background thread, retries, registered webhooks' targets) live in
``delivery.py``; ``sign`` and ``WebhookDispatcher`` are re-exported here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from whop_pipeline.sandbox.dataset import VALID_STATUSES, WhopDataset, iso
from whop_pipeline.sandbox.whop.control import Change
from whop_pipeline.sandbox.whop.delivery import WebhookDispatcher, sign
from whop_pipeline.sandbox.whop.fields import REFUNDED
from whop_pipeline.sandbox.whop.money import major_float, to_usd_cents

DEFAULT_API_VERSION_DATE = "2026-10-15-1"


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


__all__ = [
    "DEFAULT_API_VERSION_DATE",
    "WebhookDispatcher",
    "events_for",
    "payment_status_event",
    "previous_attributes",
    "refund_payload",
    "sign",
]

"""Pure mapping rules from Whop objects to Twenty records (README.md#the-mapping). No I/O, no
pandas: each function takes plain values or raw Whop JSON and returns plain values, so each rule is
tested alone.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

# Deterministic record ids: uuid5 under one project namespace, so re-running a sync (or a crash and a
# re-run) addresses the same Twenty records instead of creating new ones.
ID_NAMESPACE = uuid.UUID("7d0b7a38-3c55-4a9a-9f1e-5b8f1f0c2a61")

# Membership status → opportunity stage. `canceling` and cancel-at-period-end are NEGOTIATION.
ACTIVE_STATUSES = frozenset({"active", "trialing", "past_due", "completed"})
LOST_STATUSES = frozenset({"canceled", "expired", "unresolved"})
STAGE_CUSTOMER = "CUSTOMER"
STAGE_NEGOTIATION = "NEGOTIATION"
STAGE_LOST = "LOST"
STAGE_NEW = "NEW"
EXTRA_STAGES = (
    STAGE_NEGOTIATION,
    STAGE_LOST,
)  # not in Twenty's defaults: the schema step adds them


def membership_stage(status: str | None, cancel_at_period_end: bool | None) -> str:
    """The opportunity stage for a membership. Unknown statuses (Whop adds values) count as NEW, so a
    new status never fails a sync; it shows as a fresh opportunity until this table learns it."""
    if status == "canceling":
        return STAGE_NEGOTIATION
    if status in ACTIVE_STATUSES:
        return STAGE_NEGOTIATION if cancel_at_period_end else STAGE_CUSTOMER
    if status in LOST_STATUSES:
        return STAGE_LOST
    return STAGE_NEW


def split_name(full_name: str | None) -> tuple[str, str]:
    """First whitespace splits first from last name; a one-word name has an empty last name."""
    if not full_name or not full_name.strip():
        return "", ""
    parts = full_name.strip().split(maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def normalize_email(email: str | None) -> str | None:
    """Lower-cased, trimmed; empty means none. Twenty lower-cases stored emails; so must we."""
    if email is None:
        return None
    cleaned = email.strip().lower()
    return cleaned or None


def amount_micros(amount: str | None) -> int | None:
    """A Money decimal string ("49.00", JPY "4900") as micros: exact, never through float."""
    if amount is None:
        return None
    try:
        return int((Decimal(str(amount)) * 1_000_000).to_integral_value())
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None


def person_key(user_id: str | None, member_id: str | None) -> str | None:
    """The Person's key: the Whop user id, or for a business buyer with no user the member id."""
    return user_id or member_id


def member_person_key(member: dict[str, Any]) -> str:
    user = member.get("user") or {}
    return person_key(user.get("id"), member["id"])  # type: ignore[return-value]


def person_name(member: dict[str, Any]) -> str:
    """The user's name, else the member's display name, else the username."""
    user = member.get("user") or {}
    for candidate in (user.get("name"), member.get("display_name"), user.get("username")):
        if candidate and candidate.strip():
            return candidate.strip()
    return ""


def profile_url(username: str | None) -> str | None:
    return f"https://whop.com/@{username}" if username else None


def record_id(connection: str, *parts: str) -> str:
    """A deterministic UUID for a Twenty record owned by this pipeline."""
    return str(uuid.uuid5(ID_NAMESPACE, ":".join((connection, *parts))))


def opportunity_id(connection: str, membership_id: str) -> str:
    return record_id(connection, "membership", membership_id)


def note_id(connection: str, payment_id: str) -> str:
    return record_id(connection, "payment", payment_id)


def note_target_id(connection: str, payment_id: str, target_kind: str) -> str:
    return record_id(connection, "payment", payment_id, "target", target_kind)


def membership_amount(membership: dict[str, Any]) -> tuple[int | None, str | None]:
    """(amountMicros, currencyCode): the renewal price when present, else the initial price."""
    money = membership.get("renewal_price") or membership.get("initial_price")
    if not money:
        return None, None
    currency = money.get("currency")
    return amount_micros(money.get("amount")), currency.upper() if currency else None


def opportunity_name(product_title: str, name: str) -> str:
    return f"{product_title} · {name}" if name else product_title


def payment_amount(payment: dict[str, Any]) -> tuple[str, str]:
    """The payment's total as Whop formats it (decimal string) and its upper-case currency."""
    money = payment.get("total") or payment.get("subtotal") or {}
    currency = (money.get("currency") or payment.get("currency") or "").upper()
    return money.get("amount") or "0", currency


def note_title(substatus: str, amount: str, currency: str, product_title: str) -> str:
    return f"Payment {substatus} · {amount} {currency} · {product_title}"


def _timestamp(value: str | None) -> str:
    if not value:
        return "unknown"
    return value.replace("T", " ")[:16] + " UTC"


def note_markdown(payment: dict[str, Any], product_title: str) -> str:
    """The Note body: what a person reading the timeline needs, one fact per line."""
    amount, currency = payment_amount(payment)
    substatus = payment.get("substatus") or payment.get("status") or "unknown"
    lines = [
        f"**Payment {substatus}** · {amount} {currency}",
        "",
        f"- Date: {_timestamp(payment.get('paid_at') or payment.get('created_at'))}",
        f"- Amount: {amount} {currency}",
        f"- Status: {payment.get('status')} ({substatus})",
        f"- Billing reason: {payment.get('billing_reason') or 'none'}",
        f"- Product: {product_title}",
        f"- Payment id: {payment['id']}",
    ]
    refunded = payment.get("refunded_amount")
    if refunded and refunded.get("amount") not in (None, "0", "0.00"):
        lines.append(f"- Refunded: {refunded['amount']} {refunded.get('currency', '').upper()}")
    if substatus == "failed" or payment.get("failure_message"):
        lines.append(f"- Failure reason: {payment.get('failure_message') or 'not given'}")
    if payment.get("membership_id"):
        lines.append(f"- Membership: {payment['membership_id']}")
    return "\n".join(lines)

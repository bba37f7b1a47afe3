"""What the ``/_sandbox`` write endpoints accept: field names, their types, the enum values, and
the default pairing of payment ``status`` and ``substatus``. Validation converts every value
(timestamps to epoch ms, amounts to ``Decimal``) before anything changes."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from whop_pipeline.sandbox.dataset import MEMBERSHIP_STATUSES
from whop_pipeline.sandbox.whop.errors import bad_param
from whop_pipeline.sandbox.whop.queries import BILLING_REASONS, parse_timestamp_us

PAYMENT_STATUSES = (
    "draft",
    "open",
    "authorized",
    "paid",
    "pending",
    "uncollectible",
    "unresolved",
    "void",
)
SUBSTATUS_OF = {
    "draft": "drafted", "open": "failed", "authorized": "requires_capture", "paid": "succeeded",
    "pending": "pending", "uncollectible": "failed", "unresolved": "unresolved", "void": "canceled",
}  # fmt: skip
STATUS_OF = {
    "succeeded": "paid", "requires_capture": "authorized", "pending": "pending", "failed": "open",
    "blocked": "void", "past_due": "open", "canceled": "void", "price_too_low": "void",
    "uncollectible": "uncollectible", "refunded": "paid", "auto_refunded": "paid",
    "partially_refunded": "paid", "drafted": "draft", "incomplete": "open", "unresolved": "unresolved",
}  # fmt: skip
REFUNDED = ("refunded", "partially_refunded", "auto_refunded")
SUBSTATUSES = (
    *STATUS_OF,
    *(f"dispute_{s}" for s in ("warning", "needs_response", "warning_needs_response", "under_review",
                               "warning_under_review", "won", "warning_closed", "lost", "closed")),
    *(f"resolution_{s}" for s in ("needs_response", "under_review", "won", "lost")),
    "open_dispute", "open_resolution",
)  # fmt: skip
CANCEL_OPTIONS = (
    "too_expensive", "switching", "missing_features", "technical_issues",
    "bad_experience", "unused", "other", "testing",
)  # fmt: skip


def parse_fields(fields: dict[str, Any], spec: dict[str, str]) -> dict[str, Any]:
    """Validate every field against ``spec`` (name → type) and convert it."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        kind = spec.get(name)
        if kind is None:
            raise bad_param(name, f"Unknown field `{name}`; accepted: {', '.join(sorted(spec))}")
        out[name] = _convert(name, value, kind)
    return out


def _convert(name: str, value: Any, kind: str) -> Any:
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str) and value:
        return value
    if kind == "email" and isinstance(value, str) and _looks_like_email(value):
        return value
    if kind == "ts" and isinstance(value, str):
        return parse_timestamp_us(value, name) // 1000
    if kind == "dict" and isinstance(value, dict):
        return dict(value)
    if kind == "money" and isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            amount = Decimal(-1)
        if amount.is_finite() and amount >= 0:
            return amount
    choices = {
        "membership_status": MEMBERSHIP_STATUSES,
        "payment_status": PAYMENT_STATUSES,
        "substatus": SUBSTATUSES,
        "billing_reason": BILLING_REASONS,
        "cancel_option": CANCEL_OPTIONS,
    }.get(kind)
    if choices is not None and value in choices:
        return value
    expected = (
        f"one of {', '.join(choices)}"
        if choices
        else {"ts": "an ISO 8601 timestamp", "email": "an email address"}.get(kind, kind)
    )
    raise bad_param(name, f"`{name}` must be {expected}")


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain.strip(".")) and not any(c.isspace() for c in value)


MEMBERSHIP_UPDATE = {
    "status": "membership_status",
    "cancel_at_period_end": "bool",
    "canceled_at": "ts?",
    "cancel_option": "cancel_option?",
    "cancellation_reason": "str?",
    "current_period_start": "ts?",
    "current_period_end": "ts?",
    "expires_at": "ts?",
    "metadata": "dict",
    "plan_id": "str",
}
MEMBERSHIP_CREATE = {
    **{k: MEMBERSHIP_UPDATE[k] for k in ("status", "cancel_at_period_end", "metadata", "plan_id")},
    "member_id": "str",
    "product_id": "str",
    "created_at": "ts",
    "email": "str?",
    "name": "str?",
    "username": "str",
}
MEMBER_UPDATE = {
    "name": "str?",
    "email": "email?",
    "username": "str",
}
PAYMENT_UPDATE = {
    "status": "payment_status",
    "substatus": "substatus",
    "billing_reason": "billing_reason",
    "refunded_amount": "money?",
    "refunded_at": "ts?",
    "paid_at": "ts?",
    "failure_message": "str?",
    "decline_code": "str?",
    "metadata": "dict?",
}
PAYMENT_CREATE = {
    **PAYMENT_UPDATE,
    "membership_id": "str",
    "member_id": "str",
    "plan_id": "str",
    "product_id": "str",
    "amount": "money",
    "created_at": "ts",
}

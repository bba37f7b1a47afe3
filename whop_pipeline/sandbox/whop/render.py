"""Compact records → the exact JSON shapes of Whop API v1 (``Api-Version-Date: 2026-10-15-1``).

Every field the whop-sdk 2.6.0 model declares is present (nullable and permission-gated ones as
``null``) and no other key is. Money is ``{amount, currency, decimals, display_decimals}`` with a
decimal string in major units; variant prices are floats. Retrieve-only fields (``client_secret``,
``recovery_url``, ``settlement_time_at`` on payments; ``variants`` and the seller settings on products;
the tax fields on variants) are filled only when ``detail`` is true, as the real API does.
"""

from __future__ import annotations

import zlib
from typing import Any

from whop_pipeline.sandbox.dataset import (
    DAY_MS,
    Member,
    Membership,
    Payment,
    WhopDataset,
    iso,
)
from whop_pipeline.sandbox.whop.catalog import CURRENCIES
from whop_pipeline.sandbox.whop.money import money, to_usd_cents
from whop_pipeline.sandbox.whop.render_catalog import (
    Counts,
    member_counts,
    render_plan,
    render_product,
)

AVATAR_URL = "https://assets.whop.com/avatars/placeholder.png"
_ICON_FILES = {
    "png_1x": "https://assets.whop.com/payment-icons/card@1x.png",
    "png_2x": "https://assets.whop.com/payment-icons/card@2x.png",
    "png_4x": "https://assets.whop.com/payment-icons/card@4x.png",
    "svg": "https://assets.whop.com/payment-icons/card.svg",
}
CARD_ICONS = {
    "card": {"dark": _ICON_FILES, "light": _ICON_FILES},
    "square": {"dark": _ICON_FILES, "light": _ICON_FILES},
}
CARD_BRANDS = ("visa", "mastercard", "amex")


def user_summary(member: Member) -> dict[str, Any] | None:
    if member.user_id is None:
        return None
    return {
        "id": member.user_id,
        "username": member.username,
        "name": member.name,
        "profile_picture": {"url": AVATAR_URL},
    }


def render_member(ds: WhopDataset, m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "account_id": ds.account.id,
        "user": user_summary(m),
        "email": m.email,
        "display_name": m.display_name,
        "phone_number": None,
        "access_level": m.access_level,
        "status": m.status,
        "created_at": iso(m.created_at),
        "joined_at": iso(m.created_at),
        "last_accessed_at": iso(m.last_accessed_at),
        "most_recent_action": m.most_recent_action,
        "most_recent_action_at": iso(m.most_recent_action_at),
        "token_balance": 0.0,
        "usd_total_spent": money(m.usd_spent_cents, "usd"),
    }


def render_membership(ds: WhopDataset, ms: Membership) -> dict[str, Any]:
    account, product, plan = (
        ds.account,
        ds.get("products", ms.product_id),
        ds.get("plans", ms.plan_id),
    )
    renews = plan.plan_type == "renewal"
    return {
        "id": ms.id,
        "status": ms.status,
        "created_at": iso(ms.created_at),
        "updated_at": iso(ms.updated_at),
        "account": {
            "id": account.id,
            "route": account.route,
            "title": account.title,
            "logo_url": None,
        },
        "user_id": ms.user_id,
        "member_id": ms.member_id,
        "member": None,  # the caller's own member row: null on seller-side reads
        "product_id": ms.product_id,
        "product": {"id": product.id, "title": product.title, "logo_url": None},
        "plan_id": ms.plan_id,
        "promo_code_id": None,
        "initial_price": money(plan.initial_minor, plan.currency),
        "renewal_price": money(plan.renewal_minor, plan.currency) if renews else None,
        "billing_period_days": plan.billing_period_days,
        "collection_method": "charge_automatically" if renews else None,
        "cancel_at_period_end": ms.cancel_at_period_end,
        "canceled_at": iso(ms.canceled_at),
        "cancel_option": ms.cancel_option,
        "cancellation_reason": ms.cancellation_reason,
        "feedback_option": None,
        "current_period_start": iso(ms.current_period_start),
        "current_period_end": iso(ms.current_period_end),
        "expires_at": iso(ms.expires_at),
        "most_recent_action": ms.most_recent_action,
        "most_recent_action_at": iso(ms.most_recent_action_at),
        "split_pay_current_payments": None,
        "split_pay_required_payments": None,
        "license_key": None,
        "manage_url": None,
        "phone_number": None,
        "affiliate": None,
        "metadata": dict(ms.metadata or {}),
    }


def _card(member_id: str) -> tuple[str, str]:
    digest = zlib.crc32(member_id.encode())
    return CARD_BRANDS[digest % len(CARD_BRANDS)], f"{digest % 10_000:04d}"


def render_payment(ds: WhopDataset, p: Payment, *, detail: bool = False) -> dict[str, Any]:
    member, product, plan = (
        ds.get("members", p.member_id),
        ds.get("products", p.product_id),
        ds.get("plans", p.plan_id),
    )
    cur, total, refunded = p.currency, p.subtotal_minor, p.refunded_minor or 0
    decimals = CURRENCIES[cur].decimals
    fee = (total * 29 + 999) // 1000 + 30 * 10**decimals // 100
    kept = max(0, total - refunded - fee) if p.status == "paid" else 0
    failed = p.substatus == "failed"
    brand, last4 = _card(p.member_id)
    settles = p.paid_at + 2 * DAY_MS if p.paid_at is not None else None
    secret = f"{p.id}_secret_{zlib.crc32(p.id.encode()):08x}"
    return {
        "id": p.id,
        "status": p.status,
        "substatus": p.substatus,
        "billing_reason": p.billing_reason,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "paid_at": iso(p.paid_at),
        "refunded_at": iso(p.refunded_at),
        "last_payment_attempt_at": iso(p.paid_at or p.created_at),
        "next_payment_attempt_at": iso(p.created_at + 3 * DAY_MS)
        if failed and p.status == "open"
        else None,
        "dispute_alerted_at": None,
        "settlement_time_at": iso(settles) if detail else None,
        "account_id": ds.account.id,
        "membership_id": p.membership_id,
        "member_id": p.member_id,
        "product_id": p.product_id,
        "plan_id": p.plan_id,
        "promo_code_id": None,
        "checkout_configuration_id": None,
        "payment_method_id": "payt_" + p.member_id[5:],
        "shipment_id": None,
        "quote_id": None,
        "user": user_summary(member),
        "customer_email": member.email,
        "customer_phone": None,
        "ip_address": None,
        "billing_address": {
            "name": member.display_name,
            "line1": None,
            "line2": None,
            "city": None,
            "state": None,
            "postal_code": None,
            "country": CURRENCIES[cur].country,
        },
        "shipping_address": None,
        "currency": cur,
        "subtotal": money(total, cur),
        "total": money(total, cur),
        "usd_total": money(to_usd_cents(total, cur), "usd"),
        "presentment_total": money(total, cur),
        "tax_amount": None,
        "tax_behavior": None,
        "tax_refunded_amount": money(0, cur),
        "refunded_amount": money(refunded, cur) if p.refunded_minor is not None else None,
        "amount_after_fees": money(kept, cur),
        "refundable": p.status == "paid" and refunded < total,
        "retryable": failed and p.status == "open",
        "voidable": p.status == "open",
        "auto_refunded": p.substatus == "auto_refunded",
        "three_ds_verified": False,
        "payments_failed": 1.0 if failed else 0.0,
        "failure_message": p.failure_message,
        "decline_code": p.decline_code,
        "risk_score": float(p.risk_score),
        "risk_signals": None,
        "payment_method_type": "card",
        "payment_instrument": {
            "display_name": f"{brand.title()} •••• {last4}",
            "payment_method_type": "card",
            "icons": CARD_ICONS,
            "card": {
                "brand": brand,
                "last4": last4,
                "exp_month": 12.0,
                "exp_year": 2029.0,
                "issuer_identification_number": None,
            },
            "installment_count": None,
        },
        "line_items": [
            {
                "id": None,
                "label": product.title,
                "plan_id": plan.id,
                "plan_title": plan.title,
                "product_id": product.id,
                "product_title": product.title,
                "quantity": 1.0,
                "sku": None,
                "subtotal": money(total, cur),
            }
        ],
        "holds": [],
        "payment_rule_matches": [],
        "verification_checks": None,
        "metadata": dict(p.metadata) if p.metadata is not None else None,
        "needs_tracking": False,
        "financing_installments_count": None,
        "client_secret": secret if detail and p.status in ("open", "pending") else None,
        "recovery_url": f"https://whop.com/checkout/recover/{p.id}" if detail and failed else None,
    }


def render(
    ds: WhopDataset, kind: str, record: Any, *, detail: bool = False, counts: Counts | None = None
) -> dict[str, Any]:
    """Render any record; ``kind`` is one of members, memberships, payments, products, plans, variants."""
    if kind == "members":
        return render_member(ds, record)
    if kind == "memberships":
        return render_membership(ds, record)
    if kind == "payments":
        return render_payment(ds, record, detail=detail)
    if kind == "products":
        return render_product(ds, record, detail=detail, counts=counts)
    if kind in ("plans", "variants"):
        return render_plan(ds, record, detail=detail, counts=counts)
    raise KeyError(f"unknown kind {kind!r}")


__all__ = [
    "Counts",
    "member_counts",
    "render",
    "render_member",
    "render_membership",
    "render_payment",
]

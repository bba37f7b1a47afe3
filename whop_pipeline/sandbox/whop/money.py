"""Money as Whop renders it: ``{amount, currency, decimals, display_decimals}`` with ``amount`` a
decimal string in major units (``"49.00"``; ``"4900"`` for zero-decimal JPY), floats for variant
prices, and display strings such as ``"$49.00 / month"``. Amounts are held as integer minor units.
"""

from __future__ import annotations

import functools
from typing import Any

from whop_pipeline.sandbox.dataset import Plan
from whop_pipeline.sandbox.whop.catalog import CURRENCIES

PERIOD_NAMES = {
    1: "day",
    7: "week",
    14: "2 weeks",
    30: "month",
    90: "3 months",
    180: "6 months",
    365: "year",
}


@functools.lru_cache(maxsize=16384)
def amount_string(minor: int, decimals: int) -> str:
    if decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


def money(minor: int, currency: str) -> dict[str, Any]:
    decimals = CURRENCIES[currency].decimals
    return {
        "amount": amount_string(minor, decimals),
        "currency": currency,
        "decimals": decimals,
        "display_decimals": decimals,
    }


def to_usd_cents(minor: int, currency: str) -> int:
    cur = CURRENCIES[currency]
    return minor * cur.usd_micros * 100 // (10**cur.decimals * 1_000_000)


def major_float(minor: int, currency: str) -> float:
    return minor / 10 ** CURRENCIES[currency].decimals


def list_price_minor(plan: Plan) -> int:
    """The price a variant advertises: the renewal price of a renewal plan, else the initial one."""
    return plan.renewal_minor if plan.plan_type == "renewal" else plan.initial_minor


def charge_minor(plan: Plan, reason: str) -> int:
    """What a payment for ``reason`` charges by default: checkout (``subscription_create``) takes
    the initial and the first renewal price together, anything else the list price."""
    if reason == "subscription_create":
        return plan.initial_minor + plan.renewal_minor
    return list_price_minor(plan)


def formatted_price(plan: Plan) -> str:
    cur = CURRENCIES[plan.currency]
    minor = list_price_minor(plan)
    whole = f"{minor // 10**cur.decimals:,}"
    text = cur.symbol + (whole if cur.decimals == 0 else f"{whole}.{minor % 10**cur.decimals:02d}")
    if plan.plan_type != "renewal":
        return text
    days = plan.billing_period_days or 0
    return f"{text} / {PERIOD_NAMES.get(days, f'{days} days')}"

"""Deterministic Whop datasets for the emulator, the tests and the benchmarks.

``generate_dataset(size, seed, start_date, now, scale, churn)`` builds one account with products,
variants (plans), members, memberships and payments. The same arguments always give the same data.
Records are compact slotted dataclasses holding ids, enums, integer minor-unit amounts and integer
epoch milliseconds; the emulator renders the full API shape on demand
(``whop_pipeline.sandbox.whop.render``), which keeps the large dataset (20,000 members, 25,000
memberships, 100,000 payments) near 100 MB.

Every size contains the cases the pipeline must handle: members without email, two emails equal
ignoring case, business buyers (no user), one-time purchases without a membership, all nine
membership statuses, ``cancel_at_period_end`` on active memberships, failed and refunded payments,
three-plus currencies including zero-decimal JPY, unicode names, names with commas, one-word names.

Renewing memberships live through a churn process (``whop_pipeline.sandbox.whop.churn``;
``docs/sandbox.md#churn``): they renew each billing period, fail charges (retried three days later),
get set to cancel at period end, and end at a time whose hazard rises with recent failed payments,
falls with tenure and jumps once ``cancel_at_period_end`` is set, so the 30-day end of a membership
is learnable from what its objects showed at any earlier moment. ``churn="random"`` draws the ends
independently of all of that instead (same overall rate). Payments stop at a membership's end, and
its status fields (``canceled_at``, ``expires_at``, ``current_period_end``, ``updated_at``) agree
with it.

``scale`` (an integer, default 1) multiplies the members, memberships and payments of the preset;
products and plans stay (``large`` at scale 2: 40,000 members, 50,000 memberships, 200,000
payments). Scale 1 is exactly the preset, and the account, products and plans are the same at every
scale (they are drawn before anything the scale changes).
"""

from __future__ import annotations

import bisect
import functools
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

Size = Literal["tiny", "small", "large"]
Churn = Literal["learnable", "random"]
DAY_MS = 86_400_000
MEMBERSHIP_STATUSES = (
    "trialing", "active", "past_due", "completed", "canceled",
    "expired", "unresolved", "drafted", "canceling",
)  # fmt: skip
# Statuses that grant access (the membership is "valid"): webhooks flip activated/deactivated on these.
VALID_STATUSES = frozenset({"trialing", "active", "past_due", "completed", "canceling"})
KINDS = ("products", "plans", "members", "memberships", "payments")


@dataclass(frozen=True)
class SizeSpec:
    members: int
    memberships: int
    payments: int
    products: int

    def scaled(self, scale: int) -> SizeSpec:
        """This preset with ``scale`` times the members, memberships and payments."""
        return SizeSpec(
            members=self.members * scale,
            memberships=self.memberships * scale,
            payments=self.payments * scale,
            products=self.products,
        )


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(members=32, memberships=42, payments=100, products=4),
    "small": SizeSpec(members=400, memberships=520, payments=2_400, products=6),
    "large": SizeSpec(members=20_000, memberships=25_000, payments=100_000, products=12),
}


@dataclass(slots=True)
class Account:
    id: str
    route: str
    title: str
    created_at: int


@dataclass(slots=True)
class Product:
    id: str
    title: str
    route: str
    headline: str
    description: str
    created_at: int
    updated_at: int
    visibility: str


@dataclass(slots=True)
class Plan:
    id: str
    product_id: str
    title: str
    currency: str
    plan_type: str  # renewal | one_time
    initial_minor: int  # charged once at checkout, minor units of ``currency``
    renewal_minor: int  # charged every ``billing_period_days``; 0 for one-time plans
    billing_period_days: int | None
    trial_period_days: int | None
    expiration_days: int | None
    visibility: str
    created_at: int
    updated_at: int


@dataclass(slots=True)
class Member:
    id: str
    user_id: str | None  # None: a business buyer
    username: str | None
    name: str | None  # the user's own name; may be None
    display_name: str
    email: str | None
    created_at: int
    access_level: str
    status: str
    most_recent_action: str | None
    most_recent_action_at: int | None
    last_accessed_at: int | None
    usd_spent_cents: int


@dataclass(slots=True)
class Membership:
    id: str
    member_id: str
    user_id: str | None
    product_id: str
    plan_id: str
    status: str
    created_at: int
    updated_at: int
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    cancel_option: str | None = None
    cancellation_reason: str | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    expires_at: int | None = None
    most_recent_action: str | None = None
    most_recent_action_at: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class Payment:
    id: str
    membership_id: str | None
    member_id: str
    product_id: str
    plan_id: str
    currency: str
    subtotal_minor: int
    billing_reason: str
    status: str
    substatus: str
    created_at: int
    updated_at: int
    paid_at: int | None = None
    refunded_minor: int | None = None
    refunded_at: int | None = None
    failure_message: str | None = None
    decline_code: str | None = None
    risk_score: int = 10
    metadata: dict[str, Any] | None = None


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


_TWO = [f"{i:02d}" for i in range(60)]
_THREE = [f"{i:03d}" for i in range(1000)]


@functools.lru_cache(maxsize=8192)
def _iso_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds to the API's timestamp format, e.g. ``2026-10-03T14:22:10.000Z``.
    (Table lookups instead of strftime: rendering is the emulator's hot path.)"""
    if ms is None:
        return None
    day, rest = divmod(ms, DAY_MS)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_iso_day(day)}T{_TWO[hours]}:{_TWO[minutes]}:{_TWO[seconds]}.{_THREE[millis]}Z"


class WhopDataset:
    """One Whop account's data. Lists are kept in ``(created_at, id)`` order."""

    def __init__(
        self,
        *,
        size: str,
        seed: int,
        start_date: date,
        now: datetime,
        account: Account,
        products: list[Product],
        plans: list[Plan],
        members: list[Member],
        memberships: list[Membership],
        payments: list[Payment],
        scale: int = 1,
        churn: str = "learnable",
    ) -> None:
        self.size, self.seed, self.start_date, self.now = size, seed, start_date, now
        self.scale, self.churn = scale, churn
        self.account = account
        self.products, self.plans, self.members = products, plans, members
        self.memberships, self.payments = memberships, payments
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the id maps after the lists were changed wholesale (e.g. a reset)."""
        self.by_id: dict[str, dict[str, Any]] = {
            kind: {r.id: r for r in self.records(kind)} for kind in KINDS
        }

    def records(self, kind: str) -> list[Any]:
        if kind == "variants":
            kind = "plans"
        if kind not in KINDS:
            raise KeyError(f"unknown kind {kind!r}; expected one of {KINDS}")
        return getattr(self, kind)

    def get(self, kind: str, record_id: str) -> Any | None:
        return self.by_id["plans" if kind == "variants" else kind].get(record_id)

    def add(self, kind: str, record: Any) -> None:
        """Insert a new record keeping ``(created_at, id)`` order."""
        bisect.insort(self.records(kind), record, key=lambda r: (r.created_at, r.id))
        self.by_id["plans" if kind == "variants" else kind][record.id] = record

    def counts(self) -> dict[str, int]:
        return {kind: len(self.records(kind)) for kind in KINDS}

    def rendered(self, kind: str, *, detail: bool = False) -> list[dict[str, Any]]:
        """Every record of ``kind`` as the REST API renders it (list shape unless ``detail``)."""
        from whop_pipeline.sandbox.whop.render import member_counts, render

        counts = member_counts(self) if kind in ("products", "plans", "variants") else None
        return [render(self, kind, r, detail=detail, counts=counts) for r in self.records(kind)]


MIN_SPAN = timedelta(days=33)


def generate_dataset(
    size: Size = "tiny",
    seed: int = 0,
    start_date: date = date(2025, 1, 1),
    now: datetime | None = None,
    scale: int = 1,
    churn: Churn = "learnable",
) -> WhopDataset:
    """Build the dataset for ``size`` deterministically from
    ``(size, seed, start_date, now, scale, churn)``.

    ``now`` defaults to the current UTC time truncated to the hour; every ``created_at`` falls in
    ``[start_date, now)``. ``scale`` (a positive integer) multiplies the preset's members,
    memberships and payments; products and plans stay. ``churn`` picks how memberships end:
    ``"learnable"`` (the churn process of ``whop_pipeline.sandbox.whop.churn``: failed payments,
    short tenure and ``cancel_at_period_end`` raise the hazard) or ``"random"`` (ends independent of
    all three, at about the same overall rate). The account, catalog and membership ids are the
    same under both.
    """
    from whop_pipeline.sandbox.whop.churn import check_churn
    from whop_pipeline.sandbox.whop.generate import build

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    check_scale(scale)
    check_churn(churn)
    if now is None:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    start = datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC)
    # Every plan must fit a whole billing period (30 days) with a day's margin on each side, or some
    # hard cases (trials, monthly renewals) would have no plan to draw from.
    if now - start < MIN_SPAN:
        raise ValueError(f"now must be at least {MIN_SPAN.days} days after start_date")
    # The seed string leaves out the scale: scale 1 stays byte-identical to the preset, and the
    # account and catalog (drawn first, from the product count only) match across scales.
    rng = random.Random(f"whop-dataset:{size}:{seed}:{start_date.isoformat()}:{to_ms(now)}")
    parts = build(SIZES[size].scaled(scale), rng, to_ms(start), to_ms(now), churn)
    return WhopDataset(
        size=size, seed=seed, start_date=start_date, now=now, scale=scale, churn=churn, **parts
    )


def check_scale(scale: object) -> int:
    """``scale`` if it is a positive integer, else ``ValueError``."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale!r}")
    return scale


__all__ = [
    "DAY_MS",
    "KINDS",
    "MEMBERSHIP_STATUSES",
    "SIZES",
    "VALID_STATUSES",
    "Account",
    "Churn",
    "Member",
    "Membership",
    "Payment",
    "Plan",
    "Product",
    "SizeSpec",
    "WhopDataset",
    "check_scale",
    "generate_dataset",
    "iso",
    "to_ms",
]

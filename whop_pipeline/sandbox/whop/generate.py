"""The dataset builder behind ``whop_pipeline.sandbox.dataset.generate_dataset``.

Order of work: catalog (products, variants) → memberships (variant, and the status of those outside
the churn process, with the hard cases at seeded positions) → each renewing membership's life in the
churn process (``churn``) and its payments (``generate_payments``), which fix its dates and status →
the memberships' owners (``winback``: lapsed members win back some extra memberships) → members
(created just before their first membership, special profiles at seeded positions) → one-time
purchases → refunds/failures → member aggregates.
"""

from __future__ import annotations

import random
from typing import Any

from whop_pipeline.sandbox.dataset import (
    MEMBERSHIP_STATUSES,
    Account,
    Member,
    Membership,
    Plan,
    Product,
    SizeSpec,
)
from whop_pipeline.sandbox.whop.catalog import (
    BUSINESS_NAMES,
    EMAIL_DOMAINS,
    EXTRA_PRODUCT_NAMES,
    FIRST_NAMES,
    LAST_NAMES,
    PRODUCT_TEMPLATES,
    SPECIAL_MEMBERS,
)
from whop_pipeline.sandbox.whop.generate_payments import (
    HOUR_MS,
    aggregate,
    force_payment_cases,
    membership_payments,
    one_time_payments,
)
from whop_pipeline.sandbox.whop.ids import DAY_MS, Ids, ascii_slug
from whop_pipeline.sandbox.whop.winback import assign_owners

ACCOUNT_NAMES = (
    "Northwind Trading",
    "Blue Harbor Capital",
    "Maple Street Traders",
    "Kestrel Research",
)
# A renewing membership is drafted, trialing or disputed (``unresolved``) by these weights (out of
# 96); the rest live through the churn process (``churn``), which decides their status at ``now``.
OUTSIDE_WEIGHTS = {"drafted": 3, "trialing": 3, "unresolved": 1}
OUTSIDE_TOTAL = 96
# The hard-case statuses the process reaches, as the state a membership must be in at ``now``.
TARGETS = {
    "active": "active", "past_due": "past_due", "canceled": "canceled", "expired": "expired",
    "canceling": "cape", "active_cape": "cape", "unresolved": "active",
}  # fmt: skip


def build(
    spec: SizeSpec, rng: random.Random, start: int, now: int, churn: str = "learnable"
) -> dict[str, Any]:
    ids = Ids(rng)
    title = rng.choice(ACCOUNT_NAMES)
    account = Account(ids.new("biz_"), ascii_slug(title, "-"), title, start)
    products, plans = _catalog(spec, rng, ids, start, now)
    if spec.members < len(SPECIAL_MEMBERS) or spec.memberships < spec.members:
        raise ValueError("size too small for the hard cases")
    memberships, targets = _memberships(spec, rng, ids, plans, start, now)
    payments = membership_payments(
        spec, rng, ids, memberships, plans, start, now, targets=targets, churn=churn
    )
    failed = {p.membership_id for p in payments if p.substatus == "failed"}
    owners = assign_owners(rng, memberships, spec.members, failed, churn)
    members = _members(spec, rng, ids, memberships, owners, start)
    owner = {ms.id: ms.member_id for ms in memberships}
    for payment in payments:
        payment.member_id = owner[payment.membership_id]
    missing = spec.payments - len(payments)
    payments += one_time_payments(rng, ids, members, plans, now, missing)
    force_payment_cases(rng, payments, now)
    aggregate(rng, members, memberships, payments, now)
    for items in (members, memberships, payments):
        items.sort(key=lambda r: (r.created_at, r.id))
    return {
        "account": account,
        "products": products,
        "plans": plans,
        "members": members,
        "memberships": memberships,
        "payments": payments,
    }


def _catalog(
    spec: SizeSpec, rng: random.Random, ids: Ids, start: int, now: int
) -> tuple[list[Product], list[Plan]]:
    products, plans = [], []
    for index in range(spec.products):
        template = PRODUCT_TEMPLATES[index % len(PRODUCT_TEMPLATES)]
        extra = index >= len(PRODUCT_TEMPLATES)
        name = EXTRA_PRODUCT_NAMES[(index - len(PRODUCT_TEMPLATES)) % len(EXTRA_PRODUCT_NAMES)]
        product_title = name if extra else template.title
        created = start + index * 7 * HOUR_MS + rng.randrange(HOUR_MS)
        product = Product(
            id=ids.new("prod_"),
            title=product_title,
            route=ascii_slug(product_title, "-") or f"product-{index}",
            headline=template.headline,
            description=f"{product_title}: {template.headline}",
            created_at=created,
            updated_at=created + rng.randrange(1, (now - created) // 4),
            visibility="visible",
        )
        products.append(product)
        scale = 1 + index // len(PRODUCT_TEMPLATES)  # extra products are pricier copies
        for offset, tpl in enumerate(template.plans):
            plan_created = created + (offset + 1) * 60_000
            plans.append(
                Plan(
                    id=ids.new("plan_"),
                    product_id=product.id,
                    title=tpl.title,
                    currency=template.currency,
                    plan_type=tpl.plan_type,
                    initial_minor=tpl.initial * scale,
                    renewal_minor=tpl.renewal * scale,
                    billing_period_days=tpl.period_days,
                    trial_period_days=tpl.trial_days,
                    expiration_days=tpl.expiration_days,
                    visibility=tpl.visibility,
                    created_at=plan_created,
                    updated_at=plan_created + rng.randrange(1, (now - plan_created) // 4),
                )
            )
    return products, plans


def _memberships(
    spec: SizeSpec, rng: random.Random, ids: Ids, plans: list[Plan], start: int, now: int
) -> tuple[list[Membership], dict[int, str]]:
    """The memberships' variants and, for those outside the churn process, statuses; with the
    state each hard case must be in at ``now`` (by index)."""
    span = now - start
    usable = [
        p
        for p in plans
        if p.billing_period_days is None or p.billing_period_days * DAY_MS < span - 2 * DAY_MS
    ]
    weights = [
        (5 if p.plan_type == "renewal" else 2) if p.visibility == "visible" else 1 for p in usable
    ]
    chosen: list[tuple[Plan, str]] = []
    for _ in range(spec.memberships):
        plan = rng.choices(usable, weights)[0]
        status = "active"  # the process decides
        if plan.plan_type == "one_time":
            status = "completed"
        else:
            roll = rng.random() * OUTSIDE_TOTAL
            for outside, weight in OUTSIDE_WEIGHTS.items():
                if roll < weight:
                    status = outside
                    break
                roll -= weight
        if status == "trialing" and not plan.trial_period_days:
            status = "active"
        chosen.append((plan, status))
    # Hard cases, placed at seeded positions: one membership per product (so every currency has
    # payments), every status value, and active memberships set to cancel at period end.
    order = rng.sample(range(spec.memberships), spec.memberships)
    by_product: dict[str, Plan] = {}
    for plan in usable:
        by_product.setdefault(plan.product_id, plan)
    slots = iter(order)
    for plan in by_product.values():
        chosen[next(slots)] = (plan, "completed" if plan.plan_type == "one_time" else "active")
    renewal = [p for p in usable if p.plan_type == "renewal"]
    lifetime = [p for p in usable if p.plan_type == "one_time" and not p.expiration_days]
    trial = [p for p in renewal if p.trial_period_days]
    targets: dict[int, str] = {}
    for status in (*MEMBERSHIP_STATUSES, "active_cape", "active_cape"):
        pool = lifetime if status == "completed" else trial if status == "trialing" else renewal
        slot = next(slots)
        chosen[slot] = (rng.choice(pool), status)
        if status in TARGETS:
            targets[slot] = TARGETS[status]

    memberships = []
    for index, (plan, status) in enumerate(chosen):
        if status == "unresolved":
            targets[index] = TARGETS[status]
        memberships.append(
            Membership(
                id=ids.new("mem_"),
                member_id="",
                user_id=None,
                product_id=plan.product_id,
                plan_id=plan.id,
                status="active" if status == "active_cape" else status,
                created_at=0,
                updated_at=0,
            )
        )
    return memberships, targets


def _members(
    spec: SizeSpec,
    rng: random.Random,
    ids: Ids,
    memberships: list[Membership],
    owners: list[int],
    start: int,
) -> list[Member]:
    count = spec.members
    first_seen = [0] * count
    for owner, ms in zip(owners, memberships, strict=True):
        if not first_seen[owner] or ms.created_at < first_seen[owner]:
            first_seen[owner] = ms.created_at
    created = [max(start, t - rng.randrange(0, DAY_MS)) for t in first_seen]
    chronological = sorted(range(count), key=lambda i: created[i])
    # Special profiles at seeded positions, in chronological order (the first of the two
    # case-duplicate emails belongs to the older member).
    special_at = dict(
        zip(sorted(rng.sample(range(count), len(SPECIAL_MEMBERS))), SPECIAL_MEMBERS, strict=True)
    )
    members = [None] * count
    for position, index in enumerate(chronological):
        special = special_at.get(position)
        if special is not None:
            business, name, email, username = (
                special.business,
                special.name,
                special.email,
                special.username,
            )
            display = special.display_name or name or username
        else:
            roll = rng.random()
            business = spec.members >= 400 and roll < 0.01
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            name = None if business else f"{first} {last}"
            username = None if business else f"{ascii_slug(first)}{ascii_slug(last)[:6]}{position}"
            no_email = business or roll > 0.96
            domain = EMAIL_DOMAINS[position % len(EMAIL_DOMAINS)]
            email = (
                None if no_email else f"{ascii_slug(first)}.{ascii_slug(last)}{position}@{domain}"
            )
            display = rng.choice(BUSINESS_NAMES) if business else name
        members[index] = Member(
            id=ids.new("mber_"),
            user_id=None if business else ids.new("user_"),
            username=username,
            name=name,
            display_name=display,
            email=email,
            created_at=created[index],
            access_level="no_access",
            status="left",
            most_recent_action=None,
            most_recent_action_at=None,
            last_accessed_at=None,
            usd_spent_cents=0,
        )
    for owner, ms in zip(owners, memberships, strict=True):
        ms.member_id, ms.user_id = members[owner].id, members[owner].user_id
    return members

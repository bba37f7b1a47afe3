"""Payments for the generated dataset: how many each membership gets, when, in which state.

Counts are allocated under each membership's capacity (how many billing cycles fit between
``start`` and ``now``), so every size's total is exact. A membership's payment times also fix its
``created_at`` and billing period: an active monthly membership with four payments was created
about four months ago and renews within the next month; a canceled one ran for its payments and
stopped before ``now``.
"""

from __future__ import annotations

import bisect
import random

from whop_pipeline.sandbox.dataset import (
    DAY_MS,
    VALID_STATUSES,
    Member,
    Membership,
    Payment,
    Plan,
    SizeSpec,
)
from whop_pipeline.sandbox.whop.catalog import CANCEL_OPTIONS, FAILURES
from whop_pipeline.sandbox.whop.ids import Ids
from whop_pipeline.sandbox.whop.money import charge_minor, to_usd_cents

HOUR_MS = 3_600_000
MEMBER_ACTION = {
    "active": "paid_subscriber", "canceling": "canceling", "past_due": "past_due",
    "trialing": "trialing", "completed": "paid_once", "canceled": "churned", "expired": "churned",
    "drafted": "pending_entry", "unresolved": "past_due",
}  # fmt: skip


def _allocate(rng: random.Random, capacities: list[int], extra: int) -> list[int]:
    """One payment per membership with capacity, plus ``extra`` spread over the spare capacity."""
    counts = [1 if c > 0 else 0 for c in capacities]
    spare = [max(0, c - 1) for c in capacities]
    cumulative, total = [], 0
    for value in spare:
        total += value
        cumulative.append(total)
    for slot in rng.sample(range(total), min(extra, total)):
        counts[bisect.bisect_right(cumulative, slot)] += 1
    return counts


def membership_payments(
    spec: SizeSpec,
    rng: random.Random,
    ids: Ids,
    memberships: list[Membership],
    plans: list[Plan],
    start: int,
    now: int,
) -> list[Payment]:
    plan_by_id = {p.id: p for p in plans}
    span = now - start
    capacities = []
    for ms in memberships:
        plan = plan_by_id[ms.plan_id]
        if ms.status in ("drafted", "trialing"):
            capacities.append(0)
        elif plan.plan_type == "one_time":
            capacities.append(1)
        else:
            capacities.append(max(1, (span - 2 * DAY_MS) // (plan.billing_period_days * DAY_MS)))
    one_time_floor = max(2, spec.payments * 4 // 100)
    budget = spec.payments - one_time_floor - sum(1 for c in capacities if c)
    if budget < 0:
        raise ValueError("payments too few for the memberships of this size")
    counts = _allocate(rng, capacities, budget)

    payments: list[Payment] = []
    for ms, count in zip(memberships, counts, strict=True):
        plan = plan_by_id[ms.plan_id]
        times = _membership_timeline(rng, ms, plan, count, start, now)
        for index, moment in enumerate(times):
            if plan.plan_type == "one_time":
                reason = "one_time"
            elif index == 0:
                reason = "subscription_create"
            else:
                reason = "subscription_update" if rng.random() < 0.02 else "subscription_cycle"
            amount = charge_minor(plan, reason)
            payment = _paid(ids, rng, ms.id, "", plan, amount, reason, moment, now)
            payments.append(payment)
        if times:
            last = payments[-1]
            if ms.status == "past_due":
                _fail(rng, last, "open")
            elif ms.status == "unresolved":
                last.substatus = "open_resolution"
            elif ms.status == "canceled" and rng.random() < 0.15:
                _refund(rng, last, last.subtotal_minor, now)
        ms.updated_at = min(
            now - 1000, max(ms.updated_at, ms.created_at + between(rng, 1000, 90_000))
        )
    return payments


def _membership_timeline(
    rng: random.Random, ms: Membership, plan: Plan, count: int, start: int, now: int
) -> list[int]:
    """Set the membership's dates; return its payment times (ascending)."""
    period = (plan.billing_period_days or 0) * DAY_MS
    jitter = between(rng, 5_000, 120_000)
    status = ms.status
    if status == "drafted" or plan.plan_type == "one_time":
        ms.created_at = between(rng, start + DAY_MS, now - HOUR_MS)
        if plan.expiration_days:
            ms.expires_at = ms.created_at + plan.expiration_days * DAY_MS
            if ms.expires_at < now:
                ms.status = "expired"
                ms.most_recent_action, ms.most_recent_action_at = "ending_on", ms.expires_at
        ms.updated_at = ms.created_at
        return [] if status == "drafted" else [ms.created_at + jitter]
    if status == "trialing":
        trial = (plan.trial_period_days or 7) * DAY_MS
        ms.created_at = now - between(rng, HOUR_MS, trial)
        ms.current_period_start, ms.current_period_end = ms.created_at, ms.created_at + trial
        ms.most_recent_action, ms.most_recent_action_at = "trial_ends_at", ms.current_period_end
        ms.updated_at = ms.created_at
        return []
    if status in ("canceled", "expired"):
        end = between(rng, start + count * period + DAY_MS, now - HOUR_MS)
        first = end - count * period
    else:
        last = now - between(rng, HOUR_MS, period - HOUR_MS)
        first = last - (count - 1) * period
        end = last + period
    ms.created_at = first - jitter
    times = [first + i * period + between(rng, 0, 60_000) for i in range(count)]
    ms.current_period_start, ms.current_period_end = end - period, end
    ms.updated_at = times[-1]
    if status in ("canceled", "expired") or ms.cancel_at_period_end:
        ms.cancel_option, ms.cancellation_reason = rng.choice(CANCEL_OPTIONS)
    if status == "canceled":
        ms.canceled_at = between(rng, times[-1], end)
        ms.most_recent_action, ms.most_recent_action_at = "canceled_on", ms.canceled_at
        ms.updated_at = ms.canceled_at
    elif status == "expired":
        ms.expires_at = end
        ms.most_recent_action, ms.most_recent_action_at = "ending_on", end
        ms.updated_at = end
    elif ms.cancel_at_period_end:
        ms.most_recent_action, ms.most_recent_action_at = "canceling_on", end
    elif status == "past_due":
        ms.most_recent_action, ms.most_recent_action_at = "past_due", times[-1]
    elif status == "unresolved":
        ms.most_recent_action, ms.most_recent_action_at = "unresolved_at", times[-1]
    else:
        ms.most_recent_action, ms.most_recent_action_at = "renewing_on", end
    return times


def between(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in ``[low, high)``; ``random()`` is several times faster than
    ``randrange`` and this runs a few hundred thousand times for the large dataset."""
    return low + int(rng.random() * (high - low))


def _paid(
    ids: Ids,
    rng: random.Random,
    membership_id: str | None,
    member_id: str,
    plan: Plan,
    amount: int,
    reason: str,
    moment: int,
    now: int,
) -> Payment:
    paid_at = min(now - 1, moment + between(rng, 1_000, 20_000))
    return Payment(
        id=ids.new("pay_"),
        membership_id=membership_id,
        member_id=member_id,
        product_id=plan.product_id,
        plan_id=plan.id,
        currency=plan.currency,
        subtotal_minor=amount,
        billing_reason=reason,
        status="paid",
        substatus="succeeded",
        created_at=moment,
        updated_at=min(now - 1, paid_at + between(rng, 100, 2_000)),
        paid_at=paid_at,
        risk_score=between(rng, 0, 60),
    )


def _fail(rng: random.Random, payment: Payment, status: str) -> None:
    payment.status, payment.substatus, payment.paid_at = status, "failed", None
    payment.decline_code, payment.failure_message = rng.choice(FAILURES)


def _refund(rng: random.Random, payment: Payment, amount: int, now: int) -> None:
    payment.substatus = "refunded" if amount >= payment.subtotal_minor else "partially_refunded"
    payment.refunded_minor = amount
    # Refunds come within a month of the charge, never after ``now``.
    moment = payment.created_at + between(rng, HOUR_MS, 30 * DAY_MS)
    payment.refunded_at = min(moment, now - 1)
    payment.updated_at = max(payment.updated_at, payment.refunded_at)


def one_time_payments(
    rng: random.Random,
    ids: Ids,
    members: list[Member],
    plans: list[Plan],
    now: int,
    count: int,
) -> list[Payment]:
    """Purchases of one-time variants without a membership (``membership_id`` null)."""
    one_time = [p for p in plans if p.plan_type == "one_time"]
    out = []
    for _ in range(count):
        member, plan = rng.choice(members), rng.choice(one_time)
        moment = between(rng, member.created_at + 1_000, now - 60_000)
        amount = charge_minor(plan, "one_time")
        out.append(_paid(ids, rng, None, member.id, plan, amount, "one_time", moment, now))
    return out


def force_payment_cases(rng: random.Random, payments: list[Payment], now: int) -> None:
    """Random history (refunds, failures, pending) plus at least one of each case per dataset."""
    ordinary = [p for p in payments if p.substatus == "succeeded"]
    for payment in ordinary:
        roll = rng.random()
        if roll < 0.03:
            _refund(rng, payment, payment.subtotal_minor, now)
        elif roll < 0.04:
            _refund(rng, payment, max(1, payment.subtotal_minor // 2), now)
        elif roll < 0.06:
            _fail(rng, payment, rng.choice(("open", "uncollectible")))
        elif roll < 0.065 and now - payment.created_at < 3 * DAY_MS:
            payment.status, payment.substatus, payment.paid_at = "pending", "pending", None
    picks = iter(rng.sample(ordinary, len(ordinary)))
    cases = (
        "refunded",
        "partially_refunded",
        "open",
        "uncollectible",
        "pending",
        "one_time_refund",
    )
    for case in cases:
        payment = next(
            p for p in picks if (p.billing_reason == "one_time") == (case == "one_time_refund")
        )
        if case in ("refunded", "one_time_refund"):
            _refund(rng, payment, payment.subtotal_minor, now)
        elif case == "partially_refunded":
            _refund(rng, payment, max(1, payment.subtotal_minor // 2), now)
        elif case == "pending":
            payment.status, payment.substatus, payment.paid_at = "pending", "pending", None
        else:
            _fail(rng, payment, case)


def aggregate(
    rng: random.Random,
    members: list[Member],
    memberships: list[Membership],
    payments: list[Payment],
    now: int,
) -> None:
    by_id = {m.id: m for m in members}
    latest: dict[str, Membership] = {}
    for ms in memberships:
        member = by_id[ms.member_id]
        if ms.status in VALID_STATUSES:
            member.access_level, member.status = "customer", "joined"
        elif ms.status in ("drafted", "unresolved"):
            member.status = "joined"
        if ms.member_id not in latest or ms.updated_at > latest[ms.member_id].updated_at:
            latest[ms.member_id] = ms
    for payment in payments:
        if payment.status == "paid":
            net = payment.subtotal_minor - (payment.refunded_minor or 0)
            by_id[payment.member_id].usd_spent_cents += to_usd_cents(net, payment.currency)
    for member in members:
        ms = latest.get(member.id)
        if ms is not None:
            member.most_recent_action = MEMBER_ACTION[ms.status]
            member.most_recent_action_at = ms.updated_at
        if member.access_level == "customer":
            member.last_accessed_at = max(
                member.created_at, now - between(rng, 60_000, 14 * DAY_MS)
            )

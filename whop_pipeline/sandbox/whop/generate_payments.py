"""Payments for the generated dataset, and the dates and statuses they fix.

A renewing membership's payments are its charges in the churn process (``churn``): one per billing
period from its first, failed ones where the process failed them (retried three days later), none
after its end. Its start date (``now`` less its tenure) comes from one growth rate of sign-ups for
the whole dataset, the one that spends the preset's payments (``churn.place``); what the renewing
memberships do not spend becomes one-time purchases without a membership, so every size's total is
exact. Drafted, trialing and one-time memberships keep simple fixed timelines. Refunds, pending
charges and failed one-time purchases are sprinkled on top (``force_payment_cases``); failures are
never added to a membership's charges afterwards, so every failure a membership shows is one that
drove its hazard.
"""

from __future__ import annotations

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
from whop_pipeline.sandbox.whop.churn import Trajectory, conditioned, place, simulate
from whop_pipeline.sandbox.whop.ids import Ids
from whop_pipeline.sandbox.whop.money import charge_minor, to_usd_cents

HOUR_MS = 3_600_000
MEMBER_ACTION = {
    "active": "paid_subscriber", "canceling": "canceling", "past_due": "past_due",
    "trialing": "trialing", "completed": "paid_once", "canceled": "churned", "expired": "churned",
    "drafted": "pending_entry", "unresolved": "past_due",
}  # fmt: skip


def membership_payments(
    spec: SizeSpec,
    rng: random.Random,
    ids: Ids,
    memberships: list[Membership],
    plans: list[Plan],
    start: int,
    now: int,
    targets: dict[int, str] | None = None,
    churn: str = "learnable",
) -> list[Payment]:
    """Every membership's payments, and its dates and status from its life (``churn``).

    Renewing memberships (other than drafted and trialing ones) live through the churn process;
    ``targets`` maps the index of a membership that must be found in a given state at ``now``
    (``active``, ``past_due``, ``cape``, ``canceled``, ``expired``: the hard cases) to that state.
    The others are placed on the calendar by one growth rate of start dates, the one that spends the
    preset's payments (less the one-time purchases' share)."""
    targets = targets or {}
    plan_by_id = {p.id: p for p in plans}
    horizon = now - start - DAY_MS  # the oldest a membership can be at ``now``
    one_time_floor = max(2, spec.payments * 4 // 100)
    living = [
        i
        for i, ms in enumerate(memberships)
        if plan_by_id[ms.plan_id].plan_type == "renewal"
        and ms.status not in ("drafted", "trialing")
    ]
    single = sum(
        1
        for ms in memberships
        if plan_by_id[ms.plan_id].plan_type == "one_time" and ms.status != "drafted"
    )
    budget = spec.payments - one_time_floor - single
    if budget < len(living):
        raise ValueError("payments too few for the memberships of this size")
    cap = max(2, budget // max(1, len(living)))
    lives: dict[int, tuple[Trajectory, int]] = {}
    free: list[int] = []
    free_lives: list[Trajectory] = []
    for i in living:
        period = plan_by_id[memberships[i].plan_id].billing_period_days or 30
        target = targets.get(i)
        if target is None:
            free.append(i)
            free_lives.append(simulate(rng, period, horizon / DAY_MS, churn))
        else:
            lives[i] = conditioned(rng, period, horizon / DAY_MS, target, churn, cap)
            budget -= lives[i][0].count(lives[i][1])
    if budget < len(free):
        raise ValueError("payments too few for the memberships of this size")
    draws = [rng.random() for _ in free]
    for i, life, age in zip(
        free, free_lives, place(free_lives, draws, horizon, budget), strict=True
    ):
        lives[i] = (life, age)

    payments: list[Payment] = []
    for index, ms in enumerate(memberships):
        plan = plan_by_id[ms.plan_id]
        if index in lives:
            life, age = lives[index]
            payments += _live(rng, ids, ms, plan, life, age, now, forced=index in targets)
        else:
            amount = charge_minor(plan, "one_time")
            for moment in _fixed_timeline(rng, ms, plan, start, now):
                payments.append(_paid(ids, rng, ms.id, "", plan, amount, "one_time", moment, now))
            ms.updated_at = min(
                now - 1000, max(ms.updated_at, ms.created_at + between(rng, 1000, 90_000))
            )
    return payments


def _live(
    rng: random.Random,
    ids: Ids,
    ms: Membership,
    plan: Plan,
    life: Trajectory,
    age: int,
    now: int,
    forced: bool = False,
) -> list[Payment]:
    """The payments and fields of a renewing membership whose life ``life`` is at tenure ``age``
    at ``now`` (``forced``: a hard case, whose status says which of ``active`` and ``canceling``
    a membership set to cancel at period end shows)."""
    begun = now - age  # the first charge
    ms.created_at = begun - between(rng, 5_000, 120_000)
    count = life.count(age)
    payments = []
    for n, tenure in enumerate(life.times[:count]):
        if n == 0:
            reason = "subscription_create"
        else:
            reason = "subscription_update" if rng.random() < 0.02 else "subscription_cycle"
        payment = _paid(
            ids, rng, ms.id, "", plan, charge_minor(plan, reason), reason, begun + tenure, now
        )
        if life.failed[n]:
            _fail(rng, payment, "uncollectible")
        payments.append(payment)
    last = payments[-1]
    period, state = life.period, life.state(age)
    if state == "ended":
        end = begun + life.end  # access ended: the period ends here, whatever its length
        boundary = life.end // period - (life.end % period == 0)
        ms.current_period_start, ms.current_period_end = begun + boundary * period, end
        ms.updated_at = end
        if life.mode == "expire":
            ms.status, ms.expires_at = "expired", end
            ms.most_recent_action, ms.most_recent_action_at = "ending_on", end
            return payments
        ms.status = "canceled"
        ms.cancel_option, ms.cancellation_reason = rng.choice(CANCEL_OPTIONS)
        ms.canceled_at = begun + life.capes[-1][0] if life.mode == "cape" else end
        ms.most_recent_action, ms.most_recent_action_at = "canceled_on", ms.canceled_at
        if life.mode == "cancel" and last.status == "paid" and rng.random() < 0.15:
            _refund(rng, last, last.subtotal_minor, now, after=end)
        return payments
    boundary = (age - 1) // period
    ms.current_period_start = begun + boundary * period
    ms.current_period_end = ms.current_period_start + period
    # The last change before ``now``: a charge, or cancel_at_period_end set or un-set.
    changed = max([life.times[count - 1]] + [t for window in life.capes for t in window if t < age])
    ms.updated_at = min(now - 1, begun + changed)
    if state == "past_due":
        ms.status = "past_due"
        last.status = "open"  # its retry is due (``next_payment_attempt_at``)
        ms.most_recent_action, ms.most_recent_action_at = "past_due", last.created_at
    elif state == "cape":
        if not forced:
            ms.status = "canceling" if rng.random() < 0.5 else "active"
        ms.cancel_at_period_end = True
        ms.canceled_at = begun + max(low for low, _ in life.capes if low < age)
        ms.cancel_option, ms.cancellation_reason = rng.choice(CANCEL_OPTIONS)
        ms.most_recent_action, ms.most_recent_action_at = "canceling_on", ms.current_period_end
    elif ms.status == "unresolved":  # a dispute on the latest charge (outside the process)
        last.substatus = "open_resolution"
        ms.most_recent_action, ms.most_recent_action_at = "unresolved_at", last.created_at
    else:
        ms.status, ms.cancel_at_period_end = "active", False
        ms.most_recent_action, ms.most_recent_action_at = "renewing_on", ms.current_period_end
    return payments


def _fixed_timeline(
    rng: random.Random, ms: Membership, plan: Plan, start: int, now: int
) -> list[int]:
    """Dates of the memberships outside the churn process (drafted, trialing, one-time); returns
    the time of its one payment, if it has one."""
    jitter = between(rng, 5_000, 120_000)
    status = ms.status
    if status == "trialing":
        trial = (plan.trial_period_days or 7) * DAY_MS
        ms.created_at = now - between(rng, HOUR_MS, trial)
        ms.current_period_start, ms.current_period_end = ms.created_at, ms.created_at + trial
        ms.most_recent_action, ms.most_recent_action_at = "trial_ends_at", ms.current_period_end
        ms.updated_at = ms.created_at
        return []
    ms.created_at = between(rng, start + DAY_MS, now - HOUR_MS)
    if plan.expiration_days:
        ms.expires_at = ms.created_at + plan.expiration_days * DAY_MS
        if ms.expires_at < now:
            ms.status = "expired"
            ms.most_recent_action, ms.most_recent_action_at = "ending_on", ms.expires_at
    ms.updated_at = ms.created_at
    return [] if status == "drafted" else [min(ms.created_at + jitter, now - 1000)]


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


def _refund(
    rng: random.Random, payment: Payment, amount: int, now: int, after: int | None = None
) -> None:
    payment.substatus = "refunded" if amount >= payment.subtotal_minor else "partially_refunded"
    payment.refunded_minor = amount
    # Refunds come within a month of the charge (within two days of ``after``, a cancellation),
    # never after ``now``.
    if after is None:
        moment = payment.created_at + between(rng, HOUR_MS, 30 * DAY_MS)
    else:
        moment = after + between(rng, HOUR_MS, 2 * DAY_MS)
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
    """Random history (refunds, pending, failed one-time purchases) plus at least one of each case
    per dataset. Charges of memberships are never failed here: their failures are the churn
    process's own (``churn``), at the times that drove it."""
    ordinary = [p for p in payments if p.substatus == "succeeded"]
    for payment in ordinary:
        roll = rng.random()
        if roll < 0.03:
            _refund(rng, payment, payment.subtotal_minor, now)
        elif roll < 0.04:
            _refund(rng, payment, max(1, payment.subtotal_minor // 2), now)
        elif roll < 0.06:
            if payment.membership_id is None:
                _fail(rng, payment, rng.choice(("open", "uncollectible")))
        elif roll < 0.065 and now - payment.created_at < 3 * DAY_MS:
            payment.status, payment.substatus, payment.paid_at = "pending", "pending", None
    ordinary = [p for p in ordinary if p.substatus == "succeeded"]
    picks = iter(rng.sample(ordinary, len(ordinary)))
    failed = {p.status for p in payments if p.substatus == "failed"}
    cases = (
        "refunded",
        "partially_refunded",
        "open",
        "uncollectible",
        "pending",
        "one_time_refund",
    )
    for case in cases:
        if case in failed:
            continue
        alone = case in ("open", "uncollectible", "one_time_refund")  # a one-time purchase
        payment = next(p for p in picks if not alone or p.membership_id is None)
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

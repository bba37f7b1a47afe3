"""Changing and creating memberships and payments, and changing members (the ``/_sandbox`` write
endpoints).

A change is a flat object of fields. It is validated completely before anything is touched (an
unknown field or a bad value is a 400 and changes nothing), then applied under the store lock; the
derived fields follow so the object stays plausible, and ``updated_at`` moves strictly forward.

Derived fields:
- Membership ``status`` canceled → ``canceled_at`` = now (unless set), ``cancel_at_period_end`` false
  (unless given); canceling → ``cancel_at_period_end`` true, always (clearing it on a membership that
  stays canceling does nothing: change ``status`` to end canceling); expired → ``expires_at`` = now
  (unless set); ``status`` given as active/trialing/past_due → ``canceled_at`` cleared (unless given).
  ``most_recent_action`` (+ ``_at``) follows the status. The member's access level follows too.
- Member (what a seller's customer changes on their own Whop profile): ``name``, ``email``,
  ``username``; ``display_name`` follows (the user's name, else their username, as the SDK's
  ``Member.display_name`` documents). A business buyer (no user) has none of these: a 400. A
  username another member's user holds (ignoring case) is a 400 too. Payments render the member's
  user and email, so they show the new values as well (without an event: v1 has no
  ``payment.updated``). Members have no ``updated_at``.
- Payment: giving only ``status`` or only ``substatus`` fills the other from a default table (only
  ``refunded_amount`` implies refunded / partially_refunded); then paid → ``paid_at``; failed →
  ``failure_message`` and ``decline_code`` (cleared otherwise); refunded / partially_refunded →
  ``refunded_amount`` (full / half unless given) and ``refunded_at``.
No other side effects: a new payment does not move its membership's billing period, and a member's
``usd_total_spent`` stays as generated.

Member changes caused by a membership change travel with it in ``Change.members``: the member a
new membership created (its ``after`` is the member at the end of the operation, access included),
or a member whose access level or status moved. ``Change.in_order()`` is the delivery order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from whop_pipeline.sandbox.dataset import (
    DAY_MS,
    VALID_STATUSES,
    Member,
    Membership,
    Payment,
)
from whop_pipeline.sandbox.whop.catalog import CURRENCIES, FAILURES
from whop_pipeline.sandbox.whop.errors import bad_param
from whop_pipeline.sandbox.whop.fields import (
    MEMBER_UPDATE,
    MEMBERSHIP_CREATE,
    MEMBERSHIP_UPDATE,
    PAYMENT_CREATE,
    PAYMENT_UPDATE,
    REFUNDED,
    STATUS_OF,
    SUBSTATUS_OF,
    parse_fields,
)
from whop_pipeline.sandbox.whop.ids import Ids
from whop_pipeline.sandbox.whop.money import charge_minor
from whop_pipeline.sandbox.whop.render import render
from whop_pipeline.sandbox.whop.store import WhopStore


@dataclass
class Change:
    kind: str
    record: Any
    before: dict[str, Any] | None  # rendered before the change; None when created
    after: dict[str, Any]  # rendered after (retrieve shape)
    members: list[Change] = field(default_factory=list)  # member changes this change caused

    def in_order(self) -> list[Change]:
        """This change and the member changes it caused, in delivery order: a member created for
        it comes first (the membership refers to it), a member it updated comes after."""
        created = [c for c in self.members if c.before is None]
        updated = [c for c in self.members if c.before is not None]
        return [*created, self, *updated]


class Controller:
    """Applies changes to a ``WhopStore``; every public method holds the store lock throughout."""

    def __init__(self, store: WhopStore) -> None:
        self.store = store
        self.ds = store.ds
        self.ids = Ids(random.Random(f"created:{store.ds.seed}"))

    def _minor(self, amount: Any, currency: str, name: str) -> int:
        decimals = CURRENCIES[currency].decimals
        minor = amount * 10**decimals
        if minor != minor.to_integral_value():
            raise bad_param(name, f"`{name}` has more than {decimals} decimals for {currency}")
        return int(minor)

    def _plan(self, values: dict[str, Any]) -> Any:
        if "plan_id" in values:
            plan = self.ds.get("plans", values["plan_id"])
            if plan is None:
                raise bad_param("plan_id", f"Unknown plan `{values['plan_id']}`")
            return plan
        if "product_id" in values:
            plan = next((p for p in self.ds.plans if p.product_id == values["product_id"]), None)
            if plan is None:
                raise bad_param("product_id", f"Unknown product `{values['product_id']}`")
            return plan
        return None

    def _new_id(self, prefix: str, kind: str) -> str:
        while True:
            ident = self.ids.new(prefix)
            if self.ds.get(kind, ident) is None:
                return ident

    # -- memberships ---------------------------------------------------------------------------

    def update_membership(self, ident: str, fields: dict[str, Any]) -> Change:
        values = parse_fields(fields, MEMBERSHIP_UPDATE)
        with self.store.lock:
            ms = self.store.get("memberships", ident)
            plan = self._plan(values)
            before = render(self.ds, "memberships", ms)
            self.store.remember("memberships", ms)
            now = self.store.next_updated_at(ms)
            if plan is not None:
                ms.plan_id, ms.product_id = plan.id, plan.product_id
            for name in MEMBERSHIP_UPDATE.keys() - {"plan_id"}:
                if name in values:
                    setattr(ms, name, values[name])
            self._derive_membership(ms, values, now)
            ms.updated_at = now
            self.store.changed("memberships")
            member = self._refresh_member(ms.member_id)
            after = render(self.ds, "memberships", ms)
            return Change("memberships", ms, before, after, [member] if member else [])

    def _derive_membership(self, ms: Membership, given: dict[str, Any], now: int) -> None:
        if ms.status == "canceling":
            ms.cancel_at_period_end = True
        if ms.status == "canceled":
            if ms.canceled_at is None:
                ms.canceled_at = now
            if "cancel_at_period_end" not in given:
                ms.cancel_at_period_end = False
        elif ms.status == "expired" and ms.expires_at is None:
            ms.expires_at = now
        elif (
            ms.status in ("active", "trialing", "past_due")
            and "status" in given
            and "canceled_at" not in given
        ):
            ms.canceled_at = None
        ms.most_recent_action, ms.most_recent_action_at = _membership_action(ms, now)

    def _refresh_member(self, member_id: str) -> Change | None:
        """Keep the member's access level and status in line with its memberships; the member's
        change if either moved."""
        member = self.ds.get("members", member_id)
        statuses = [m.status for m in self.ds.memberships if m.member_id == member_id]
        valid = any(s in VALID_STATUSES for s in statuses)
        joined = valid or any(s in ("drafted", "unresolved") for s in statuses)
        access, status = ("customer" if valid else "no_access"), ("joined" if joined else "left")
        if (member.access_level, member.status) == (access, status):
            return None
        before = render(self.ds, "members", member)
        self.store.remember("members", member)
        member.access_level, member.status = access, status
        self.store.changed("members")
        return Change("members", member, before, render(self.ds, "members", member))

    def create_membership(self, fields: dict[str, Any]) -> Change:
        values = parse_fields(fields, MEMBERSHIP_CREATE)
        with self.store.lock:
            plan = self._plan(values) or self.ds.plans[0]
            created = values.get("created_at") or self.store.next_updated_at()
            member, new_member = self._member_for(values, created)
            one_time = plan.plan_type == "one_time"
            status = values.get("status") or ("completed" if one_time else "active")
            ms = Membership(
                id=self._new_id("mem_", "memberships"),
                member_id=member.id,
                user_id=member.user_id,
                product_id=plan.product_id,
                plan_id=plan.id,
                status=status,
                created_at=created,
                updated_at=created,
                cancel_at_period_end=values.get("cancel_at_period_end", status == "canceling"),
                metadata=values.get("metadata"),
            )
            days = plan.trial_period_days if status == "trialing" else plan.billing_period_days
            if days and not one_time:
                ms.current_period_start, ms.current_period_end = created, created + days * DAY_MS
            if one_time and plan.expiration_days:
                ms.expires_at = created + plan.expiration_days * DAY_MS
            self._derive_membership(ms, values, created)
            self.store.add("memberships", ms)
            refreshed = self._refresh_member(member.id)
            if new_member:  # one member.created, with the access this membership gave
                members = [Change("members", member, None, render(self.ds, "members", member))]
            else:
                members = [refreshed] if refreshed else []
            return Change("memberships", ms, None, render(self.ds, "memberships", ms), members)

    def _member_for(self, values: dict[str, Any], created: int) -> tuple[Member, bool]:
        """The buyer: ``member_id``'s member, else a new one (``True``) for a new user."""
        if "member_id" in values:
            member = self.ds.get("members", values["member_id"])
            if member is None:
                raise bad_param("member_id", f"Unknown member `{values['member_id']}`")
            return member, False
        user_id = self.ids.new("user_")  # unique among this controller's ids
        if "username" in values:
            self._check_username(values["username"], None)
        username = values.get("username") or f"buyer_{user_id[5:13].lower()}"
        name = values.get("name", "New Buyer")
        member = Member(
            id=self._new_id("mber_", "members"),
            user_id=user_id,
            username=username,
            name=name,
            display_name=name or username,
            email=values.get("email", f"{username}@example.com"),
            created_at=created,
            access_level="no_access",
            status="joined",
            most_recent_action="joined",
            most_recent_action_at=created,
            last_accessed_at=created,
            usd_spent_cents=0,
        )
        self.store.add("members", member)
        return member, True

    # -- members -------------------------------------------------------------------------------

    def _check_username(self, username: str, member: Member | None) -> None:
        """A 400 when another member's user holds ``username`` (usernames are unique, ignoring
        case)."""
        folded = username.casefold()
        if member is not None and (member.username or "").casefold() == folded:
            return
        if any(m.username and m.username.casefold() == folded for m in self.ds.members):
            raise bad_param("username", f"The username `{username}` is taken")

    def update_member(self, ident: str, fields: dict[str, Any]) -> Change:
        """The member's user changed their profile: ``name`` (null clears it), ``email`` (null
        clears it), ``username``. ``before == after`` when nothing actually changed."""
        values = parse_fields(fields, MEMBER_UPDATE)
        with self.store.lock:
            member = self.store.get("members", ident)
            if member.user_id is None:
                raise bad_param(
                    next(iter(values)),
                    f"Member `{ident}` is a business buyer without a user: it has no name, "
                    "username or email to change",
                )
            if "username" in values:
                self._check_username(values["username"], member)
            before = render(self.ds, "members", member)
            self.store.remember("members", member)
            for name in MEMBER_UPDATE:
                if name in values:
                    setattr(member, name, values[name])
            member.display_name = member.name or member.username
            after = render(self.ds, "members", member)
            if after != before:
                self.store.changed("members")
            return Change("members", member, before, after)

    # -- payments ------------------------------------------------------------------------------

    def update_payment(self, ident: str, fields: dict[str, Any]) -> Change:
        values = parse_fields(fields, PAYMENT_UPDATE)
        with self.store.lock:
            payment = self.store.get("payments", ident)
            before = render(self.ds, "payments", payment, detail=True)
            self.store.remember("payments", payment)
            now = self.store.next_updated_at(payment)
            self._apply_payment(payment, values, now)
            payment.updated_at = now
            self.store.changed("payments")
            return Change(
                "payments", payment, before, render(self.ds, "payments", payment, detail=True)
            )

    def _apply_payment(self, p: Payment, values: dict[str, Any], now: int) -> None:
        if "refunded_amount" in values and values["refunded_amount"] is not None:
            minor = self._minor(values["refunded_amount"], p.currency, "refunded_amount")
            if minor > p.subtotal_minor:
                raise bad_param("refunded_amount", "`refunded_amount` exceeds the payment total")
            values["refunded_amount"] = minor
            if "substatus" not in values and "status" not in values and minor > 0:
                full = minor == p.subtotal_minor
                values["substatus"] = "refunded" if full else "partially_refunded"
        if "status" in values and "substatus" not in values:
            values["substatus"] = SUBSTATUS_OF[values["status"]]
        elif "substatus" in values and "status" not in values:
            values["status"] = STATUS_OF.get(values["substatus"], p.status)
        for name in PAYMENT_UPDATE.keys() - {"refunded_amount"}:
            if name in values:
                setattr(p, name, values[name])
        if "refunded_amount" in values:
            p.refunded_minor = values["refunded_amount"]
        if "paid_at" not in values:
            if p.status == "paid" and p.paid_at is None:
                p.paid_at = now
            elif p.status not in ("paid", "unresolved"):
                p.paid_at = None
        if p.substatus == "failed":
            code, message = FAILURES[0]
            p.decline_code = p.decline_code or code
            p.failure_message = p.failure_message or message
        else:
            p.failure_message = values.get("failure_message")
            p.decline_code = values.get("decline_code")
        if p.substatus in REFUNDED:
            if p.refunded_minor is None:
                full = p.substatus != "partially_refunded"
                p.refunded_minor = p.subtotal_minor if full else max(1, p.subtotal_minor // 2)
            p.refunded_at = p.refunded_at or now
        else:
            p.refunded_minor = values.get("refunded_amount")
            p.refunded_at = values.get("refunded_at")

    def create_payment(self, fields: dict[str, Any]) -> Change:
        values = parse_fields(fields, PAYMENT_CREATE)
        with self.store.lock:
            membership = None
            if "membership_id" in values:
                membership = self.ds.get("memberships", values["membership_id"])
                if membership is None:
                    raise bad_param(
                        "membership_id", f"Unknown membership `{values['membership_id']}`"
                    )
                member_id = membership.member_id
                plan = self._plan(values) or self.ds.get("plans", membership.plan_id)
            elif "member_id" in values:
                if self.ds.get("members", values["member_id"]) is None:
                    raise bad_param("member_id", f"Unknown member `{values['member_id']}`")
                member_id = values["member_id"]
                plan = self._plan(values) or next(
                    p for p in self.ds.plans if p.plan_type == "one_time"
                )
            else:
                raise bad_param(
                    "membership_id", "Give `membership_id` or `member_id`", "parameter_missing"
                )
            reason = values.pop("billing_reason", None) or self._billing_reason(membership, plan)
            created = values.pop("created_at", None) or self.store.next_updated_at()
            amount = values.pop("amount", None)
            if amount is not None:
                minor = self._minor(amount, plan.currency, "amount")
            else:
                minor = charge_minor(plan, reason)
            for name in ("membership_id", "member_id", "plan_id", "product_id"):
                values.pop(name, None)
            if "status" not in values and "substatus" not in values:
                values["status"] = "paid"
            payment = Payment(
                id=self._new_id("pay_", "payments"),
                membership_id=membership.id if membership else None,
                member_id=member_id,
                product_id=plan.product_id,
                plan_id=plan.id,
                currency=plan.currency,
                subtotal_minor=minor,
                billing_reason=reason,
                status="draft",
                substatus="drafted",
                created_at=created,
                updated_at=created,
            )
            self._apply_payment(payment, values, created)
            self.store.add("payments", payment)
            return Change(
                "payments", payment, None, render(self.ds, "payments", payment, detail=True)
            )

    def _billing_reason(self, membership: Membership | None, plan: Any) -> str:
        if membership is None or plan.plan_type == "one_time":
            return "one_time"
        paid_before = any(p.membership_id == membership.id for p in self.ds.payments)
        return "subscription_cycle" if paid_before else "subscription_create"


def _membership_action(ms: Membership, now: int) -> tuple[str | None, int | None]:
    status = ms.status
    if status == "canceled":
        return "canceled_on", ms.canceled_at
    if status == "expired":
        return "ending_on", ms.expires_at
    if ms.cancel_at_period_end or status == "canceling":
        return "canceling_on", ms.current_period_end
    if status == "trialing":
        return "trial_ends_at", ms.current_period_end
    if status == "past_due":
        return "past_due", now
    if status == "unresolved":
        return "unresolved_at", now
    if status == "active":
        return "renewing_on", ms.current_period_end
    return None, None


__all__ = ["REFUNDED", "Change", "Controller"]

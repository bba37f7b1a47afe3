"""Query parameters of the list endpoints → ``ListRequest`` (filters, order, window, paging).

Rules shared by every list (decisions where the reference is silent are marked):
- Array parameters repeat the key (``statuses=a&statuses=b``); the ``statuses[]=`` spelling is also
  accepted. Unknown parameters are ignored; unknown enum values are a 400 naming the parameter.
- ``created_after`` / ``created_before`` take ISO 8601 (``Z``, offsets, or a bare date = midnight UTC;
  naive times are UTC). **Both bounds are exclusive** (decision): ``created_at > after`` and
  ``created_at < before``. Clients should overlap windows and dedupe by id anyway.
- ``order`` + ``direction``: default ``created_at`` descending (newest first) everywhere.
- ``account_id`` of another account gives zero rows, not an error.
- Memberships: ``status``/``statuses`` are combined (union). ``active``, ``trialing``, ``past_due``
  exclude memberships set to cancel at period end; ``canceling`` matches them; ``expiring``,
  ``one_time`` and ``unclaimed`` are derived from the variant and the buyer; ``paused`` and ``banned``
  match nothing (the dataset has no paused or banned memberships).
- Products without ``account_id`` search the public marketplace, where this account's products are
  not listed (``marketplace_status: not_available``): zero rows. Variants need ``account_id`` unless
  ``product_ids`` is given (a public read of visible variants).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from whop_pipeline.sandbox.dataset import VALID_STATUSES, Member, Membership, WhopDataset
from whop_pipeline.sandbox.whop.errors import bad_param
from whop_pipeline.sandbox.whop.money import list_price_minor, major_float
from whop_pipeline.sandbox.whop.store import SORT_KEYS, ListRequest

Predicate = Callable[[Any], bool]
MEMBERSHIP_FILTERS = (
    "active", "trialing", "past_due", "completed", "canceled", "expired",
    "canceling", "paused", "expiring", "one_time", "unclaimed", "banned",
)  # fmt: skip
PAYMENT_STATUSES = ("open", "authorized", "paid", "pending", "uncollectible", "unresolved", "void")
BILLING_REASONS = (
    "subscription_create", "subscription_cycle", "subscription_update", "one_time", "manual", "subscription",
)  # fmt: skip
MEMBER_ACTIONS = (
    "canceling", "churned", "finished_split_pay", "paused", "paid_subscriber", "paid_once", "expiring",
    "joined", "left", "trialing", "pending_entry", "renewing", "past_due",
)  # fmt: skip


class Params:
    """Typed access to a request's query parameters (a mapping of name → list of values)."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    def one(self, name: str) -> str | None:
        found = self.values.get(name) or self.values.get(f"{name}[]")
        return found[-1] if found else None

    def many(self, name: str) -> list[str]:
        return [*self.values.get(name, []), *self.values.get(f"{name}[]", [])]

    def enum(self, name: str, allowed: tuple[str, ...] | Any) -> str | None:
        value = self.one(name)
        if value is not None and value not in allowed:
            raise bad_param(name, f"`{name}` must be one of: {', '.join(allowed)}")
        return value

    def enums(self, name: str, allowed: tuple[str, ...]) -> list[str]:
        values = self.many(name)
        for value in values:
            if value not in allowed:
                raise bad_param(name, f"`{name}` values must be among: {', '.join(allowed)}")
        return values

    def integer(self, name: str) -> int | None:
        value = self.one(name)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError as exc:
            raise bad_param(name, f"`{name}` must be an integer") from exc
        if number < 0:
            raise bad_param(name, f"`{name}` must not be negative")
        return number

    def number(self, name: str) -> float | None:
        value = self.one(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError as exc:
            raise bad_param(name, f"`{name}` must be a number") from exc

    def timestamp_us(self, name: str) -> int | None:
        value = self.one(name)
        if value is None:
            return None
        return parse_timestamp_us(value, name)


def parse_timestamp_us(value: str, name: str) -> int:
    """ISO 8601 → microseconds since the epoch (naive = UTC)."""
    for candidate in (value, _restore_plus(value)):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise bad_param(name, f"`{name}` must be an ISO 8601 timestamp")


def _restore_plus(value: str) -> str:
    # An unencoded "+00:00" offset arrives as " 00:00" after form decoding.
    head, sep, tail = value.rpartition(" ")
    return f"{head}+{tail}" if sep and ":" in tail else value


def _paging(params: Params, req: ListRequest) -> ListRequest:
    req.first, req.last = params.integer("first"), params.integer("last")
    req.after, req.before = params.one("after"), params.one("before")
    after_us, before_us = (
        params.timestamp_us("created_after"),
        params.timestamp_us("created_before"),
    )
    # Exclusive bounds on integer-millisecond created_at values.
    req.created_after_ms = None if after_us is None else after_us // 1000
    req.created_before_ms = None if before_us is None else math.ceil(before_us / 1000)
    if req.order != "created_at" and (after_us is not None or before_us is not None):
        lo, hi = req.created_after_ms, req.created_before_ms
        _also(
            req, lambda r: (lo is None or r.created_at > lo) and (hi is None or r.created_at < hi)
        )
    return req


def _also(req: ListRequest, predicate: Predicate) -> None:
    previous = req.predicate
    req.predicate = predicate if previous is None else (lambda r: previous(r) and predicate(r))


def _ordered(params: Params, kind: str) -> ListRequest:
    order = params.enum("order", tuple(SORT_KEYS[kind])) or "created_at"
    direction = params.enum("direction", ("asc", "desc")) or "desc"
    return ListRequest(kind=kind, order=order, descending=direction == "desc")


def _exact(req: ListRequest, params: Params, name: str, attribute: str) -> None:
    value = params.one(name)
    if value is not None:
        _also(req, lambda r: getattr(r, attribute) == value)


def _among(req: ListRequest, params: Params, name: str, attribute: str) -> None:
    values = set(params.many(name))
    if values:
        _also(req, lambda r: getattr(r, attribute) in values)


def membership_matches(ds: WhopDataset, ms: Membership, bucket: str) -> bool:
    if bucket in ("active", "trialing", "past_due"):
        return ms.status == bucket and not ms.cancel_at_period_end
    if bucket in ("completed", "canceled", "expired"):
        return ms.status == bucket
    if bucket == "canceling":
        return ms.cancel_at_period_end or ms.status == "canceling"
    if bucket in ("expiring", "one_time"):
        plan = ds.get("plans", ms.plan_id)
        if plan.plan_type != "one_time" or ms.status == "expired":
            return False
        return (ms.expires_at is not None) == (bucket == "expiring")
    if bucket == "unclaimed":
        return ms.user_id is None
    return False  # paused, banned: none in the dataset


def memberships_request(ds: WhopDataset, params: Params) -> ListRequest:
    req = _ordered(params, "memberships")
    buckets = set(params.enums("statuses", MEMBERSHIP_FILTERS))
    single = params.enum("status", MEMBERSHIP_FILTERS)
    if single:
        buckets.add(single)
    if buckets:
        _also(req, lambda ms: any(membership_matches(ds, ms, b) for b in buckets))
    user_id = params.one("user_id")
    if user_id is not None:
        # An account API key has no user of its own, so "me" owns no memberships here.
        _also(req, lambda ms: ms.user_id == user_id)
    _exact(req, params, "member_id", "member_id")
    _exact(req, params, "product_id", "product_id")
    _among(req, params, "product_ids", "product_id")
    _exact(req, params, "plan_id", "plan_id")
    _among(req, params, "plan_ids", "plan_id")
    if params.many("promo_code_ids"):
        _also(req, lambda ms: False)  # no promo codes in the dataset
    return _paging(params, req)


def payments_request(ds: WhopDataset, params: Params) -> ListRequest:
    req = _ordered(params, "payments")
    if params.enum("mode", ("account_sales", "user_sales")) == "user_sales":
        raise bad_param(
            "mode", "`user_sales` needs the signed-in user's own session, not an API key"
        )
    status = params.enum("status", PAYMENT_STATUSES)
    if status:
        _also(req, lambda p: p.status == status)
    reason = params.enum("billing_reason", BILLING_REASONS)
    if reason:
        reasons = (
            {"subscription_cycle", "subscription_update"}
            if reason == "subscription_cycle"
            else {reason}
        )
        _also(req, lambda p: p.billing_reason in reasons)
    currency = params.one("currency")
    if currency:
        _also(req, lambda p: p.currency == currency.lower())
    user_id = params.one("user_id")
    if user_id == "me":
        raise bad_param(
            "user_id", "`me` is not accepted here; list your purchases with /memberships"
        )
    if user_id is not None:
        _also(req, lambda p: ds.get("members", p.member_id).user_id == user_id)
    for name in ("member_id", "membership_id", "product_id", "plan_id"):
        _exact(req, params, name, name)
    text = (params.one("query") or "").strip().lower()
    if text:
        # Matches a membership id, a user id, an exact email, or part of a name or username.
        def matches(p: Any) -> bool:
            if p.membership_id and p.membership_id.lower() == text:
                return True
            return _member_text_match(ds.get("members", p.member_id), text)

        _also(req, matches)
    return _paging(params, req)


def _member_text_match(member: Member, text: str) -> bool:
    if member.email and member.email.lower() == text:
        return True
    if member.user_id and member.user_id.lower() == text:
        return True
    haystack = " ".join(filter(None, (member.name, member.username, member.display_name))).lower()
    return text in haystack


def members_request(ds: WhopDataset, params: Params) -> ListRequest:
    req = _ordered(params, "members")
    access = params.enum("access_level", ("no_access", "admin", "customer"))
    if access:
        _also(req, lambda m: m.access_level == access)
    status = params.enum("status", ("joined", "left"))
    if status:
        _also(req, lambda m: m.status == status)
    _among(req, params, "user_ids", "user_id")
    actions = set(params.enums("most_recent_actions", MEMBER_ACTIONS))
    if actions:
        _also(req, lambda m: m.most_recent_action in actions)
    held = _members_holding(ds, params)
    if held is not None:
        _also(req, lambda m: m.id in held)
    text = (params.one("query") or "").strip().lower()
    if text:
        _also(req, lambda m: _member_text_match(m, text))
    return _paging(params, req)


def _members_holding(ds: WhopDataset, params: Params) -> set[str] | None:
    """Members with one membership matching membership_status, product_ids, plan_ids and
    promo_code_ids together (``None`` when none of them is given)."""
    state = params.enum("membership_status", ("active", "inactive"))
    products, plans = set(params.many("product_ids")), set(params.many("plan_ids"))
    promos = params.many("promo_code_ids")
    if not (state or products or plans or promos):
        return None
    if promos:
        return set()
    return {
        ms.member_id
        for ms in ds.memberships
        if (not state or (ms.status in VALID_STATUSES) == (state == "active"))
        and (not products or ms.product_id in products)
        and (not plans or ms.plan_id in plans)
    }


def products_request(ds: WhopDataset, params: Params) -> ListRequest:
    req = _ordered(params, "products")
    if params.one("account_id") is None or params.one("marketplace_category_route"):
        _also(req, lambda p: False)  # the public marketplace lists none of this account's products
    visible_plans = [p for p in ds.plans if p.visibility == "visible"]
    plan_types = set(params.enums("plan_types", ("renewal", "one_time")))
    if plan_types:
        having = {p.product_id for p in visible_plans if p.plan_type in plan_types}
        _also(req, lambda p: p.id in having)
    _among(req, params, "visibilities", "visibility")
    types = set(params.many("access_pass_types"))
    if types:
        _also(req, lambda p: "regular" in types)
    if params.many("labels"):
        _also(req, lambda p: False)  # no product carries labels
    low, high = params.number("price_minimum"), params.number("price_maximum")
    if low is not None or high is not None:
        shown = {}
        for plan in reversed(visible_plans):  # the product's first visible variant is advertised
            shown[plan.product_id] = major_float(list_price_minor(plan), plan.currency)
        _also(
            req,
            lambda p: (
                p.id in shown
                and (low is None or shown[p.id] >= low)
                and (high is None or shown[p.id] <= high)
            ),
        )
    text = (params.one("query") or "").strip().lower()
    if text:
        _also(req, lambda p: text in f"{p.title} {p.headline} {p.description}".lower())
    return _paging(params, req)


def plans_request(ds: WhopDataset, params: Params) -> ListRequest:
    """``GET /variants`` and the deprecated ``GET /plans``."""
    req = _ordered(params, "plans")
    product_ids = set(params.many("product_ids"))
    if params.one("account_id") is None:
        if not product_ids:
            raise bad_param(
                "account_id",
                "`account_id` is required unless `product_ids` is given",
                "parameter_missing",
            )
        _also(req, lambda p: p.visibility == "visible")  # a public read
    if product_ids:
        _also(req, lambda p: p.product_id in product_ids)
    _among(req, params, "plan_types", "plan_type")
    _among(req, params, "visibilities", "visibility")
    methods = set(params.many("release_methods"))
    if methods:
        _also(req, lambda p: "buy_now" in methods)
    return _paging(params, req)


def account_mismatch(ds: WhopDataset, params: Params) -> bool:
    account = params.one("account_id")
    return account is not None and account != ds.account.id


LIST_REQUESTS = {
    "members": members_request,
    "memberships": memberships_request,
    "payments": payments_request,
    "products": products_request,
    "plans": plans_request,
    "variants": plans_request,
}
__all__ = [
    "LIST_REQUESTS",
    "Params",
    "account_mismatch",
    "membership_matches",
    "parse_timestamp_us",
]

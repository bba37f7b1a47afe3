"""The official whop-sdk against the emulator: everything it serves parses, ids match the dataset,
and pagination takes exactly ⌈n/first⌉ requests."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from whop_sdk.core.api_error import ApiError
from whop_sdk.errors.not_found_error import NotFoundError
from whop_sdk.errors.unauthorized_error import UnauthorizedError
from whop_sdk.types.member import Member
from whop_sdk.types.membership import Membership
from whop_sdk.types.payment import Payment
from whop_sdk.types.plan import Plan
from whop_sdk.types.plan_list_item import PlanListItem
from whop_sdk.types.product import Product
from whop_sdk.types.product_list_item import ProductListItem
from whop_sdk.types.variant import Variant
from whop_sdk.types.variant_list_item import VariantListItem

from whop_pipeline_tests.sandbox.whop_fixtures import (
    WhopEnv,
    start_whop,
    stop_whop,
    whop_env,
    whop_shape_problems,
)

pytestmark = pytest.mark.sandbox
__all__ = ["whop_env"]  # the fixture, imported for pytest

# resource path → (dataset kind, list-item model, retrieve model)
RESOURCES: dict[str, tuple[str, Any, Any]] = {
    "members": ("members", Member, Member),
    "memberships": ("memberships", Membership, Membership),
    "payments": ("payments", Payment, Payment),
    "products": ("products", ProductListItem, Product),
    "variants": ("plans", VariantListItem, Variant),
    "plans": ("plans", PlanListItem, Plan),
}


def _newest_first(env: WhopEnv, kind: str) -> list[str]:
    return [r.id for r in reversed(env.dataset.records(kind))]


def _calls(env: WhopEnv, resource: str) -> int:
    return env.stats()["requests"].get(f"GET /api/v1/{resource}", 0)


@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("first", [3, 10, 100])
def test_sdk_pager_sees_every_row_in_ceil_n_over_first_calls(
    whop_env: WhopEnv, resource: str, first: int
) -> None:
    kind = RESOURCES[resource][0]
    expected = _newest_first(whop_env, kind)
    whop_env.emulator.reset()
    client = getattr(whop_env.sdk(max_retries=0), resource)
    seen = [item.id for item in client.list(account_id=whop_env.dataset.account.id, first=first)]
    assert seen == expected  # created_at descending is every list's default order
    # end_cursor is null on the last page, so even the SDK pager makes no extra request.
    assert _calls(whop_env, resource) == math.ceil(len(expected) / first)


@pytest.mark.parametrize("resource", ["members", "memberships", "payments", "variants"])
@pytest.mark.parametrize("first", [1, 7, 10, 33, 100])
def test_hand_written_loop_stops_on_has_next_page(
    whop_env: WhopEnv, resource: str, first: int
) -> None:
    n = len(whop_env.dataset.records(RESOURCES[resource][0]))
    whop_env.emulator.reset()
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        params = {
            "account_id": whop_env.dataset.account.id,
            "first": first,
            **({"after": after} if after else {}),
        }
        body = whop_env.get(f"/{resource}", params).json()
        pages.append(body)
        if not body["page_info"]["has_next_page"]:
            break
        after = body["page_info"]["end_cursor"]
    assert len(pages) == math.ceil(n / first) == _calls(whop_env, resource)
    assert sum(len(p["data"]) for p in pages) == n
    assert all(len(p["data"]) == first for p in pages[:-1])
    last = pages[-1]["page_info"]
    assert last["has_next_page"] is False and last["end_cursor"] is None
    assert last["has_previous_page"] is (len(pages) > 1)
    assert pages[0]["page_info"]["has_previous_page"] is False


def test_relay_cursor_on_last_page_costs_the_sdk_one_extra_call() -> None:
    env = start_whop(end_cursor_on_last_page=True)
    try:
        n = len(env.dataset.memberships)
        items = list(env.sdk().memberships.list(account_id=env.dataset.account.id, first=10))
        assert len(items) == n
        assert _calls(env, "memberships") == math.ceil(n / 10) + 1
        env.emulator.reset()
        assert len(env.list_all("memberships", first=10)) == n
        assert _calls(env, "memberships") == math.ceil(n / 10)
    finally:
        stop_whop(env)


@pytest.mark.parametrize("resource", list(RESOURCES))
def test_every_served_object_has_exactly_the_sdk_fields(whop_env: WhopEnv, resource: str) -> None:
    kind, list_model, retrieve_model = RESOURCES[resource]
    rows = whop_env.list_all(resource)
    assert len(rows) == len(whop_env.dataset.records(kind))
    problems: list[str] = []
    for row in rows:
        list_model.model_validate(row)
        problems += whop_shape_problems(list_model, row, f"{resource}[{row['id']}]")
        one = whop_env.get(f"/{resource}/{row['id']}").json()
        retrieve_model.model_validate(one)
        problems += whop_shape_problems(retrieve_model, one, f"{resource}/{row['id']}")
    assert problems == []


def test_sdk_retrieves_parse(whop_env: WhopEnv) -> None:
    ds = whop_env.dataset
    client = whop_env.sdk(max_retries=0)
    for ms in ds.memberships[:10]:
        assert client.memberships.retrieve(ms.id).id == ms.id
    for payment in ds.payments[::10]:
        got = client.payments.retrieve(payment.id)
        assert (got.id, got.membership_id, got.member_id) == (
            payment.id,
            payment.membership_id,
            payment.member_id,
        )
    for member in ds.members[::5]:
        assert client.members.retrieve(member.id).email == member.email
    for product in ds.products:
        got = client.products.retrieve(product.id)
        assert {v.id for v in got.variants or []} == {
            p.id for p in ds.plans if p.product_id == product.id
        }
    for plan in ds.plans:
        assert client.variants.retrieve(plan.id).id == client.plans.retrieve(plan.id).id == plan.id


def test_list_only_nulls_are_filled_on_retrieve(whop_env: WhopEnv) -> None:
    paid = next(p for p in whop_env.dataset.payments if p.status == "paid")
    listed = next(r for r in whop_env.list_all("payments", status="paid") if r["id"] == paid.id)
    retrieved = whop_env.get(f"/payments/{paid.id}").json()
    assert listed["settlement_time_at"] is None and retrieved["settlement_time_at"] is not None
    failed = next(p for p in whop_env.dataset.payments if p.status == "open")
    assert whop_env.get(f"/payments/{failed.id}").json()["recovery_url"]
    assert all(
        r["client_secret"] is None and r["recovery_url"] is None
        for r in whop_env.list_all("payments")
    )


def test_sdk_raises_typed_errors(whop_env: WhopEnv) -> None:
    client = whop_env.sdk(max_retries=0)
    with pytest.raises(NotFoundError) as missing:
        client.memberships.retrieve("mem_doesnotexist000")
    assert missing.value.body["error"]["type"] == "not_found"
    bad = whop_env.sdk(max_retries=0, token="wrong-key")
    with pytest.raises(UnauthorizedError):
        bad.memberships.list(account_id=whop_env.dataset.account.id)
    with pytest.raises(ApiError) as payments_401:
        bad.payments.list(account_id=whop_env.dataset.account.id)
    assert payments_401.value.status_code == 401


def test_sdk_payment_datetime_filters_are_understood(whop_env: WhopEnv) -> None:
    payments = whop_env.dataset.payments
    low, high = payments[20].created_at, payments[60].created_at
    client = whop_env.sdk(max_retries=0)
    got = client.payments.list(
        account_id=whop_env.dataset.account.id,
        created_after=datetime.fromtimestamp(low / 1000, UTC),
        created_before=datetime.fromtimestamp(high / 1000, UTC),
        first=100,
    )
    expected = {p.id for p in payments if low < p.created_at < high}
    assert {p.id for p in got} == expected and len(expected) >= 30


def test_changed_and_created_members_still_parse() -> None:
    """The SDK's ``Member`` parses members changed through ``/_sandbox/members/{id}`` (cleared
    name and email included) and members created with a new membership, list and retrieve."""
    env = start_whop()
    try:
        member = next(m for m in env.dataset.members if m.user_id and m.name and m.email)
        env.control(
            "POST",
            f"/members/{member.id}",
            json={"name": None, "email": None, "username": "renamed_user"},
        )
        created = env.emulator.create_membership(email="sdk.check@example.com", name=None)
        client = env.sdk(max_retries=0)
        renamed = client.members.retrieve(member.id)
        assert renamed.user is not None and renamed.user.username == "renamed_user"
        assert (renamed.display_name, renamed.email, renamed.user.name) == (
            "renamed_user",
            None,
            None,
        )
        assert client.members.retrieve(created["member_id"]).email == "sdk.check@example.com"
        listed = list(client.members.list(account_id=env.dataset.account.id, first=100))
        assert {member.id, created["member_id"]} <= {m.id for m in listed}
        problems: list[str] = []
        for row in env.list_all("members"):
            problems += whop_shape_problems(Member, row, f"members[{row['id']}]")
        assert problems == []
    finally:
        stop_whop(env)

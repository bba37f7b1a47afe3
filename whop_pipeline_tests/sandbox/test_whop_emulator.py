"""The emulator's REST behaviour: filters, ordering, windows, paging both ways, auth, errors,
faults and request stats. Expected results are computed from the dataset's records directly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from whop_pipeline.sandbox.dataset import VALID_STATUSES, iso
from whop_pipeline.sandbox.whop.store import encode_cursor
from whop_pipeline_tests.sandbox.whop_fixtures import (
    WHOP_TLS,
    WhopEnv,
    start_whop,
    stop_whop,
    whop_env,
)

pytestmark = pytest.mark.sandbox
__all__ = ["whop_env"]  # the fixture, imported for pytest


def _ids(env: WhopEnv, resource: str, **params: object) -> list[str]:
    return [row["id"] for row in env.list_all(resource, **params)]


def test_created_window_bounds_are_exclusive(whop_env: WhopEnv) -> None:
    payments = whop_env.dataset.payments
    low, high = payments[10].created_at, payments[40].created_at
    got = _ids(
        whop_env, "payments", created_after=iso(low), created_before=iso(high), direction="asc"
    )
    assert got == [p.id for p in payments if low < p.created_at < high]
    assert payments[10].id not in got and payments[40].id not in got
    # A bound between two rows, with an offset and microseconds, lands on the right side.
    mid = datetime.fromtimestamp((payments[10].created_at + 0.5) / 1000, UTC).isoformat()
    assert _ids(whop_env, "payments", created_after=mid, direction="asc")[0] == payments[11].id
    day = _ids(
        whop_env,
        "memberships",
        created_after="2025-03-01",
        created_before="2025-04-01T00:00:00+00:00",
    )
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    expected = {
        m.id
        for m in whop_env.dataset.memberships
        if start.timestamp() * 1000 < m.created_at < end.timestamp() * 1000
    }
    assert set(day) == expected


def test_windows_also_apply_with_another_order(whop_env: WhopEnv) -> None:
    payments = whop_env.dataset.payments
    low = payments[50].created_at
    got = _ids(whop_env, "payments", created_after=iso(low), order="paid_at")
    assert set(got) == {p.id for p in payments if p.created_at > low}


def test_default_order_is_newest_first_and_direction_flips_it(whop_env: WhopEnv) -> None:
    for resource, kind in (
        ("payments", "payments"),
        ("memberships", "memberships"),
        ("members", "members"),
    ):
        records = whop_env.dataset.records(kind)
        assert _ids(whop_env, resource) == [r.id for r in reversed(records)]
        assert _ids(whop_env, resource, order="created_at", direction="asc") == [
            r.id for r in records
        ]


def test_paid_at_order_puts_unpaid_last_when_descending(whop_env: WhopEnv) -> None:
    rows = whop_env.list_all("payments", order="paid_at", first=17)
    paid = [r["paid_at"] for r in rows if r["paid_at"]]
    assert paid == sorted(paid, reverse=True)
    first_unpaid = next(i for i, r in enumerate(rows) if r["paid_at"] is None)
    assert all(r["paid_at"] is None for r in rows[first_unpaid:])
    assert len(rows) == len(whop_env.dataset.payments)


def test_members_order_by_spend(whop_env: WhopEnv) -> None:
    rows = whop_env.list_all("members", order="usd_total_spent", direction="asc", first=9)
    spent = [float(r["usd_total_spent"]["amount"]) for r in rows]
    assert spent == sorted(spent) and len(rows) == len(whop_env.dataset.members)


def test_membership_status_filters(whop_env: WhopEnv) -> None:
    memberships = whop_env.dataset.memberships
    active = _ids(whop_env, "memberships", statuses="active")
    assert set(active) == {
        m.id for m in memberships if m.status == "active" and not m.cancel_at_period_end
    }
    canceling = _ids(whop_env, "memberships", status="canceling")
    assert set(canceling) == {m.id for m in memberships if m.cancel_at_period_end}
    assert any(m.status == "active" for m in memberships if m.id in canceling)
    both = _ids(whop_env, "memberships", **{"statuses[]": ["canceled", "expired"]})
    assert set(both) == {m.id for m in memberships if m.status in ("canceled", "expired")}
    union = whop_env.get(
        "/memberships", [("status", "completed"), ("statuses", "past_due"), ("first", 100)]
    )
    expected = {
        m.id
        for m in memberships
        if m.status == "completed" or (m.status == "past_due" and not m.cancel_at_period_end)
    }
    assert {r["id"] for r in union.json()["data"]} == expected
    unclaimed = _ids(whop_env, "memberships", status="unclaimed")
    assert unclaimed and set(unclaimed) == {m.id for m in memberships if m.user_id is None}
    assert _ids(whop_env, "memberships", status="paused") == []


def test_membership_link_filters(whop_env: WhopEnv) -> None:
    ds = whop_env.dataset
    member = ds.memberships[3].member_id
    assert set(_ids(whop_env, "memberships", member_id=member)) == {
        m.id for m in ds.memberships if m.member_id == member
    }
    products = [ds.products[0].id, ds.products[2].id]
    got = whop_env.get(
        "/memberships", [("product_ids", products[0]), ("product_ids", products[1]), ("first", 100)]
    )
    assert {r["id"] for r in got.json()["data"]} == {
        m.id for m in ds.memberships if m.product_id in products
    }


def test_payment_filters(whop_env: WhopEnv) -> None:
    payments = whop_env.dataset.payments
    assert set(_ids(whop_env, "payments", status="open")) == {
        p.id for p in payments if p.status == "open"
    }
    cycle = _ids(whop_env, "payments", billing_reason="subscription_cycle")
    assert set(cycle) == {
        p.id for p in payments if p.billing_reason in ("subscription_cycle", "subscription_update")
    }
    assert set(_ids(whop_env, "payments", currency="JPY")) == {
        p.id for p in payments if p.currency == "jpy"
    }
    one = payments[30]
    assert set(_ids(whop_env, "payments", member_id=one.member_id, product_id=one.product_id)) == {
        p.id for p in payments if p.member_id == one.member_id and p.product_id == one.product_id
    }
    if one.membership_id:
        assert one.id in _ids(whop_env, "payments", membership_id=one.membership_id)
        by_membership = _ids(whop_env, "payments", query=one.membership_id)
        assert set(by_membership) == {
            p.id for p in payments if p.membership_id == one.membership_id
        }
    member = next(m for m in whop_env.dataset.members if m.email)
    by_email = _ids(whop_env, "payments", query=member.email.upper())
    assert set(by_email) == {p.id for p in payments if p.member_id == member.id}


def test_member_filters(whop_env: WhopEnv) -> None:
    members = whop_env.dataset.members
    users = [m.user_id for m in members if m.user_id][:3]
    got = whop_env.get("/members", [("user_ids", u) for u in users] + [("first", 100)]).json()[
        "data"
    ]
    assert {r["user"]["id"] for r in got} == set(users)
    assert set(_ids(whop_env, "members", status="left")) == {
        m.id for m in members if m.status == "left"
    }
    assert set(_ids(whop_env, "members", access_level="customer")) == {
        m.id for m in members if m.access_level == "customer"
    }
    valid = {ms.member_id for ms in whop_env.dataset.memberships if ms.status in VALID_STATUSES}
    assert set(_ids(whop_env, "members", membership_status="active")) == valid
    assert _ids(whop_env, "members", query="李小龙") == [
        m.id for m in members if m.name == "李小龙"
    ]


def test_catalog_lists(whop_env: WhopEnv) -> None:
    ds = whop_env.dataset
    assert set(_ids(whop_env, "products")) == {p.id for p in ds.products}
    assert whop_env.get("/products").json()["data"] == []  # no account_id: the public marketplace
    missing = whop_env.get("/variants")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "account_id"
    product = ds.products[3].id
    public = whop_env.get("/variants", {"product_ids": product}).json()["data"]
    assert {v["id"] for v in public} == {
        p.id for p in ds.plans if p.product_id == product and p.visibility == "visible"
    }
    one_time = _ids(whop_env, "plans", plan_types="one_time")
    assert set(one_time) == {p.id for p in ds.plans if p.plan_type == "one_time"}


def test_another_account_sees_nothing(whop_env: WhopEnv) -> None:
    for resource in ("members", "memberships", "payments", "products", "variants"):
        body = whop_env.get(f"/{resource}", {"account_id": "biz_SomeoneElse0000"}).json()
        assert body == {
            "data": [],
            "page_info": {
                "end_cursor": None,
                "start_cursor": None,
                "has_next_page": False,
                "has_previous_page": False,
            },
        }


def test_backward_paging_mirrors_forward(whop_env: WhopEnv) -> None:
    forward = _ids(whop_env, "memberships", first=5)
    backward: list[str] = []
    before = None
    while True:
        params = {"last": 5, **({"before": before} if before else {})}
        body = whop_env.get("/memberships", params).json()
        backward = [r["id"] for r in body["data"]] + backward
        if not body["page_info"]["has_previous_page"]:
            assert body["page_info"]["start_cursor"] is None
            break
        before = body["page_info"]["start_cursor"]
    assert backward == forward
    # Cursors from a forward page walk back to the rows before it.
    page2 = whop_env.get(
        "/memberships",
        {
            "first": 5,
            "after": whop_env.get("/memberships", {"first": 5}).json()["page_info"]["end_cursor"],
        },
    ).json()
    back = whop_env.get(
        "/memberships", {"last": 5, "before": page2["page_info"]["start_cursor"]}
    ).json()
    assert [r["id"] for r in back["data"]] == forward[:5] and back["page_info"][
        "has_next_page"
    ] is True


def test_page_size_default_and_cap(whop_env: WhopEnv) -> None:
    assert len(whop_env.get("/payments").json()["data"]) == 10
    capped = whop_env.get("/payments", {"first": 500}).json()
    assert len(capped["data"]) == 100 and capped["page_info"]["has_next_page"] is False
    empty = whop_env.get("/payments", {"first": 0}).json()
    assert empty["data"] == [] and empty["page_info"]["has_next_page"] is True


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/payments", {"first": "-1"}, "first"),
        ("/payments", {"first": "ten"}, "first"),
        ("/payments", {"first": 5, "last": 5}, "last"),
        ("/payments", {"order": "amount"}, "order"),
        ("/payments", {"direction": "up"}, "direction"),
        ("/payments", {"status": "draft"}, "status"),
        ("/payments", {"created_after": "yesterday"}, "created_after"),
        ("/payments", {"after": "not-a-cursor"}, "after"),
        ("/memberships", {"statuses": "drafted"}, "statuses"),
        ("/memberships", {"after": encode_cursor("id", (1, "x", "x"))}, "after"),  # another order's
        ("/members", {"access_level": "owner"}, "access_level"),
    ],
)
def test_bad_parameters_are_400_with_the_whop_error_body(
    whop_env: WhopEnv, path: str, params: dict, param: str
) -> None:
    response = whop_env.get(path, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"type", "message", "code", "param"}
    assert (error["type"], error["param"]) == ("bad_request", param) and error["message"]


def test_auth_and_not_found(whop_env: WhopEnv) -> None:
    url = f"{whop_env.base}/memberships"
    bare = httpx.Client(verify=WHOP_TLS)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        response = bare.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
        assert set(response.json()["error"]) == {"type", "message", "code", "param"}
    product = whop_env.dataset.products[0].id
    assert bare.get(f"{whop_env.base}/products/{product}").status_code == 200  # public read
    wrong = bare.get(f"{whop_env.base}/products/{product}", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    bare.close()
    missing = whop_env.get("/payments/pay_missing0000000")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    assert whop_env.get("/refunds").status_code == 404


def test_stats_count_api_calls_only(whop_env: WhopEnv) -> None:
    whop_env.emulator.reset()
    member = whop_env.dataset.members[0].id
    whop_env.get("/members", {"first": 2})
    whop_env.get(f"/members/{member}")
    whop_env.get("/members/mber_missing000000")
    whop_env.control("GET", "/webhooks")
    whop_env.control("GET", "/dump")
    stats = whop_env.stats()
    assert stats["requests"] == {
        "GET /api/v1/members": 1,
        f"GET /api/v1/members/{member}": 1,
        "GET /api/v1/members/mber_missing000000": 1,
    }
    assert stats["total"] == 3 and stats["faults"] == 0
    assert [r["status"] for r in stats["recent"]] == [200, 200, 404]
    assert stats["recent"][0]["query"] == "first=2"


def test_injected_faults_look_like_whop_and_are_counted() -> None:
    env = start_whop(fault_rate=0.6, fault_seed=7, retry_after_seconds=2)
    try:
        seen: dict[str, int] = {"ok": 0, "500": 0, "429": 0, "drop": 0}
        with httpx.Client(headers=env.http.headers, verify=WHOP_TLS) as client:
            for _ in range(60):
                try:
                    response = client.get(f"{env.base}/payments", params={"first": 1})
                except httpx.HTTPError:
                    seen["drop"] += 1
                    continue
                if response.status_code == 200:
                    seen["ok"] += 1
                    continue
                seen[str(response.status_code)] += 1
                error = response.json()["error"]
                assert error["type"] in ("internal_server_error", "too_many_requests")
                if response.status_code == 429:
                    assert response.headers["retry-after"] == "2"
        assert all(seen[k] > 0 for k in seen), seen
        stats = env.stats()  # control routes are never faulted
        assert stats["faults"] == seen["500"] + seen["429"] + seen["drop"]
        assert stats["throttled"] == seen["429"] and stats["total"] == 60
        assert env.control("POST", "/reset").status_code == 200
    finally:
        stop_whop(env)


def test_latency_is_injected() -> None:
    env = start_whop(latency_ms=80)
    try:
        assert env.emulator.faults.sleep is asyncio.sleep  # the real delay, unless replaced
        delays: list[float] = []

        async def record_sleep(seconds: float) -> None:
            delays.append(seconds)

        env.emulator.faults.sleep = record_sleep
        response = env.get("/products", {"account_id": env.dataset.account.id})
        assert response.status_code == 200 and delays == [0.08]
        assert env.control("GET", "/dump").status_code == 200
        assert delays == [0.08]  # control routes: no latency
    finally:
        stop_whop(env)

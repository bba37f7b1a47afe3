"""Customer facts as of a moment: no feature reads the future, money is exact, labels are the window."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from whop_pipeline.crm import mapping as crm_mapping
from whop_pipeline.health import facts
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import upsert_raw
from whop_pipeline.whop.mirror import to_raw_record
from whop_pipeline.whop.models import Membership, Payment, Plan, parse_object

AS_OF = "2025-03-01T00:00:00Z"
D = Decimal


def money(amount: str, currency: str = "usd") -> dict:
    return {"amount": amount, "currency": currency, "decimals": 0 if currency == "jpy" else 2}


def plan(id_, *, period=30, plan_type="renewal", trial=None):
    return {
        "id": id_,
        "plan_type": plan_type,
        "billing_period": None if plan_type == "one_time" else float(period),
        "trial_period_days": trial,
    }


PLANS = [
    plan("plan_month"),
    plan("plan_year", period=365),
    plan("plan_week", period=7),
    plan("plan_trial", trial=7.0),
    plan("plan_once", plan_type="one_time"),
]


def membership(
    id_,
    created,
    *,
    user="user_a",
    plan_id="plan_month",
    price="49.00",
    cur="usd",
    status="active",
    updated=None,
    canceled_at=None,
    period_end=None,
    expires_at=None,
    cape=False,
):
    one_time = plan_id == "plan_once"
    period = {"plan_year": 365, "plan_week": 7}.get(plan_id, 30)
    return {
        "id": id_,
        "status": status,
        "created_at": created,
        "updated_at": updated or created,
        "user_id": user,
        "member_id": f"mber_{user}",
        "plan_id": plan_id,
        "renewal_price": None if one_time else money(price, cur),
        "billing_period_days": None if one_time else period,
        "cancel_at_period_end": cape,
        "canceled_at": canceled_at,
        "current_period_end": period_end,
        "expires_at": expires_at,
    }


def payment(
    id_,
    created,
    amount="49.00",
    *,
    cur="usd",
    usd=None,
    user="user_a",
    mem="mem_1",
    substatus="succeeded",
    paid_at=None,
    refunded=None,
    refunded_at=None,
):
    failed = substatus == "failed"
    pending = substatus == "pending"
    return {
        "id": id_,
        "status": "uncollectible" if failed else "pending" if pending else "paid",
        "substatus": substatus,
        "created_at": created,
        "updated_at": refunded_at or paid_at or created,
        "paid_at": None if failed or pending else (paid_at or created),
        "last_payment_attempt_at": created,
        "refunded_at": refunded_at,
        "membership_id": mem,
        "member_id": f"mber_{user}",
        "user": {"id": user},
        "currency": cur,
        "total": money(amount, cur),
        "usd_total": money(usd or amount),
        "refunded_amount": money(refunded, cur) if refunded else None,
    }


def compute(memberships, payments, as_of=AS_OF, plans=PLANS):
    frames = (
        facts.memberships_frame(memberships),
        facts.payments_frame(payments),
        facts.plans_frame(plans),
    )
    return facts.membership_facts(*frames, as_of), facts.person_facts(*frames, as_of)


def with_id(payload, **changes):
    return {**payload, **changes}


# What was known at AS_OF: two people, monthly, yearly and weekly memberships.
M1 = membership("mem_1", "2025-01-01T00:00:00Z")
M2 = membership("mem_2", "2025-01-10T00:00:00Z", user="user_b", plan_id="plan_year", price="490.00")
M3 = membership("mem_3", "2025-02-01T00:00:00Z", user="user_b", plan_id="plan_week", price="9.00")
HISTORY_MEMBERSHIPS = [M1, M2, M3]
P_LATE = payment("pay_5", "2025-02-28T23:00:00Z", substatus="pending")
HISTORY_PAYMENTS = [
    payment("pay_1", "2025-01-01T00:00:00Z"),
    payment("pay_2", "2025-01-31T00:00:00Z"),
    payment("pay_3", "2025-02-20T00:00:00Z", substatus="failed"),
    payment("pay_4", "2025-01-10T00:00:00Z", "490.00", user="user_b", mem="mem_2"),
    payment("pay_6", "2025-02-01T00:00:00Z", "9.00", user="user_b", mem="mem_3"),
    P_LATE,
]


@pytest.mark.unit
def test_no_fact_reads_the_future():
    before = compute(HISTORY_MEMBERSHIPS, HISTORY_PAYMENTS)
    later = [
        # the pending charge is paid after AS_OF, the first one refunded, the second partly
        with_id(P_LATE, status="paid", substatus="succeeded", paid_at="2025-03-01T00:00:01Z"),
        payment(
            "pay_1",
            "2025-01-01T00:00:00Z",
            substatus="refunded",
            refunded="49.00",
            refunded_at="2025-03-02T00:00:00Z",
        ),
        payment(
            "pay_2",
            "2025-01-31T00:00:00Z",
            substatus="partially_refunded",
            refunded="10.00",
            refunded_at="2025-03-03T00:00:00Z",
        ),
        # new charges and failures
        payment("pay_7", "2025-03-05T00:00:00Z"),
        payment("pay_8", "2025-03-06T00:00:00Z", substatus="failed", user="user_b", mem="mem_3"),
        payment("pay_9", "2025-03-07T00:00:00Z", user="user_new", mem="mem_9"),
    ]
    after_payments = [p for p in HISTORY_PAYMENTS if p["id"] not in {"pay_1", "pay_2", "pay_5"}]
    after_memberships = [
        # canceled for good after AS_OF, set to cancel at period end after AS_OF, a new one
        with_id(
            M1,
            status="canceled",
            canceled_at="2025-03-10T00:00:00Z",
            current_period_end="2025-03-10T00:00:00Z",
            updated_at="2025-03-10T00:00:00Z",
        ),
        with_id(
            M2,
            cancel_at_period_end=True,
            canceled_at="2025-03-02T00:00:00Z",
            updated_at="2025-03-02T00:00:00Z",
        ),
        with_id(
            M3,
            status="expired",
            expires_at="2025-03-08T00:00:00Z",
            current_period_end="2025-03-08T00:00:00Z",
            updated_at="2025-03-08T00:00:00Z",
        ),
        membership("mem_9", "2025-03-07T00:00:00Z", user="user_new"),
    ]
    after = compute(after_memberships, after_payments + later)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    # ...and the frames are the history's: sanity of what was compared.
    members, people = before
    assert members["active_at"].tolist() == [True, True, True]
    assert members.loc["mem_1", "failed_payments_30d"] == 1
    assert people.loc["user_a", "lifetime_value_usd"] == D("98.00")
    assert people.loc["user_b", "monthly_revenue_usd"] == D("40.27") + D("38.57")


def _case(memberships, payments, ltv, mrr, as_of=AS_OF):
    return (memberships, payments, as_of, D(ltv), D(mrr))


JPY = membership("mem_1", "2025-01-01T00:00:00Z", price="4900", cur="jpy")
GBP = membership("mem_1", "2025-01-01T00:00:00Z", price="9.00", cur="gbp")
TRIAL = membership("mem_1", "2025-02-20T00:00:00Z", plan_id="plan_trial", status="trialing")
ONCE = membership("mem_2", "2025-01-05T00:00:00Z", plan_id="plan_once", status="completed")
YEAR = membership("mem_3", "2025-01-06T00:00:00Z", plan_id="plan_year", price="490.00")
ENDED = membership(
    "mem_1",
    "2025-01-01T00:00:00Z",
    status="canceled",
    canceled_at="2025-02-10T00:00:00Z",
    period_end="2025-02-10T00:00:00Z",
    updated="2025-02-10T00:00:00Z",
)


@pytest.mark.unit
@pytest.mark.parametrize(
    "memberships, payments, as_of, ltv, mrr",
    [
        pytest.param(
            *_case([M1], [payment("p1", "2025-01-01T00:00:00Z")], "49.00", "49.00"), id="monthly"
        ),
        pytest.param(
            *_case(
                [M1],
                [
                    payment(
                        "p1",
                        "2025-01-01T00:00:00Z",
                        substatus="refunded",
                        refunded="49.00",
                        refunded_at="2025-01-02T00:00:00Z",
                    )
                ],
                "0.00",
                "49.00",
            ),
            id="full-refund",
        ),
        pytest.param(
            *_case(
                [ONCE],
                [
                    payment(
                        "p1",
                        "2025-01-05T00:00:00Z",
                        "299.00",
                        mem="mem_2",
                        substatus="partially_refunded",
                        refunded="149.50",
                        refunded_at="2025-01-07T00:00:00Z",
                    )
                ],
                "149.50",
                "0",
            ),
            id="partial-refund-one-time",
        ),
        pytest.param(
            *_case(
                [JPY],
                [payment("p1", "2025-01-01T00:00:00Z", "4900", cur="jpy", usd="32.83")],
                "32.83",
                "32.83",
            ),
            id="jpy",
        ),
        pytest.param(
            # 2450 JPY at 32.83/4900 is 16.415 USD: half-even to the cent gives 16.42
            *_case(
                [JPY],
                [
                    payment(
                        "p1",
                        "2025-01-01T00:00:00Z",
                        "4900",
                        cur="jpy",
                        usd="32.83",
                        substatus="partially_refunded",
                        refunded="2450",
                        refunded_at="2025-01-03T00:00:00Z",
                    )
                ],
                "16.41",
                "32.83",
            ),
            id="jpy-partial-refund",
        ),
        pytest.param(
            # the latest charge's rate converts the price
            *_case(
                [GBP],
                [
                    payment("p1", "2025-01-01T00:00:00Z", "9.00", cur="gbp", usd="11.43"),
                    payment("p2", "2025-01-31T00:00:00Z", "9.00", cur="gbp", usd="11.70"),
                ],
                "23.13",
                "11.70",
            ),
            id="gbp-latest-rate",
        ),
        pytest.param(*_case([TRIAL], [], "0", "0"), id="trial-unpaid"),
        pytest.param(
            *_case([TRIAL], [payment("p1", "2025-02-20T00:00:00Z", "0.00")], "0.00", "0"),
            id="trial-zero-charge",
        ),
        pytest.param(
            *_case(
                [TRIAL],
                [
                    payment("p1", "2025-02-20T00:00:00Z", "0.00"),
                    payment("p2", "2025-02-27T00:00:00Z"),
                ],
                "49.00",
                "49.00",
            ),
            id="trial-paid",
        ),
        pytest.param(
            *_case(
                [YEAR],
                [payment("p1", "2025-01-06T00:00:00Z", "490.00", mem="mem_3")],
                "490.00",
                "40.27",
            ),
            id="yearly",
        ),
        pytest.param(
            *_case(
                [ENDED],
                [payment("p1", "2025-01-01T00:00:00Z"), payment("p2", "2025-01-31T00:00:00Z")],
                "98.00",
                "0",
            ),
            id="ended-keeps-value-loses-mrr",
        ),
        pytest.param(
            *_case(
                [M1, ONCE, YEAR],
                [
                    payment("p1", "2025-01-01T00:00:00Z"),
                    payment("p2", "2025-01-05T00:00:00Z", "299.00", mem="mem_2"),
                    payment("p3", "2025-01-06T00:00:00Z", "490.00", mem="mem_3"),
                    payment("p4", "2025-01-31T00:00:00Z"),
                    payment("p5", "2025-02-02T00:00:00Z", "25.00", mem=None),  # one-off purchase
                    payment("p6", "2025-02-03T00:00:00Z", substatus="failed"),
                ],
                "912.00",
                "89.27",
            ),
            id="several-memberships",
        ),
    ],
)
def test_lifetime_value_and_monthly_revenue_are_exact(memberships, payments, as_of, ltv, mrr):
    members, people = compute(memberships, payments, as_of)
    if not payments:
        assert people.empty  # a person enters with a payment
        assert members["monthly_revenue_usd"].sum() == D(0)
        return
    assert people.loc["user_a", "lifetime_value_usd"] == ltv
    assert people.loc["user_a", "monthly_revenue_usd"] == mrr
    assert all(isinstance(v, Decimal) for v in people["lifetime_value_usd"])
    assert all(isinstance(v, Decimal) for v in members["monthly_revenue_usd"])
    assert sum(members["monthly_revenue_usd"], D(0)) == mrr


@pytest.mark.unit
def test_person_dates_and_counts():
    flagged = membership(
        "mem_2",
        "2025-01-05T00:00:00Z",
        cape=True,
        status="canceling",
        canceled_at="2025-02-15T00:00:00Z",
    )
    payments = [
        payment("p0", "2024-12-31T00:00:00Z", "0.00"),  # a zero charge makes no customer
        payment("p1", "2025-01-01T00:00:00Z", paid_at="2025-01-01T00:05:00Z"),
        payment("p2", "2025-01-05T00:00:00Z", mem="mem_2"),
        payment("p3", "2025-01-31T00:00:00Z"),
        payment("p4", "2024-12-01T00:00:00Z", substatus="failed"),  # 90 days back: outside
        payment("p5", "2024-12-01T00:00:01Z", substatus="failed"),
        payment("p6", "2025-02-10T00:00:00Z", substatus="failed", mem=None),
    ]
    members, people = compute([M1, flagged], payments)
    person = people.loc["user_a"]
    assert person["customer_since"] == pd.Timestamp("2025-01-01T00:05:00Z")
    assert person["last_payment_at"] == pd.Timestamp("2025-01-31T00:00:00Z")
    assert person["failed_payments_90d"] == 2
    assert person["active_memberships"] == 2
    assert person["cancel_at_period_end_memberships"] == 1
    assert members.loc["mem_1", "failed_payments_90d"] == 1
    assert members.loc["mem_1", "failed_payments_30d"] == 0
    assert members.loc["mem_1", "tenure_days"] == 59.0
    # the flag was set after this moment: not known yet
    earlier, _ = compute([M1, flagged], payments, as_of="2025-02-14T00:00:00Z")
    assert not earlier.loc["mem_2", "cancel_at_period_end_known"]


@pytest.mark.unit
def test_membership_end_and_activity():
    ended = with_id(ENDED, id="mem_e")
    drafted = membership("mem_d", "2025-01-01T00:00:00Z", status="drafted")
    scheduled = membership(
        "mem_s",
        "2025-01-01T00:00:00Z",
        status="canceled",
        canceled_at="2025-02-01T00:00:00Z",
        period_end="2025-02-20T00:00:00Z",
        updated="2025-02-20T00:00:00Z",
    )
    members, _ = compute([ended, drafted, scheduled], [], as_of="2025-02-15T00:00:00Z")
    assert members["active_at"].to_dict() == {"mem_d": False, "mem_e": False, "mem_s": True}
    assert members.loc["mem_e", "tenure_days"] == 40.0  # until it ended, not until as_of
    assert members.loc["mem_s", "cancel_at_period_end_known"]  # cancelled, still running


@pytest.mark.unit
def test_labels_are_the_thirty_days_after_as_of():
    as_of = pd.Timestamp(AS_OF)

    def ending(id_, end):
        return membership(
            id_,
            "2025-01-01T00:00:00Z",
            status="expired",
            expires_at=end.isoformat(),
            updated=end.isoformat(),
        )

    second, day = pd.Timedelta(seconds=1), pd.Timedelta(days=30)
    memberships = [
        ending("mem_at", as_of),
        ending("mem_next", as_of + second),
        ending("mem_last", as_of + day),
        ending("mem_after", as_of + day + second),
        ending("mem_before", as_of - second),
        membership("mem_running", "2025-01-01T00:00:00Z"),
        membership(
            "mem_new", "2025-03-05T00:00:00Z", status="canceled", canceled_at="2025-03-06T00:00:00Z"
        ),
    ]
    labels = facts.membership_labels(facts.memberships_frame(memberships), AS_OF)
    assert labels["ends_within_30d"].to_dict() == {
        "mem_after": 0,
        "mem_at": 0,
        "mem_before": 0,
        "mem_last": 1,
        "mem_next": 1,
        "mem_running": 0,
    }


@pytest.mark.unit
def test_person_key_is_the_crms():
    for user, member in [("user_1", "mber_1"), (None, "mber_1"), ("user_1", None), (None, None)]:
        assert facts.person_key(user, member) == crm_mapping.person_key(user, member)


@pytest.mark.unit
def test_naive_as_of_is_refused():
    with pytest.raises(ValueError, match="naive"):
        compute([M1], [], as_of=dt.datetime(2025, 3, 1))


NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MODELS = {"memberships": Membership, "payments": Payment, "plans": Plan}


def test_facts_over_the_sandbox_mirror(sqlite_url, monkeypatch):
    dataset = generate_dataset("small", seed=0, now=NOW)
    engine = get_engine(sqlite_url)
    with engine.begin() as conn:
        for name, model in MODELS.items():
            records = [
                to_raw_record(parse_object(model, payload, name), NOW)
                for payload in dataset.rendered(name)
            ]
            upsert_raw(conn, name, "default", records)
    with engine.connect() as conn:
        loaded = facts.load_frames(conn, "default")
        at_mid = facts.load_frames(conn, "default", as_of=dt.datetime(2025, 9, 1, tzinfo=dt.UTC))
        assert facts.load_frames(conn, "other").payments.empty

    payments = dataset.rendered("payments")
    # Framed a chunk at a time (2,400 payments: three chunks), the same as framed at once.
    pd.testing.assert_frame_equal(loaded.payments, facts.payments_frame(payments))
    monkeypatch.setattr(facts, "READ_CHUNK", 100)
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(
            facts.load_frames(conn, "default").memberships,
            facts.memberships_frame(dataset.rendered("memberships")),
        )
    people = facts.person_facts(loaded.memberships, loaded.payments, loaded.plans, NOW)
    payers = {facts.person_key((p["user"] or {}).get("id"), p["member_id"]) for p in payments}
    assert set(people.index) == payers
    assert people.index.is_unique
    assert all(isinstance(v, Decimal) and v >= 0 for v in people["lifetime_value_usd"])
    assert all(isinstance(v, Decimal) and v >= 0 for v in people["monthly_revenue_usd"])
    assert sum(people["lifetime_value_usd"], D(0)) > 0

    # Reading only the rows created by as_of gives the same facts as reading everything.
    mid = "2025-09-01T00:00:00Z"
    full = facts.person_facts(loaded.memberships, loaded.payments, loaded.plans, mid)
    pd.testing.assert_frame_equal(
        full, facts.person_facts(at_mid.memberships, at_mid.payments, at_mid.plans, mid)
    )

"""The deterministic dataset generator: determinism, sizes, hard cases, time bounds, integrity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from whop_pipeline.sandbox.dataset import (
    DAY_MS,
    MEMBERSHIP_STATUSES,
    SIZES,
    WhopDataset,
    generate_dataset,
    iso,
    to_ms,
)
from whop_pipeline_tests.sandbox.whop_fixtures import WHOP_NOW

pytestmark = pytest.mark.unit

KINDS = ("products", "plans", "members", "memberships", "payments")


def _snapshot(ds: WhopDataset) -> dict[str, list[dict]]:
    return {kind: ds.rendered(kind) for kind in KINDS}


@pytest.fixture(scope="module")
def tiny() -> WhopDataset:
    return generate_dataset("tiny", seed=0, now=WHOP_NOW)


@pytest.fixture(scope="module")
def small() -> WhopDataset:
    return generate_dataset("small", seed=0, now=WHOP_NOW)


def test_same_arguments_give_the_same_data(tiny: WhopDataset) -> None:
    again = generate_dataset("tiny", seed=0, now=WHOP_NOW)
    assert _snapshot(again) == _snapshot(tiny)


def test_seed_start_and_now_change_the_data(tiny: WhopDataset) -> None:
    ids = {m.id for m in tiny.memberships}
    for other in (
        generate_dataset("tiny", seed=1, now=WHOP_NOW),
        generate_dataset("tiny", seed=0, now=WHOP_NOW + timedelta(hours=1)),
        generate_dataset("tiny", seed=0, start_date=date(2025, 2, 1), now=WHOP_NOW),
    ):
        assert not ids & {m.id for m in other.memberships}


def test_now_defaults_to_the_current_hour() -> None:
    before = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ds = generate_dataset("tiny", seed=3)
    assert ds.now in (before, before + timedelta(hours=1))
    assert (ds.now.minute, ds.now.second, ds.now.microsecond) == (0, 0, 0)


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_counts_are_exact_per_size(size: str) -> None:
    ds = generate_dataset(size, seed=5, now=WHOP_NOW)
    spec = SIZES[size]
    counts = ds.counts()
    assert (counts["members"], counts["memberships"], counts["payments"], counts["products"]) == (
        spec.members,
        spec.memberships,
        spec.payments,
        spec.products,
    )
    if size == "tiny":
        assert 25 <= counts["members"] <= 40 and 35 <= counts["memberships"] <= 50
        assert 80 <= counts["payments"] <= 120 and 3 <= counts["products"] <= 4


def _check_time_bounds(ds: WhopDataset) -> None:
    start = to_ms(datetime(ds.start_date.year, ds.start_date.month, ds.start_date.day, tzinfo=UTC))
    now = to_ms(ds.now)
    for kind in KINDS:
        for record in ds.records(kind):
            assert start <= record.created_at < now, (kind, record.id, iso(record.created_at))
            if hasattr(record, "updated_at"):
                assert record.created_at <= record.updated_at <= now, (kind, record.id)
    for p in ds.payments:
        assert p.paid_at is None or p.created_at <= p.paid_at < now
        assert p.refunded_at is None or p.created_at <= p.refunded_at < now
    members = {m.id: m for m in ds.members}
    for ms in ds.memberships:
        assert members[ms.member_id].created_at <= ms.created_at
        assert ms.canceled_at is None or ms.created_at <= ms.canceled_at < now


def _check_integrity(ds: WhopDataset) -> None:
    members = {m.id: m for m in ds.members}
    memberships = {m.id: m for m in ds.memberships}
    plans = {p.id: p for p in ds.plans}
    products = {p.id for p in ds.products}
    for kind in KINDS:
        ids = [r.id for r in ds.records(kind)]
        assert len(ids) == len(set(ids)), kind
    prefixes = {
        "members": "mber_",
        "memberships": "mem_",
        "payments": "pay_",
        "products": "prod_",
        "plans": "plan_",
    }
    for kind, prefix in prefixes.items():
        assert all(
            r.id.startswith(prefix) and len(r.id) == len(prefix) + 14 for r in ds.records(kind)
        )
    assert ds.account.id.startswith("biz_") and ds.account.route and ds.account.title
    assert all(m.user_id is None or m.user_id.startswith("user_") for m in ds.members)
    for plan in ds.plans:
        assert plan.product_id in products
    for ms in ds.memberships:
        assert plans[ms.plan_id].product_id == ms.product_id
        assert ms.user_id == members[ms.member_id].user_id
    for p in ds.payments:
        assert (
            plans[p.plan_id].product_id == p.product_id and p.currency == plans[p.plan_id].currency
        )
        assert p.member_id in members
        if p.membership_id is not None:
            ms = memberships[p.membership_id]
            assert (ms.member_id, ms.plan_id) == (p.member_id, p.plan_id)
    for row in ds.rendered("payments"):
        member = members[row["member_id"]]
        assert row["customer_email"] == member.email
        assert (row["user"] or {}).get("id") == member.user_id
        assert [i["product_id"] for i in row["line_items"]] == [row["product_id"]]


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_time_bounds_and_integrity(size: str, tiny: WhopDataset, small: WhopDataset) -> None:
    ds = tiny if size == "tiny" else small
    _check_time_bounds(ds)
    _check_integrity(ds)


def _hard_case_failures(ds: WhopDataset) -> list[str]:
    """Names of the hard cases the dataset lacks (empty = all present). Works on the records, so
    it stays fast on the large dataset; the rendered forms are checked on the tiny one."""
    members, memberships, payments = ds.members, ds.memberships, ds.payments
    emails = [m.email for m in members if m.email]
    folded = Counter(e.casefold() for e in emails)
    names = [m.name for m in members if m.user_id and m.name]
    failed = [p for p in payments if p.substatus == "failed"]
    checks = {
        "member without email": any(m.email is None and m.user_id for m in members),
        "emails equal ignoring case": any(n > 1 for n in folded.values())
        and len(set(emails)) == len(emails),
        "business buyer": any(m.user_id is None for m in members)
        and any(ms.user_id is None for ms in memberships),
        "one-time purchase without membership": any(
            p.membership_id is None and p.billing_reason == "one_time" for p in payments
        ),
        "all nine statuses": {ms.status for ms in memberships} == set(MEMBERSHIP_STATUSES),
        "active with cancel_at_period_end": any(
            ms.status == "active" and ms.cancel_at_period_end for ms in memberships
        ),
        "failed open": any(p.status == "open" for p in failed),
        "failed uncollectible": any(p.status == "uncollectible" for p in failed),
        "failure message": bool(failed)
        and all(p.failure_message and p.paid_at is None for p in failed),
        "refunded": any(
            p.substatus == "refunded" and p.refunded_minor and p.refunded_at for p in payments
        ),
        "three currencies with jpy": len({p.currency for p in payments}) >= 3
        and "jpy" in {p.currency for p in payments},
        "unicode names": {"Zoë Ångström", "李小龙"} <= set(names),
        "name with comma": any("," in n for n in names),
        "one-word name": any(len(n.split()) == 1 for n in names),
    }
    return [name for name, ok in checks.items() if not ok]


def test_rendered_hard_cases(tiny: WhopDataset) -> None:
    members = tiny.rendered("members")
    payments = tiny.rendered("payments")
    assert any(m["email"] is None and m["user"] is not None for m in members)
    business = [m for m in members if m["user"] is None]
    assert business and all(m["email"] is None and m["display_name"] for m in business)
    jpy = [p for p in payments if p["currency"] == "jpy"]
    assert jpy and all(p["total"]["decimals"] == 0 and "." not in p["total"]["amount"] for p in jpy)
    refunded = [p for p in payments if p["substatus"] == "refunded"]
    assert refunded and all(
        p["refunded_amount"] == p["total"] and p["refunded_at"] for p in refunded
    )
    one_time = [p for p in payments if p["membership_id"] is None]
    assert one_time and all(p["billing_reason"] == "one_time" and p["member_id"] for p in one_time)
    memberships = tiny.rendered("memberships")
    assert any(m["user_id"] is None and m["member_id"] for m in memberships)
    assert all(m["member"] is None and m["affiliate"] is None for m in memberships)


@pytest.mark.parametrize("seed", range(6))
def test_every_tiny_dataset_has_the_hard_cases(seed: int) -> None:
    assert _hard_case_failures(generate_dataset("tiny", seed=seed, now=WHOP_NOW)) == []


def test_small_dataset_has_the_hard_cases(small: WhopDataset) -> None:
    assert _hard_case_failures(small) == []


def test_the_older_member_holds_the_first_spelling_of_a_shared_email(tiny: WhopDataset) -> None:
    pair = sorted(
        (m for m in tiny.members if m.email and m.email.casefold() == "jordan.lee@example.com"),
        key=lambda m: m.created_at,
    )
    assert [m.email for m in pair] == ["Jordan.Lee@example.com", "jordan.lee@EXAMPLE.com"]


def test_money_is_rendered_in_major_units(tiny: WhopDataset) -> None:
    plans = {p["id"]: p for p in tiny.rendered("plans")}
    for row in tiny.rendered("payments"):
        total, plan = row["total"], plans[row["plan_id"]]
        decimals = 0 if row["currency"] == "jpy" else 2
        assert total["decimals"] == total["display_decimals"] == decimals
        whole, _, fraction = total["amount"].partition(".")
        assert whole.isdigit() and len(fraction) == decimals
        assert isinstance(plan["renewal_price"], float) and isinstance(plan["initial_price"], float)
    jpy_monthly = next(
        p for p in plans.values() if p["currency"] == "jpy" and p["title"] == "Monthly"
    )
    assert (
        jpy_monthly["renewal_price"] == 4900.0
        and jpy_monthly["formatted_price"] == "¥4,900 / month"
    )


def test_rendered_lists_follow_created_order(tiny: WhopDataset) -> None:
    for kind in KINDS:
        keys = [(r.created_at, r.id) for r in tiny.records(kind)]
        assert keys == sorted(keys)


def test_large_dataset_sizes_bounds_and_hard_cases() -> None:
    # Generation time is measured by benchmarks/bench_sandbox_dataset.py, not asserted here.
    ds = generate_dataset("large", seed=0, now=WHOP_NOW)
    assert ds.counts() == {
        "products": 12,
        "plans": 26,
        "members": 20_000,
        "memberships": 25_000,
        "payments": 100_000,
    }
    start, now = to_ms(datetime(2025, 1, 1, tzinfo=UTC)), to_ms(WHOP_NOW)
    for kind in KINDS:  # lists are sorted by created_at: the ends bound every record
        records = ds.records(kind)
        assert start <= records[0].created_at and records[-1].created_at < now
        assert len({r.id for r in records}) == len(records)
    assert _hard_case_failures(ds) == []


# -- scale -------------------------------------------------------------------------------------

SCALED = ("members", "memberships", "payments")


@pytest.fixture(scope="module")
def small_x2() -> WhopDataset:
    return generate_dataset("small", seed=0, now=WHOP_NOW, scale=2)


def _records_digest(ds: WhopDataset) -> str:
    records: dict[str, object] = {
        kind: [dataclasses.asdict(r) for r in ds.records(kind)] for kind in KINDS
    }
    records["account"] = dataclasses.asdict(ds.account)
    body = json.dumps(records, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(body).hexdigest()


def test_scale_two_doubles_members_memberships_and_payments(
    small: WhopDataset, small_x2: WhopDataset
) -> None:
    """Rule: ``scale`` multiplies the preset's members, memberships and payments exactly; products
    and plans (variants) stay as the preset has them."""
    one, two = small.counts(), small_x2.counts()
    assert {kind: two[kind] for kind in SCALED} == {kind: 2 * one[kind] for kind in SCALED}
    assert (two["products"], two["plans"]) == (one["products"], one["plans"])
    assert small_x2.scale == 2 and small.scale == 1
    three = generate_dataset("tiny", seed=0, now=WHOP_NOW, scale=3).counts()
    assert [three[k] for k in SCALED] == [3 * getattr(SIZES["tiny"], k) for k in SCALED]


def test_scaled_datasets_are_deterministic(small_x2: WhopDataset) -> None:
    """Rule: the data is a function of (preset, seed, scale) (and start_date, now)."""
    again = generate_dataset("small", seed=0, now=WHOP_NOW, scale=2)
    assert _records_digest(again) == _records_digest(small_x2)
    other_seed = generate_dataset("small", seed=1, now=WHOP_NOW, scale=2)
    assert not {m.id for m in other_seed.memberships} & {m.id for m in small_x2.memberships}


@pytest.mark.parametrize(
    ("size", "churn", "digest"),
    [
        ("tiny", "learnable", "dca83cdeaad58eca9a5515e786466065e167d083daf28fbc1f8113e1a768d8a2"),
        ("small", "learnable", "17c7fc227a8b85659b2c219d66e769fe5cc8dcb12d4b7f2e665203d810e178ca"),
        ("tiny", "random", "e32084f97d1fd83db47818bf1e139bb4c4110fa7e1c4dda47c43dba6874ea22c"),
        ("small", "random", "ec923ad0a50a7112e3337e5de007fa1c41d756223d9a92ed0f685d99d47184fc"),
    ],
)
def test_scale_one_is_byte_identical_to_the_preset(size: str, churn: str, digest: str) -> None:
    """Rule: scale 1 is the preset, whether ``scale`` is given or not. The digests pin the records
    the generator gives today, so any change to them is a deliberate one."""
    assert _records_digest(generate_dataset(size, seed=0, now=WHOP_NOW, churn=churn)) == digest
    again = generate_dataset(size, seed=0, now=WHOP_NOW, scale=1, churn=churn)
    assert _records_digest(again) == digest


def test_scaled_dataset_keeps_the_catalog_and_every_invariant(
    small: WhopDataset, small_x2: WhopDataset
) -> None:
    """Rule: a scaled dataset is as valid as the preset: same account and catalog, every record in
    [start_date, now), links intact, and every hard case present."""
    assert small_x2.account == small.account
    assert small_x2.products == small.products and small_x2.plans == small.plans
    _check_time_bounds(small_x2)
    _check_integrity(small_x2)
    assert _hard_case_failures(small_x2) == []


@pytest.mark.parametrize("scale", [0, -1, 1.5, "2", True])
def test_scale_must_be_a_positive_integer(scale: object) -> None:
    """Rule: ``scale`` is a positive integer; anything else is refused before generating."""
    with pytest.raises(ValueError, match="scale"):
        generate_dataset("tiny", seed=0, now=WHOP_NOW, scale=scale)  # type: ignore[arg-type]


# -- win-back ----------------------------------------------------------------------------------


def _lapsed_owners(ds: WhopDataset) -> tuple[int, int, float]:
    """Over the extra memberships (each one but a member's earliest): how many there are, how many
    went to a member lapsed when it was created, and how many would have by chance, were each owner
    a random member among those already holding a membership then. Lapsed at ``t``: every
    membership of theirs created before ``t`` has ended, the last 3 to 30 days before ``t`` if it
    had a failed charge, else 3 to 150 (docs/sandbox.md#win-back)."""
    failed = {p.membership_id for p in ds.payments if p.substatus == "failed"}
    last_end: dict[str, float] = {}  # infinite while one of their memberships has not ended
    oldest: dict[str, int] = {}

    def lapsed(member: str, t: int) -> bool:
        return 3 * DAY_MS <= t - last_end[member] <= oldest[member]

    extras = lapsed_owners = 0
    chance = 0.0
    for ms in sorted(ds.memberships, key=lambda m: (m.created_at, m.id)):
        t = ms.created_at
        if ms.member_id in last_end:
            extras += 1
            lapsed_owners += lapsed(ms.member_id, t)
            chance += sum(lapsed(member, t) for member in last_end) / len(last_end)
        end = math.inf
        if ms.status in ("canceled", "expired"):
            end = ms.current_period_end if ms.current_period_end is not None else ms.expires_at
        if end > last_end.get(ms.member_id, -math.inf):
            last_end[ms.member_id] = end
            oldest[ms.member_id] = (30 if ms.id in failed else 150) * DAY_MS
    return extras, lapsed_owners, chance


def test_lapsed_members_win_back_extra_memberships_only_when_learnable(
    small_x2: WhopDataset,
) -> None:
    """Rule: in ``churn="learnable"`` about 55% of the extra memberships go to a member who lapsed
    recently, far above the share random owners give (under 10%, in either mode's history);
    ``churn="random"`` gives them to random members, and lapsed members own what chance gives."""
    extras, won, chance = _lapsed_owners(small_x2)
    random_mode = generate_dataset("small", seed=0, now=WHOP_NOW, scale=2, churn="random")
    random_extras, random_won, random_chance = _lapsed_owners(random_mode)
    assert (extras, won, round(chance)) == (240, 142, 6)
    assert (random_extras, random_won, round(random_chance)) == (240, 25, 22)
    assert won >= 0.5 * extras and won >= 5 * max(chance, random_chance)
    assert abs(random_won - random_chance) <= 2 * math.sqrt(random_chance)

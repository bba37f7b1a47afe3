"""Pure mapping rules (README.md#the-mapping), one parametrized table per rule."""

from __future__ import annotations

import uuid

import pytest

from whop_pipeline.crm import mapping as m

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "cancel_at_period_end", "stage"),
    [
        ("active", False, "CUSTOMER"),
        ("trialing", False, "CUSTOMER"),
        ("past_due", False, "CUSTOMER"),
        ("completed", False, "CUSTOMER"),
        ("active", True, "NEGOTIATION"),
        ("trialing", True, "NEGOTIATION"),
        ("past_due", True, "NEGOTIATION"),
        ("completed", True, "NEGOTIATION"),
        ("canceling", False, "NEGOTIATION"),
        ("canceling", True, "NEGOTIATION"),
        ("canceled", False, "LOST"),
        ("canceled", True, "LOST"),
        ("expired", False, "LOST"),
        ("unresolved", False, "LOST"),
        ("drafted", False, "NEW"),
        ("a_status_whop_adds_later", False, "NEW"),
        (None, None, "NEW"),
    ],
)
def test_membership_stage(status, cancel_at_period_end, stage):
    assert m.membership_stage(status, cancel_at_period_end) == stage


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Jane Doe", "Jane", "Doe"),
        ("Jane  Mary   Doe", "Jane", "Mary   Doe"),
        ("Cher", "Cher", ""),
        ("  Zoë Ångström ", "Zoë", "Ångström"),
        ("李小龙", "李小龙", ""),
        ("Smith, John", "Smith,", "John"),
        ("", "", ""),
        (None, "", ""),
        ("   ", "", ""),
    ],
)
def test_split_name(full, first, last):
    assert m.split_name(full) == (first, last)


@pytest.mark.parametrize(
    ("email", "normalized"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        (" a@b.co ", "a@b.co"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_email(email, normalized):
    assert m.normalize_email(email) == normalized


@pytest.mark.parametrize(
    ("amount", "micros"),
    [
        ("49.00", 49_000_000),
        ("0.10", 100_000),
        ("4900", 4_900_000_000),  # JPY: zero decimals
        ("12.5", 12_500_000),
        ("0.000001", 1),
        ("19999999.99", 19_999_999_990_000),
        # 0.1 + 0.2 style float error cannot happen: the string is read as a decimal.
        ("1234567.891234", 1_234_567_891_234),
        (None, None),
    ],
)
def test_amount_micros_is_exact(amount, micros):
    assert m.amount_micros(amount) == micros


def test_amount_micros_rejects_garbage():
    with pytest.raises(ValueError, match="not a decimal"):
        m.amount_micros("forty-nine")


@pytest.mark.parametrize(
    ("membership", "expected"),
    [
        (
            {
                "renewal_price": {"amount": "49.00", "currency": "usd"},
                "initial_price": {"amount": "0.00", "currency": "usd"},
            },
            (49_000_000, "USD"),
        ),
        (
            {"renewal_price": None, "initial_price": {"amount": "4900", "currency": "jpy"}},
            (4_900_000_000, "JPY"),
        ),
        ({"renewal_price": None, "initial_price": None}, (None, None)),
    ],
)
def test_membership_amount(membership, expected):
    assert m.membership_amount(membership) == expected


@pytest.mark.parametrize(
    ("member", "key", "name"),
    [
        ({"id": "mber_1", "user": {"id": "user_1", "name": "Jane Doe"}}, "user_1", "Jane Doe"),
        ({"id": "mber_2", "user": None, "display_name": "Acme Ltd"}, "mber_2", "Acme Ltd"),
        (
            {
                "id": "mber_3",
                "user": {"id": "user_3", "name": None, "username": "jd"},
                "display_name": "",
            },
            "user_3",
            "jd",
        ),
        (
            {
                "id": "mber_4",
                "user": {"id": "user_4", "name": " ", "username": "x"},
                "display_name": "Shown",
            },
            "user_4",
            "Shown",
        ),
    ],
)
def test_person_key_and_name(member, key, name):
    assert m.member_person_key(member) == key
    assert m.person_name(member) == name


def test_record_ids_are_deterministic_and_scoped_by_connection():
    a = m.opportunity_id("default", "mem_1")
    assert a == m.opportunity_id("default", "mem_1")
    assert uuid.UUID(a).version == 5
    assert a != m.opportunity_id("other", "mem_1")
    assert a != m.note_id("default", "mem_1")
    person = m.note_target_id("default", "pay_1", "person")
    assert person != m.note_target_id("default", "pay_1", "opportunity")


def test_note_title_and_body():
    payment = {
        "id": "pay_1",
        "status": "open",
        "substatus": "failed",
        "billing_reason": "subscription_cycle",
        "created_at": "2026-10-03T14:22:12Z",
        "paid_at": None,
        "currency": "usd",
        "total": {"amount": "49.00", "currency": "usd"},
        "failure_message": "Card declined",
        "membership_id": "mem_1",
    }
    amount, currency = m.payment_amount(payment)
    assert m.note_title("failed", amount, currency, "Acme Signals Pro") == (
        "Payment failed · 49.00 USD · Acme Signals Pro"
    )
    body = m.note_markdown(payment, "Acme Signals Pro")
    for fact in (
        "2026-10-03 14:22 UTC",
        "49.00 USD",
        "open (failed)",
        "subscription_cycle",
        "Acme Signals Pro",
        "pay_1",
        "Failure reason: Card declined",
    ):
        assert fact in body


def test_note_body_of_a_refund_names_the_refund_and_no_failure():
    payment = {
        "id": "pay_2",
        "status": "paid",
        "substatus": "refunded",
        "created_at": "2026-10-03T14:22:12Z",
        "currency": "jpy",
        "total": {"amount": "4900", "currency": "jpy"},
        "refunded_amount": {"amount": "4900", "currency": "jpy"},
    }
    body = m.note_markdown(payment, "Course")
    assert "Refunded: 4900 JPY" in body
    assert "Failure" not in body

"""Frame builders over small hand-made Whop objects: people, opportunities, notes, targets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from whop_pipeline.crm import frames
from whop_pipeline.crm import mapping as m
from whop_pipeline.crm import records as crm_records
from whop_pipeline.store.crm import record_digest

pytestmark = pytest.mark.unit


def member(id_, created, email=None, user=None, display_name=""):
    return {
        "id": id_,
        "created_at": created,
        "email": email,
        "user": user,
        "display_name": display_name,
    }


def payment(
    id_, created, *, user=None, member_id=None, membership_id=None, email=None, product="prod_1"
):
    return {
        "id": id_,
        "created_at": created,
        "status": "paid",
        "substatus": "succeeded",
        "currency": "usd",
        "total": {"amount": "10.00", "currency": "usd"},
        "user": user,
        "member_id": member_id,
        "membership_id": membership_id,
        "customer_email": email,
        "product_id": product,
        "line_items": [],
    }


def test_people_shared_email_goes_to_the_older_member():
    people = frames.people_frame(
        [
            member(
                "mber_new",
                "2025-06-01T00:00:00Z",
                "Same@Example.com",
                {"id": "user_b", "name": "B"},
            ),
            member(
                "mber_old",
                "2025-01-01T00:00:00Z",
                "same@example.COM",
                {"id": "user_a", "name": "A"},
            ),
        ]
    ).set_index("_key")
    assert people.loc["user_a", "emails.primaryEmail"] == "same@example.com"
    assert people.loc["user_a", "emails.additionalEmails"] is None
    assert people.loc["user_b", "emails.primaryEmail"] is None
    assert people.loc["user_b", "emails.additionalEmails"] == ["same@example.com"]


def test_people_keys_names_and_links():
    people = frames.people_frame(
        [
            member(
                "mber_1",
                "2025-01-01T00:00:00Z",
                "A@x.com",
                {"id": "user_1", "name": "Zoë Ångström", "username": "zoe"},
            ),
            member("mber_biz", "2025-01-02T00:00:00Z", None, None, display_name="Acme, Inc."),
        ]
    ).set_index("_key")
    assert people.loc["user_1", "name.firstName"] == "Zoë"
    assert people.loc["user_1", "whopProfileUrl.primaryLinkUrl"] == "https://whop.com/@zoe"
    assert people.loc["mber_biz", "whopUserId"] == "mber_biz"
    assert people.loc["mber_biz", "name.firstName"] == "Acme,"
    assert people.loc["mber_biz", "whopProfileUrl.primaryLinkUrl"] is None


def test_people_email_falls_back_to_the_latest_payment():
    people = frames.people_frame(
        [member("mber_1", "2025-01-01T00:00:00Z", None, {"id": "user_1", "name": "N"})],
        [
            payment("pay_1", "2025-02-01T00:00:00Z", user={"id": "user_1"}, email="old@x.com"),
            payment("pay_2", "2025-03-01T00:00:00Z", user={"id": "user_1"}, email="New@X.com"),
        ],
    )
    assert people.loc[0, "emails.primaryEmail"] == "new@x.com"


def test_a_payer_without_a_member_still_gets_a_person():
    people = frames.people_frame(
        [],
        [
            payment(
                "pay_1",
                "2025-02-01T00:00:00Z",
                user={"id": "user_9", "username": "nine", "name": None},
                email="n@x.com",
            )
        ],
    )
    assert people.to_dict(orient="records")[0]["_key"] == "user_9"
    assert people.loc[0, "name.firstName"] == "nine"


def test_one_person_per_user_even_with_two_members():
    people = frames.people_frame(
        [
            member("mber_2", "2025-02-01T00:00:00Z", "b@x.com", {"id": "user_1", "name": "Later"}),
            member("mber_1", "2025-01-01T00:00:00Z", "a@x.com", {"id": "user_1", "name": "First"}),
        ]
    )
    assert len(people) == 1 and people.loc[0, "name.firstName"] == "First"


def membership(id_, status="active", cancel=False, user="user_1", member_id="mber_1"):
    return {
        "id": id_,
        "created_at": "2025-03-04T10:00:00Z",
        "status": status,
        "cancel_at_period_end": cancel,
        "user_id": user,
        "member_id": member_id,
        "product_id": "prod_1",
        "product": {"id": "prod_1", "title": "Acme Signals Pro"},
        "initial_price": {"amount": "0.00", "currency": "usd"},
        "renewal_price": {"amount": "49.00", "currency": "usd"},
        "current_period_end": "2025-04-04T10:00:00Z",
    }


def test_opportunities():
    names = {"user_1": "Jane Doe"}
    opps = frames.opportunities_frame(
        [membership("mem_1"), membership("mem_2", "canceling", user=None, member_id="mber_biz")],
        names,
        "default",
    ).set_index("_key")
    first = opps.loc["mem_1"]
    assert first["name"] == "Acme Signals Pro · Jane Doe"
    assert first["stage"] == "CUSTOMER"
    assert first["amount.amountMicros"] == 49_000_000 and isinstance(
        first["amount.amountMicros"], int
    )
    assert first["amount.currencyCode"] == "USD"
    assert first["id"] == m.opportunity_id("default", "mem_1")
    assert first["_person_key"] == "user_1"
    assert first["_day"] == "2025-03-04"
    assert first["whopRenewalDate"] == "2025-04-04T10:00:00Z"
    assert opps.loc["mem_2", "_person_key"] == "mber_biz"
    assert opps.loc["mem_2", "stage"] == "NEGOTIATION"
    assert opps.loc["mem_2", "name"] == "Acme Signals Pro"


def test_notes_and_targets():
    payments = [
        payment("pay_1", "2025-03-04T23:59:59Z", user={"id": "user_1"}, membership_id="mem_1"),
        payment("pay_2", "2025-03-05T00:00:00+00:00", user={"id": "user_1"}),  # one-time purchase
        payment("pay_3", "2025-03-05T01:00:00Z", member_id="mber_biz", membership_id="mem_2"),
    ]
    notes = frames.notes_frame(payments, {"prod_1": "Course"}, "default").set_index("_key")
    assert notes.loc["pay_1", "title"] == "Payment succeeded · 10.00 USD · Course"
    assert notes.loc["pay_1", "_day"] == "2025-03-04"
    assert notes.loc["pay_2", "_day"] == "2025-03-05"
    targets = frames.note_targets_frame(payments, "default")
    assert sorted(targets["_key"]) == [
        "pay_1:opportunity",
        "pay_1:person",
        "pay_2:person",
        "pay_3:opportunity",
        "pay_3:person",
    ]
    biz = targets.set_index("_key").loc["pay_3:person"]
    assert biz["_target_key"] == "mber_biz"
    assert biz["noteId"] == m.note_id("default", "pay_3")


def test_product_title_falls_back_to_line_items():
    p = payment("pay_1", "2025-03-04T00:00:00Z", product="prod_unknown")
    p["line_items"] = [{"product_title": "From line item"}]
    assert frames.product_title_for(p, {}) == "From line item"


def test_unflatten_builds_composites_and_drops_private_columns():
    row = {
        "_key": "k",
        "name.firstName": "Ana",
        "name.lastName": "",
        "emails.primaryEmail": None,
        "x": 1,
    }
    assert crm_records.unflatten(row) == {
        "name": {"firstName": "Ana", "lastName": ""},
        "emails": {"primaryEmail": None},
        "x": 1,
    }


def test_frame_rows_are_plain_json_values():
    frame = pd.DataFrame(
        {"_key": ["a"], "n": [np.int64(5)], "f": [math.nan], "l": [["x@y.z"]]}, dtype=object
    )
    assert crm_records.frame_rows(frame) == [{"_key": "a", "n": 5, "f": None, "l": ["x@y.z"]}]
    assert type(crm_records.frame_rows(frame)[0]["n"]) is int


def test_equal_content_has_equal_digest_whatever_the_order():
    assert record_digest({"a": 1, "b": {"c": 2}}) == record_digest({"b": {"c": 2}, "a": 1})
    # Relations count: the same record pointing at another person is another digest.
    assert record_digest({"a": 1}, {"person": "u1"}) != record_digest({"a": 1}, {"person": "u2"})

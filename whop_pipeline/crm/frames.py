"""Raw Whop JSON → CRM frames (pandas), one function per Twenty object. Pure: no I/O.

Frame contract (what the loader relies on): every column not starting with ``_`` is a Twenty field,
named by its path (``name.firstName``, ``emails.primaryEmail``), and is sent as is, ``None`` included
(``null`` clears a field we own). ``_key`` is the row's source key (the ``sync_state`` key);
``_day`` is the UTC day of the source object's ``created_at`` (its daily partition); other ``_``
columns name records the loader must resolve to Twenty ids (``_person_key``, ``_target_key``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pandas as pd

from whop_pipeline.crm import mapping as m

Row = dict[str, Any]

PEOPLE_COLUMNS = [
    "_key",
    "name.firstName",
    "name.lastName",
    "emails.primaryEmail",
    "emails.additionalEmails",
    "whopUserId",
    "whopUsername",
    "whopProfileUrl.primaryLinkUrl",
]
PRODUCT_COLUMNS = ["_key", "name", "whopProductId", "whopRoute"]
OPPORTUNITY_COLUMNS = [
    "_key",
    "_day",
    "_person_key",
    "id",
    "name",
    "stage",
    "amount.amountMicros",
    "amount.currencyCode",
    "whopMembershipId",
    "whopMembershipStatus",
    "whopRenewalDate",
    "whopProductName",
]
NOTE_COLUMNS = ["_key", "_day", "id", "title", "bodyV2.markdown", "whopPaymentId"]
NOTE_TARGET_COLUMNS = ["_key", "_day", "_note_key", "_target_kind", "_target_key", "id", "noteId"]
TARGET_PERSON = "person"
TARGET_OPPORTUNITY = "opportunity"


def _frame(rows: list[Row], columns: list[str]) -> pd.DataFrame:
    # object dtype everywhere: ints stay exact ints (amountMicros) and None stays None, not NaN.
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return frame.sort_values("_key", kind="stable").reset_index(drop=True)


def utc_day(timestamp: str) -> str:
    """The UTC calendar day (partition key) of an ISO 8601 timestamp."""
    parsed = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).date().isoformat()


def _by_created(objects: Iterable[Row]) -> list[Row]:
    return sorted(objects, key=lambda o: (o.get("created_at") or "", o["id"]))


def payment_person_key(payment: Row) -> str | None:
    user = payment.get("user") or {}
    return m.person_key(user.get("id"), payment.get("member_id"))


def membership_person_key(membership: Row) -> str | None:
    return m.person_key(membership.get("user_id"), membership.get("member_id"))


def people_frame(members: Iterable[Row], payments: Iterable[Row] = ()) -> pd.DataFrame:
    """One Person per Whop user (or business member). Emails: the member's, else the latest
    payment's ``customer_email``; when two people share one ignoring case, the older member keeps it
    as primary and the other carries it under ``additionalEmails``."""
    payments = _by_created(payments)
    fallback_email: dict[str, str] = {}
    payer: dict[str, Row] = {}
    for payment in payments:  # oldest first: the latest email wins
        key = payment_person_key(payment)
        if key is None:
            continue
        if payment.get("customer_email"):
            fallback_email[key] = payment["customer_email"]
        payer.setdefault(key, payment)

    people: dict[str, tuple[str, str, str | None, str | None]] = {}
    for member in _by_created(members):
        key = m.member_person_key(member)
        if key in people:
            continue  # the same user as an older member: one person
        user = member.get("user") or {}
        people[key] = (
            member.get("created_at") or "",
            m.person_name(member),
            member.get("email"),
            user.get("username"),
        )
    # A payer whose member is not in the mirror yet still gets a person (from the payment's user).
    for key, payment in payer.items():
        if key not in people and payment.get("user"):
            user = payment["user"]
            name = (user.get("name") or user.get("username") or "").strip()
            people[key] = (payment.get("created_at") or "", name, None, user.get("username"))

    rows: list[Row] = []
    email_owner: dict[str, str] = {}
    for key, (_created, name, email, username) in sorted(
        people.items(), key=lambda item: (item[1][0], item[0])
    ):
        email = m.normalize_email(email) or m.normalize_email(fallback_email.get(key))
        primary, additional = email, None
        if email is not None:
            if email in email_owner:
                primary, additional = None, [email]
            else:
                email_owner[email] = key
        first, last = m.split_name(name)
        rows.append(
            {
                "_key": key,
                "name.firstName": first,
                "name.lastName": last,
                "emails.primaryEmail": primary,
                "emails.additionalEmails": additional,
                "whopUserId": key,
                "whopUsername": username,
                "whopProfileUrl.primaryLinkUrl": m.profile_url(username),
            }
        )
    return _frame(rows, PEOPLE_COLUMNS)


def products_frame(products: Iterable[Row]) -> pd.DataFrame:
    rows = [
        {
            "_key": p["id"],
            "name": p.get("title") or p["id"],
            "whopProductId": p["id"],
            "whopRoute": p.get("route"),
        }
        for p in products
    ]
    return _frame(rows, PRODUCT_COLUMNS)


def person_names(members: Iterable[Row]) -> dict[str, str]:
    """Person key → display name, for opportunity names (oldest member wins, as for people)."""
    names: dict[str, str] = {}
    for member in _by_created(members):
        names.setdefault(m.member_person_key(member), m.person_name(member))
    return names


def opportunities_frame(
    memberships: Iterable[Row], names: dict[str, str], connection: str
) -> pd.DataFrame:
    rows = []
    for membership in memberships:
        key = membership_person_key(membership)
        product_title = (membership.get("product") or {}).get("title") or membership["product_id"]
        micros, currency = m.membership_amount(membership)
        rows.append(
            {
                "_key": membership["id"],
                "_day": utc_day(membership["created_at"]),
                "_person_key": key,
                "id": m.opportunity_id(connection, membership["id"]),
                "name": m.opportunity_name(product_title, names.get(key or "", "")),
                "stage": m.membership_stage(
                    membership.get("status"), membership.get("cancel_at_period_end")
                ),
                "amount.amountMicros": micros,
                "amount.currencyCode": currency,
                "whopMembershipId": membership["id"],
                "whopMembershipStatus": membership.get("status"),
                "whopRenewalDate": membership.get("current_period_end"),
                "whopProductName": product_title,
            }
        )
    return _frame(rows, OPPORTUNITY_COLUMNS)


def product_title_for(payment: Row, product_titles: dict[str, str]) -> str:
    product_id = payment.get("product_id")
    if product_id and product_id in product_titles:
        return product_titles[product_id]
    for item in payment.get("line_items") or []:
        if item.get("product_title"):
            return item["product_title"]
    return product_id or "Whop"


def notes_frame(
    payments: Iterable[Row], product_titles: dict[str, str], connection: str
) -> pd.DataFrame:
    rows = []
    for payment in payments:
        title = product_title_for(payment, product_titles)
        amount, currency = m.payment_amount(payment)
        substatus = payment.get("substatus") or payment.get("status") or "unknown"
        rows.append(
            {
                "_key": payment["id"],
                "_day": utc_day(payment["created_at"]),
                "id": m.note_id(connection, payment["id"]),
                "title": m.note_title(substatus, amount, currency, title),
                "bodyV2.markdown": m.note_markdown(payment, title),
                "whopPaymentId": payment["id"],
            }
        )
    return _frame(rows, NOTE_COLUMNS)


def note_targets_frame(payments: Iterable[Row], connection: str) -> pd.DataFrame:
    """A payment's note points at its person, and at its opportunity when it has a membership
    (a one-time purchase has none)."""
    rows = []
    for payment in payments:
        targets = [
            (TARGET_PERSON, payment_person_key(payment)),
            (TARGET_OPPORTUNITY, payment.get("membership_id")),
        ]
        for kind, target_key in targets:
            if target_key is None:
                continue
            rows.append(
                {
                    "_key": f"{payment['id']}:{kind}",
                    "_day": utc_day(payment["created_at"]),
                    "_note_key": payment["id"],
                    "_target_kind": kind,
                    "_target_key": target_key,
                    "id": m.note_target_id(connection, payment["id"], kind),
                    "noteId": m.note_id(connection, payment["id"]),
                }
            )
    return _frame(rows, NOTE_TARGET_COLUMNS)

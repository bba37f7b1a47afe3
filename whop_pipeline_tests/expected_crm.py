"""What the CRM must hold after a sync, derived from the Whop dataset with the mapping rules of
README.md#the-mapping written out again here (not by calling the pipeline's own mapping), and
helpers to compare a CRM."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from whop_pipeline.sandbox.readings import live_records

STAGES = {
    ("active", False): "CUSTOMER",
    ("trialing", False): "CUSTOMER",
    ("past_due", False): "CUSTOMER",
    ("completed", False): "CUSTOMER",
    ("active", True): "NEGOTIATION",
    ("trialing", True): "NEGOTIATION",
    ("past_due", True): "NEGOTIATION",
    ("completed", True): "NEGOTIATION",
    ("canceling", False): "NEGOTIATION",
    ("canceling", True): "NEGOTIATION",
    ("canceled", False): "LOST",
    ("canceled", True): "LOST",
    ("expired", False): "LOST",
    ("expired", True): "LOST",
    ("unresolved", False): "LOST",
    ("unresolved", True): "LOST",
    ("drafted", False): "NEW",
    ("drafted", True): "NEW",
}


def expected_people(dataset) -> dict[str, dict[str, Any]]:
    """whopUserId → {primary, additional}: one person per user (or business member)."""
    members = sorted(dataset.rendered("members"), key=lambda m: (m["created_at"], m["id"]))
    people: dict[str, dict[str, Any]] = {}
    for member in members:
        key = member["user"]["id"] if member.get("user") else member["id"]
        people.setdefault(key, {"email": (member.get("email") or "").lower() or None})
    owners: dict[str, str] = {}
    result = {}
    for key, person in people.items():
        email = person["email"]
        if email and email not in owners:
            owners[email] = key
            result[key] = {"primary": email, "additional": None}
        elif email:
            result[key] = {"primary": None, "additional": [email]}
        else:
            result[key] = {"primary": None, "additional": None}
    return result


def membership_person(membership) -> str | None:
    return membership.get("user_id") or membership.get("member_id")


def payment_person(payment) -> str | None:
    return (payment.get("user") or {}).get("id") or payment.get("member_id")


def crm_by_source(dump: dict) -> dict[str, Any]:
    """The CRM keyed by Whop ids, relations expressed as Whop ids too (comparable across runs)."""
    people = {p["id"]: p for p in live_records(dump, "people")}
    person_key = {pid: p.get("whopUserId") for pid, p in people.items()}
    opps = {o["id"]: o for o in live_records(dump, "opportunities")}
    notes = {n["id"]: n for n in live_records(dump, "notes")}
    targets = defaultdict(set)
    for t in live_records(dump, "noteTargets"):
        note = notes[t["noteId"]]["whopPaymentId"]
        if t.get("targetPersonId"):
            targets[note].add(("person", person_key[t["targetPersonId"]]))
        if t.get("targetOpportunityId"):
            targets[note].add(("opportunity", opps[t["targetOpportunityId"]]["whopMembershipId"]))
    return {
        "people": {
            p["whopUserId"]: (
                p["name"]["firstName"],
                p["name"]["lastName"],
                p["emails"]["primaryEmail"],
                tuple(p["emails"].get("additionalEmails") or ()),
            )
            for p in people.values()
        },
        "opportunities": {
            o["whopMembershipId"]: (
                o["stage"],
                o["name"],
                o["amount"]["amountMicros"],
                o["amount"]["currencyCode"],
                person_key.get(o.get("pointOfContactId")),
                o.get("whopMembershipStatus"),
            )
            for o in opps.values()
        },
        "notes": {
            n["whopPaymentId"]: (n["title"], n["bodyV2"]["markdown"]) for n in notes.values()
        },
        "targets": dict(targets),
        "products": {p["whopProductId"]: p["name"] for p in live_records(dump, "whopProducts")},
    }


def assert_workspace_holds_exactly(dump: dict, data) -> None:
    """The independent expected-state check: a workspace holds exactly what ``data`` (one Whop
    account's dataset) implies: its people, opportunities, notes, targets and products, each once,
    and nothing else."""
    people = expected_people(data)
    live_people = live_records(dump, "people")
    assert {p["whopUserId"] for p in live_people} == set(people)
    assert len(live_people) == len(people)
    memberships = {m["id"] for m in data.rendered("memberships")}
    opps = live_records(dump, "opportunities")
    assert {o["whopMembershipId"] for o in opps} == memberships and len(opps) == len(memberships)
    payments = {p["id"]: p for p in data.rendered("payments")}
    notes = live_records(dump, "notes")
    assert {n["whopPaymentId"] for n in notes} == set(payments) and len(notes) == len(payments)
    expected_targets = {
        (pid, "person", payment_person(p)) for pid, p in payments.items() if payment_person(p)
    } | {
        (pid, "opportunity", p["membership_id"])
        for pid, p in payments.items()
        if p["membership_id"]
    }
    targets = crm_by_source(dump)["targets"]
    assert {(pid, kind, key) for pid, links in targets.items() for kind, key in links} == (
        expected_targets
    )
    assert len(live_records(dump, "noteTargets")) == len(expected_targets)
    products = {p["id"] for p in data.rendered("products")}
    assert {p["whopProductId"] for p in live_records(dump, "whopProducts")} == products

"""End to end: the sandbox's Whop dataset → `whop-pipeline sync` → the Twenty emulator holds exactly
what the dataset implies; re-syncs write nothing; one change costs one call."""

from __future__ import annotations

import pytest

from whop_pipeline.cli.sync import run_sync
from whop_pipeline.sandbox.readings import live_records, write_requests
from whop_pipeline_tests.expected_crm import (
    STAGES,
    crm_by_source,
    expected_people,
    membership_person,
    payment_person,
)
from whop_pipeline_tests.pipeline import Pipeline, set_env, start_test_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster, pytest.mark.e2e]


def sync(pipeline, monkeypatch, mode="full", **options):
    set_env(monkeypatch, pipeline.env())
    report = run_sync(mode, printer=lambda _line: None, **options)
    assert report.success, report.error
    return report


def test_full_sync_lands_exactly_the_dataset(pipeline, monkeypatch):
    data = pipeline.sandbox.whop.dataset
    report = sync(pipeline, monkeypatch)
    dump = pipeline.twenty_dump()

    people = expected_people(data)
    assert {p["whopUserId"] for p in live_records(dump, "people")} == set(people)
    assert len(live_records(dump, "people")) == len(people)  # no duplicates
    for record in live_records(dump, "people"):
        emails = record["emails"]
        assert emails["primaryEmail"] == people[record["whopUserId"]]["primary"]
        assert (emails.get("additionalEmails") or None) == people[record["whopUserId"]][
            "additional"
        ]

    person_ids = {p["whopUserId"]: p["id"] for p in live_records(dump, "people")}
    memberships = {m["id"]: m for m in data.rendered("memberships")}
    opps = live_records(dump, "opportunities")
    assert {o["whopMembershipId"] for o in opps} == set(memberships)
    for opp in opps:
        membership = memberships[opp["whopMembershipId"]]
        assert opp["stage"] == STAGES[(membership["status"], membership["cancel_at_period_end"])]
        assert opp["pointOfContactId"] == person_ids.get(membership_person(membership))
        price = membership.get("renewal_price") or membership["initial_price"]
        assert opp["amount"]["currencyCode"] == price["currency"].upper()
    assert {o["stage"] for o in opps} == {"CUSTOMER", "NEGOTIATION", "LOST", "NEW"}

    payments = {p["id"]: p for p in data.rendered("payments")}
    notes = live_records(dump, "notes")
    assert {n["whopPaymentId"] for n in notes} == set(payments)
    expected_targets = {
        (pid, "person", payment_person(p)) for pid, p in payments.items() if payment_person(p)
    } | {
        (pid, "opportunity", p["membership_id"])
        for pid, p in payments.items()
        if p["membership_id"]
    }
    targets = crm_by_source(dump)["targets"]
    assert {
        (pid, kind, key) for pid, links in targets.items() for kind, key in links
    } == expected_targets
    assert len(live_records(dump, "noteTargets")) == len(expected_targets)

    assert {p["whopProductId"] for p in live_records(dump, "whopProducts")} == {
        p["id"] for p in data.rendered("products")
    }
    assert report.counts("twenty_people")["created"] == len(people)
    assert report.counts("twenty_note_targets")["created"] == len(expected_targets)


def test_resync_writes_nothing_and_one_change_writes_one_call(pipeline, monkeypatch):
    sync(pipeline, monkeypatch)
    pipeline.reset_stats()
    report = sync(pipeline, monkeypatch)
    assert write_requests(pipeline.twenty_stats()) == {}
    assert report.counts("twenty_people")["unchanged"] == len(
        expected_people(pipeline.sandbox.whop.dataset)
    )

    active = next(
        m for m in pipeline.sandbox.whop.dataset.rendered("memberships") if m["status"] == "active"
    )
    pipeline.sandbox.whop.update_membership(active["id"], status="canceled")
    pipeline.reset_stats()
    report = sync(pipeline, monkeypatch)
    assert write_requests(pipeline.twenty_stats()) == {"POST /rest/batch/opportunities": 1}
    assert report.counts("twenty_opportunities")["updated"] == 1
    opp = next(
        o
        for o in live_records(pipeline.twenty_dump(), "opportunities")
        if o["whopMembershipId"] == active["id"]
    )
    assert opp["stage"] == "LOST" and opp["whopMembershipStatus"] == "canceled"


def test_an_existing_contact_is_linked_not_duplicated(sqlite_pipeline, monkeypatch):
    data = sqlite_pipeline.sandbox.whop.dataset
    member = next(m for m in data.rendered("members") if m.get("email") and m.get("user"))
    existing = sqlite_pipeline.sandbox.twenty.seed_record(
        "people",
        {
            "name": {"firstName": "Someone", "lastName": "Else"},
            "emails": {"primaryEmail": member["email"].upper()},
            "jobTitle": "CEO",
        },
    )
    sync(sqlite_pipeline, monkeypatch)
    dump = sqlite_pipeline.twenty_dump()
    people = live_records(dump, "people")
    matching = [p for p in people if p["emails"]["primaryEmail"] == member["email"].lower()]
    assert len(matching) == 1
    linked = matching[0]
    assert linked["id"] == existing["id"]
    assert linked["whopUserId"] == member["user"]["id"]
    assert linked["jobTitle"] == "CEO"  # a field the pipeline does not own survives
    opps = [
        o for o in live_records(dump, "opportunities") if o["pointOfContactId"] == existing["id"]
    ]
    assert opps, "the member's opportunities point at the existing contact"


def test_dry_run_writes_nothing(sqlite_pipeline, monkeypatch):
    report = sync(sqlite_pipeline, monkeypatch, dry_run=True)
    assert write_requests(sqlite_pipeline.twenty_stats()) == {}
    assert report.counts("twenty_people")["created"] == len(
        expected_people(sqlite_pipeline.sandbox.whop.dataset)
    )
    assert live_records(sqlite_pipeline.twenty_dump(), "people") == []


def test_faults_and_throttling_end_in_the_same_crm(sqlite_pipeline, monkeypatch, tmp_path):
    sync(sqlite_pipeline, monkeypatch)
    clean = crm_by_source(sqlite_pipeline.twenty_dump())

    rough = start_test_sandbox(twenty_fault_rate=0.10, fault_seed=3, twenty_rate_limit=30)
    try:
        faulty = Pipeline(rough, f"sqlite:///{tmp_path / 'faulty.db'}")
        monkeypatch.setenv("TWENTY_BATCH_SIZE", "20")
        sync(faulty, monkeypatch)
        stats = faulty.twenty_stats()
        assert stats["faults"] > 0 and stats["throttled"] > 0
        dump = faulty.twenty_dump()
        assert crm_by_source(dump) == clean
        for plural, key in [
            ("people", "whopUserId"),
            ("opportunities", "whopMembershipId"),
            ("notes", "whopPaymentId"),
        ]:
            values = [r[key] for r in dump[plural]]
            assert len(values) == len(set(values)), f"duplicate {plural}"
    finally:
        rough.stop()

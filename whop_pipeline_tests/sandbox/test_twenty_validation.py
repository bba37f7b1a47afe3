"""Contract: input validation, error shapes, single-record routes and delete semantics of the
Twenty emulator. Each test's docstring opens with the section of docs/twenty-api.md whose rule it
enforces (#rest-core-api, #error-bodies, #composite-fields, #standard-objects, #relations,
#notetarget-links, #note-body, #select-options)."""

from __future__ import annotations

import json
import uuid

import pytest

pytest_plugins = ("whop_pipeline_tests.sandbox.conftest_twenty",)
pytestmark = pytest.mark.sandbox


def test_flat_first_name_is_rejected_with_twentys_exact_body(twenty, twenty_client):
    """docs/twenty-api.md#error-bodies (#17636): flat ``firstName`` → 400 with the REST
    exception filter's body."""
    response = twenty_client.post("/rest/people", json={"firstName": "Ada"})
    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ['Object person doesn\'t have any "firstName" field.'],
    }
    flat_email = twenty_client.post("/rest/batch/people", json=[{"email": "a@x.com"}])
    assert twenty_client.messages(flat_email) == ['Object person doesn\'t have any "email" field.']
    assert twenty.dump()["people"] == []


def test_unknown_field_on_any_object_is_a_400(twenty_client):
    """docs/twenty-api.md#error-bodies: unknown fields (here the removed Note ``authorId``,
    docs/twenty-api.md#note-body) are rejected."""
    response = twenty_client.post("/rest/notes", json={"title": "t", "authorId": str(uuid.uuid4())})
    assert twenty_client.messages(response) == ['Object note doesn\'t have any "authorId" field.']


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"emails": {"primary": "a@x.com"}}, 'Invalid subfield primary for emails field "emails"'),
        ({"name": {"first": "A"}}, 'Invalid subfield first for full name field "name"'),
        ({"emails": "a@x.com"}, "Invalid object value 'a@x.com' for field \"emails\""),
        ({"jobTitle": 5}, 'Invalid string value 5 for text field "jobTitle"'),
        ({"phones": {"number": "1"}}, 'Invalid subfield number for phones field "phones"'),
    ],
)
def test_wrong_composite_shapes_are_rejected(twenty_client, body, message):
    """docs/twenty-api.md#composite-fields: composite subfields are checked by name and
    type."""
    response = twenty_client.post("/rest/people", json=body)
    assert response.status_code == 400
    assert twenty_client.messages(response) == [message]


def test_note_target_current_form_accepted_legacy_form_rejected(twenty, twenty_client):
    """docs/twenty-api.md#notetarget-links (≥ v1.17): ``targetPersonId``; the legacy
    ``personId`` is an unknown field."""
    person = twenty.seed_record("people", {"emails": {"primaryEmail": "t@x.com"}})
    note = twenty.seed_record("notes", {"title": "n"})
    ok = twenty_client.post(
        "/rest/noteTargets", json={"noteId": note["id"], "targetPersonId": person["id"]}
    )
    assert ok.status_code == 201
    assert ok.json()["data"]["createNoteTarget"]["targetPersonId"] == person["id"]
    legacy = twenty_client.post(
        "/rest/noteTargets", json={"noteId": note["id"], "personId": person["id"]}
    )
    assert twenty_client.messages(legacy) == [
        'Object noteTarget doesn\'t have any "personId" field.'
    ]


def test_note_target_legacy_server_takes_person_id_only(twenty_factory):
    """docs/twenty-api.md#notetarget-links (≤ v1.16): ``personId``/``opportunityId``; the new
    names are unknown."""
    emulator, client = twenty_factory(note_target_style="legacy")
    person = emulator.seed_record("people", {"emails": {"primaryEmail": "l@x.com"}})
    note = emulator.seed_record("notes", {"title": "n"})
    ok = client.post("/rest/noteTargets", json={"noteId": note["id"], "personId": person["id"]})
    assert ok.status_code == 201
    current = client.post(
        "/rest/noteTargets", json={"noteId": note["id"], "targetPersonId": person["id"]}
    )
    assert client.messages(current) == [
        'Object noteTarget doesn\'t have any "targetPersonId" field.'
    ]


def test_relation_ids_must_reference_existing_records(twenty, twenty_client):
    """docs/twenty-api.md#relations: bad relation input is a 400 (Twenty has foreign keys); the
    batch writes nothing."""
    missing = str(uuid.uuid4())
    response = twenty_client.post(
        "/rest/batch/opportunities",
        json=[{"name": "ok"}, {"name": "bad", "pointOfContactId": missing}],
    )
    assert response.status_code == 400
    assert twenty_client.messages(response) == [
        'insert or update on table "opportunity" violates foreign key constraint '
        '"FK_opportunity_pointOfContactId"'
    ]
    assert twenty.dump()["opportunities"] == []
    orphan = twenty_client.post("/rest/noteTargets", json={"noteId": missing})
    assert orphan.status_code == 400
    bad_uuid = twenty_client.post("/rest/opportunities", json={"companyId": "acme"})
    assert twenty_client.messages(bad_uuid) == ["Invalid UUID value 'acme' for field \"companyId\""]


def test_relation_to_a_soft_deleted_record_is_allowed(twenty, twenty_client):
    """docs/twenty-api.md#soft-deleted-records: soft-deleted rows stay in the table, so the
    foreign key is satisfied."""
    person = twenty.seed_record("people", {"emails": {"primaryEmail": "s@x.com"}})
    twenty_client.delete(f"/rest/people/{person['id']}", params={"soft_delete": "true"})
    response = twenty_client.post(
        "/rest/opportunities", json={"name": "o", "pointOfContactId": person["id"]}
    )
    assert response.status_code == 201


def test_relation_object_input_needs_connect_and_null_disconnects(twenty, twenty_client):
    """docs/twenty-api.md#relations: nested connect is version-dependent; a relation name with a
    plain value is rejected, ``null`` clears the link."""
    company = twenty.seed_record("companies", {"name": "Acme"})
    person = twenty.seed_record("people", {"companyId": company["id"]})
    response = twenty_client.post("/rest/people", json={"company": company["id"]})
    assert twenty_client.messages(response) == [
        'Relation "company" requires connect or disconnect operation'
    ]
    cleared = twenty_client.patch(f"/rest/people/{person['id']}", json={"company": None})
    assert cleared.json()["data"]["updatePerson"]["companyId"] is None
    one_to_many = twenty_client.post("/rest/people", json={"noteTargets": []})
    assert twenty_client.messages(one_to_many) == [
        "One-to-many relation noteTargets field does not support write operations."
    ]


def test_stage_must_be_a_current_option_and_defaults_to_new(twenty_client):
    """docs/twenty-api.md#select-options, Opportunity: ``stage`` is SELECT, non-null, default
    NEW; NEGOTIATION/LOST are not standard until added through the metadata API."""
    created = twenty_client.post("/rest/opportunities", json={"name": "o"})
    assert created.json()["data"]["createOpportunity"]["stage"] == "NEW"
    rejected = twenty_client.post("/rest/opportunities", json={"name": "o", "stage": "LOST"})
    assert twenty_client.messages(rejected) == ["Invalid value 'LOST' for field \"stage\""]
    null_stage = twenty_client.post("/rest/opportunities", json={"stage": None})
    assert twenty_client.messages(null_stage) == [
        'null value in column "stage" of relation "opportunity" violates not-null constraint'
    ]


def test_client_ids_must_be_valid_uuids(twenty_client):
    """docs/twenty-api.md#rest-core-api: clients may supply ids; they must be valid UUIDs."""
    response = twenty_client.post("/rest/batch/notes", json=[{"id": "note-1", "title": "t"}])
    assert twenty_client.messages(response) == ['Value "note-1" is not a valid UUID']
    chosen = str(uuid.uuid4())
    ok = twenty_client.post("/rest/notes", json={"id": chosen.upper(), "title": "t"})
    assert ok.json()["data"]["createNote"]["id"] == chosen


def test_amount_and_close_date_shapes(twenty_client):
    """docs/twenty-api.md#composite-fields, Opportunity: CURRENCY ``{amountMicros,
    currencyCode}``, DATE_TIME in ISO 8601."""
    response = twenty_client.post(
        "/rest/opportunities",
        json={
            "amount": {"amountMicros": "12500000", "currencyCode": "USD"},
            "closeDate": "2025-03-01T10:00:00+02:00",
        },
    )
    opportunity = response.json()["data"]["createOpportunity"]
    assert opportunity["amount"] == {"amountMicros": 12500000, "currencyCode": "USD"}
    assert opportunity["closeDate"] == "2025-03-01T08:00:00.000Z"
    bad = twenty_client.post("/rest/opportunities", json={"closeDate": "tomorrow"})
    assert twenty_client.messages(bad) == [
        "Invalid date time value 'tomorrow' for field \"closeDate\""
    ]


def test_note_body_v2_markdown_derives_blocknote(twenty_client):
    """docs/twenty-api.md#note-body: send ``bodyV2.markdown``; the server derives the BlockNote
    JSON."""
    markdown = "# Payment\n- amount: 12.50 USD\npaid"
    response = twenty_client.post(
        "/rest/notes", json={"title": "t", "bodyV2": {"markdown": markdown}}
    )
    body = response.json()["data"]["createNote"]["bodyV2"]
    assert body["markdown"] == markdown
    blocks = json.loads(body["blocknote"])
    assert [block["type"] for block in blocks] == ["heading", "bulletListItem", "paragraph"]
    assert blocks[1]["content"][0]["text"] == "amount: 12.50 USD"


def test_patch_is_partial_and_returns_update_singular(twenty, twenty_client):
    """docs/twenty-api.md#rest-core-api update one: ``PATCH`` → ``{data:{updatePerson}}``,
    omitted fields kept."""
    record = twenty.seed_record("people", {"jobTitle": "CEO", "city": "Oslo"})
    response = twenty_client.patch(f"/rest/people/{record['id']}", json={"city": "Bergen"})
    assert response.status_code == 200
    updated = response.json()["data"]["updatePerson"]
    assert (updated["jobTitle"], updated["city"]) == ("CEO", "Bergen")
    assert (
        twenty_client.put(f"/rest/people/{record['id']}", json={"city": "Rome"}).status_code == 200
    )


def test_get_one_and_missing_records(twenty, twenty_client):
    """docs/twenty-api.md#rest-core-api get one → ``{data:{person}}``; unknown or soft-deleted
    ids are 404 Record not found."""
    record = twenty.seed_record("people", {"jobTitle": "CTO"})
    found = twenty_client.get(f"/rest/people/{record['id']}")
    assert found.json()["data"]["person"]["jobTitle"] == "CTO"
    twenty_client.delete(f"/rest/people/{record['id']}", params={"soft_delete": "true"})
    for response in (
        twenty_client.get(f"/rest/people/{record['id']}"),
        twenty_client.patch(f"/rest/people/{uuid.uuid4()}", json={"city": "x"}),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "statusCode": 404,
            "error": "NotFoundException",
            "messages": ["Record not found"],
        }


def test_hard_delete_cascades_note_targets_and_nulls_points_of_contact(twenty, twenty_client):
    """docs/twenty-api.md#rest-core-api: DELETE without ``soft_delete`` destroys;
    docs/twenty-api.md#relations ON DELETE rules: deleting a note cascades to its targets,
    deleting a person clears ``pointOfContactId`` (SET_NULL)."""
    person = twenty.seed_record("people", {"emails": {"primaryEmail": "d@x.com"}})
    opportunity = twenty.seed_record("opportunities", {"pointOfContactId": person["id"]})
    note = twenty.seed_record("notes", {"title": "n"})
    twenty.seed_record(
        "noteTargets", {"noteId": note["id"], "targetOpportunityId": opportunity["id"]}
    )
    deleted = twenty_client.delete(f"/rest/notes/{note['id']}")
    assert deleted.json()["data"]["deleteNote"]["id"] == note["id"]
    assert twenty.dump()["noteTargets"] == []
    twenty_client.delete(f"/rest/people/{person['id']}")
    [kept] = twenty.dump()["opportunities"]
    assert kept["pointOfContactId"] is None
    assert twenty_client.delete(f"/rest/people/{person['id']}").status_code == 404


def test_request_shape_errors(twenty_client):
    """docs/twenty-api.md#rest-core-api: batch bodies are arrays; unknown objects and malformed
    JSON are 400s."""
    assert twenty_client.messages(twenty_client.post("/rest/batch/notes", json={"title": "x"})) == [
        "Body must be an array"
    ]
    assert twenty_client.messages(twenty_client.get("/rest/widgets")) == [
        "object 'widgets' not found"
    ]
    broken = twenty_client.post(
        "/rest/notes", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert twenty_client.get("/rest/people", params={"depth": "1"}).status_code == 400

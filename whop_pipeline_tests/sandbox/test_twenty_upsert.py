"""Contract: batch create and upsert semantics of the Twenty emulator. Each test's docstring
opens with the section of docs/twenty-api.md whose rule it enforces (#rest-core-api,
#batch-upsert, #unique-fields, #batch-size-limit, #idempotent-writes)."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytest_plugins = ("whop_pipeline_tests.sandbox.conftest_twenty",)
pytestmark = pytest.mark.sandbox


def person(email: str, first: str = "Ada", **extra: object) -> dict:
    return {
        "name": {"firstName": first, "lastName": "L"},
        "emails": {"primaryEmail": email},
        **extra,
    }


def upsert(client: httpx.Client, plural: str, rows: list[dict]) -> httpx.Response:
    return client.post(f"/rest/batch/{plural}", params={"upsert": "true"}, json=rows)


def test_batch_create_returns_201_keyed_create_plural_in_input_order(twenty_client):
    """docs/twenty-api.md#rest-core-api: batch responses are keyed
    ``create${capitalize(namePlural)}``, input order kept."""
    emails = [f"p{i}@x.com" for i in range(5)]
    response = twenty_client.post("/rest/batch/people", json=[person(e) for e in emails])
    assert response.status_code == 201
    created = response.json()["data"]["createPeople"]
    assert [row["emails"]["primaryEmail"] for row in created] == emails
    notes = twenty_client.post("/rest/batch/noteTargets", json=[]).json()
    assert notes["messages"] == ["Input must not be empty"]


def test_upsert_by_email_is_case_insensitive_and_keeps_the_existing_id(twenty, twenty_client):
    """docs/twenty-api.md#batch-upsert and #composite-fields: emails are lower-cased on write, so
    an upsert with another casing matches the stored person, and the returned record carries the
    matched id."""
    existing = twenty.seed_record("people", person("Grace@Example.COM", "Grace"))
    assert existing["emails"]["primaryEmail"] == "grace@example.com"
    response = upsert(twenty_client, "people", [person("GRACE@example.com", "Gracie")])
    assert response.status_code == 201
    [row] = response.json()["data"]["createPeople"]
    assert row["id"] == existing["id"]
    assert row["name"]["firstName"] == "Gracie"
    assert len(twenty.dump()["people"]) == 1


def test_upsert_matches_by_unique_custom_field_and_replaces_the_input_id(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields: custom fields created with ``isUnique`` join the
    conflict groups; the input id of a matched row is replaced by the matched record's id."""
    twenty_client.create_field("person", "whopUserId", isUnique=True)
    first = upsert(twenty_client, "people", [person("a@x.com", whopUserId="user_1")]).json()
    original_id = first["data"]["createPeople"][0]["id"]
    other_id = str(uuid.uuid4())
    second = upsert(
        twenty_client, "people", [{"id": other_id, "whopUserId": "user_1", "jobTitle": "CTO"}]
    )
    [row] = second.json()["data"]["createPeople"]
    assert row["id"] == original_id
    assert row["jobTitle"] == "CTO"
    assert [p["id"] for p in twenty.dump()["people"]] == [original_id]


def test_upsert_by_id_updates_partially_omitted_fields_kept_null_clears(twenty, twenty_client):
    """docs/twenty-api.md#batch-upsert: matched rows are updated partially: omitted fields kept,
    ``null`` clears; composite fields merge by subfield."""
    record = twenty.seed_record("people", person("keep@x.com", jobTitle="Engineer", city="Paris"))
    response = upsert(
        twenty_client,
        "people",
        [{"id": record["id"], "city": None, "name": {"firstName": "Renamed"}}],
    )
    [row] = response.json()["data"]["createPeople"]
    assert row["jobTitle"] == "Engineer"
    assert row["city"] is None
    assert row["name"] == {"firstName": "Renamed", "lastName": "L"}
    assert row["emails"]["primaryEmail"] == "keep@x.com"
    assert row["createdAt"] == record["createdAt"]


def test_upsert_restores_a_soft_deleted_match(twenty, twenty_client):
    """docs/twenty-api.md#soft-deleted-records: matching runs ``withDeleted()``; a soft-deleted
    match is restored (deletedAt null)."""
    record = twenty.seed_record("people", person("ghost@x.com"))
    deleted = twenty_client.delete(f"/rest/people/{record['id']}", params={"soft_delete": "true"})
    assert deleted.json()["data"]["deletePerson"]["deletedAt"] is not None
    assert twenty_client.get("/rest/people").json()["totalCount"] == 0
    [row] = upsert(twenty_client, "people", [person("ghost@x.com")]).json()["data"]["createPeople"]
    assert row["id"] == record["id"]
    assert row["deletedAt"] is None
    assert twenty_client.get("/rest/people").json()["totalCount"] == 1


def test_row_matching_two_records_is_a_400_and_nothing_is_written(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields: a row whose id matches A and whose email matches B
    throws UPSERT_MULTIPLE_MATCHING_RECORDS_CONFLICT and the whole call fails."""
    a = twenty.seed_record("people", person("a@x.com"))
    twenty.seed_record("people", person("b@x.com"))
    before = twenty.dump()
    response = upsert(
        twenty_client,
        "people",
        [person("new@x.com"), {"id": a["id"], "emails": {"primaryEmail": "b@x.com"}}],
    )
    assert response.status_code == 400
    [message] = twenty_client.messages(response)
    assert message.startswith("Multiple records found with the same unique field values for ")
    assert f"id (id: {a['id']})" in message
    assert "emails (emails.primaryEmail: b@x.com)" in message
    assert message.endswith("Cannot determine which record to update.")
    assert twenty.dump() == before


def test_two_new_rows_with_the_same_unique_value_fail_the_whole_call(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields: rows inside one call are not checked against each
    other; both inserts hit the unique index → 400 duplicate entry, and nothing of the batch is
    written."""
    response = upsert(
        twenty_client,
        "people",
        [person("solo@x.com"), person("dup@x.com"), person("DUP@x.com")],
    )
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["A duplicate entry was detected"]
    assert twenty.dump()["people"] == []


def test_two_new_rows_with_the_same_id_fail_the_whole_call(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields: deterministic ids must be deduplicated client-side; a
    repeated new id is a primary-key duplicate."""
    note_id = str(uuid.uuid4())
    response = upsert(
        twenty_client, "notes", [{"id": note_id, "title": "a"}, {"id": note_id, "title": "b"}]
    )
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["A duplicate entry was detected"]
    assert twenty.dump()["notes"] == []


def test_update_taking_another_records_unique_value_is_a_duplicate(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields: an update to a unique value another record holds
    (soft-deleted ones count) violates the unique index → 400 duplicate entry, record
    unchanged."""
    a = twenty.seed_record("people", person("a@x.com"))
    b = twenty.seed_record("people", person("b@x.com"))
    twenty_client.delete(f"/rest/people/{b['id']}", params={"soft_delete": "true"})
    response = twenty_client.patch(
        f"/rest/people/{a['id']}", json={"emails": {"primaryEmail": "B@x.com"}}
    )
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["A duplicate entry was detected"]
    assert twenty.dump()["people"][0]["emails"]["primaryEmail"] == "a@x.com"


def test_more_rows_than_the_maximum_is_a_400_with_the_limit_in_the_message(twenty_client):
    """docs/twenty-api.md#batch-size-limit: QUERY_MAX_RECORDS = 200; over it: "Maximum number
    of records to upsert is N."."""
    rows = [{"title": f"n{i}"} for i in range(201)]
    response = upsert(twenty_client, "notes", rows)
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["Maximum number of records to upsert is 200."]
    assert upsert(twenty_client, "notes", rows[:200]).status_code == 201


def test_configured_maximum_is_reported_so_clients_can_shrink(twenty_factory):
    """docs/twenty-api.md#batch-size-limit: older servers allow 60 per call; the client parses N
    from the message."""
    emulator, client = twenty_factory(max_batch=60)
    response = client.post("/rest/batch/notes", json=[{"title": str(i)} for i in range(61)])
    assert client.messages(response) == ["Maximum number of records to upsert is 60."]
    assert emulator.dump()["notes"] == []
    listed = client.get("/rest/notes", params={"limit": "500"})
    assert listed.status_code == 200


def test_plain_create_with_an_existing_id_is_a_400(twenty, twenty_client):
    """docs/twenty-api.md#batch-upsert: with ``upsert=false`` an existing id fails."""
    record = twenty.seed_record("notes", {"title": "first"})
    response = twenty_client.post("/rest/batch/notes", json=[{"id": record["id"], "title": "x"}])
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["A duplicate entry was detected"]
    single = twenty_client.post("/rest/notes", json={"id": record["id"], "title": "x"})
    assert single.status_code == 400


def test_plain_create_with_a_duplicate_unique_value_is_a_400(twenty, twenty_client):
    """docs/twenty-api.md#soft-deleted-records: with ``upsert=false`` a duplicate unique value
    is a 400, soft-deleted holders too."""
    record = twenty.seed_record("people", person("taken@x.com"))
    twenty_client.delete(f"/rest/people/{record['id']}", params={"soft_delete": "true"})
    response = twenty_client.post("/rest/people", json=person("TAKEN@x.com"))
    assert response.status_code == 400
    assert twenty_client.messages(response) == ["A duplicate entry was detected"]


def test_company_upsert_matches_on_domain_with_normalized_origin(twenty, twenty_client):
    """docs/twenty-api.md#unique-fields and #composite-fields, Company:
    ``domainName.primaryLinkUrl`` is unique; the URL origin is lower-cased and the trailing slash
    dropped before matching."""
    company = twenty.seed_record(
        "companies", {"name": "Acme", "domainName": {"primaryLinkUrl": "https://acme.com"}}
    )
    response = upsert(
        twenty_client,
        "companies",
        [{"name": "Acme Inc", "domainName": {"primaryLinkUrl": "https://ACME.com/"}}],
    )
    [row] = response.json()["data"]["createCompanies"]
    assert row["id"] == company["id"]
    assert row["name"] == "Acme Inc"


def test_single_create_with_upsert_uses_the_same_matching(twenty, twenty_client):
    """docs/twenty-api.md#rest-core-api: ``POST /rest/<plural>?upsert=true`` answers
    ``create<Singular>`` and upserts."""
    record = twenty.seed_record("people", person("one@x.com"))
    response = twenty_client.post(
        "/rest/people", params={"upsert": "true"}, json=person("one@x.com", "Changed")
    )
    assert response.status_code == 201
    body = response.json()["data"]["createPerson"]
    assert body["id"] == record["id"]
    assert body["name"]["firstName"] == "Changed"


def test_rerunning_the_same_batch_is_a_no_op_update(twenty, twenty_client):
    """docs/twenty-api.md#idempotent-writes: deterministic ids + upsert make re-runs updates,
    never duplicates."""
    note_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "note:pay_1"))
    rows = [{"id": note_id, "title": "Payment", "bodyV2": {"markdown": "**paid**"}}]
    first = upsert(twenty_client, "notes", rows).json()["data"]["createNotes"][0]
    second = upsert(twenty_client, "notes", rows).json()["data"]["createNotes"][0]
    assert first["id"] == second["id"] == note_id
    assert len(twenty.dump()["notes"]) == 1
    assert second["createdAt"] == first["createdAt"]


def test_created_by_is_server_filled_and_kept_on_update(twenty, twenty_client):
    """docs/twenty-api.md#standard-objects: createdBy/updatedBy are ACTOR values the server
    fills (source API, the key's name); client values are ignored and an upsert keeps
    createdBy."""
    response = twenty_client.post(
        "/rest/notes", json={"title": "t", "createdBy": {"source": "MANUAL", "name": "me"}}
    )
    note = response.json()["data"]["createNote"]
    actor = {"source": "API", "workspaceMemberId": None, "name": twenty.api_key_name, "context": {}}
    assert note["createdBy"] == actor
    assert note["updatedBy"] == actor
    [again] = upsert(twenty_client, "notes", [{"id": note["id"], "title": "u"}]).json()["data"][
        "createNotes"
    ]
    assert again["createdBy"] == actor

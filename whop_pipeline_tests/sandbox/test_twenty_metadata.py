"""Contract: the metadata REST API of the Twenty emulator: discovery, custom fields, SELECT
options, custom objects and the public endpoints. Each test's docstring opens with the section of
docs/twenty-api.md whose rule it enforces (#metadata-api, #custom-fields, #select-options,
#capability-discovery, #authentication)."""

from __future__ import annotations

import httpx
import pytest

pytest_plugins = ("whop_pipeline_tests.sandbox.conftest_twenty",)
pytestmark = pytest.mark.sandbox

FIELD_KEYS = {
    "id",
    "type",
    "name",
    "label",
    "isNullable",
    "isUnique",
    "defaultValue",
    "options",
    "objectMetadataId",
    "isCustom",
    "isActive",
    "relation",
}
OBJECT_KEYS = {
    "id",
    "nameSingular",
    "namePlural",
    "labelSingular",
    "labelPlural",
    "isCustom",
    "isActive",
    "fields",
}


def objects_by_name(client: httpx.Client) -> dict[str, dict]:
    body = client.get("/rest/metadata/objects").json()
    return {obj["nameSingular"]: obj for obj in body["data"]["objects"]}


def fields_by_name(obj: dict) -> dict[str, dict]:
    return {field["name"]: field for field in obj["fields"]}


def test_objects_list_shape_and_standard_objects(twenty_client):
    """docs/twenty-api.md#metadata-api: ``{data:{objects:[...]}, pageInfo, totalCount}``;
    objects carry their fields."""
    body = twenty_client.get("/rest/metadata/objects").json()
    assert set(body) == {"data", "pageInfo", "totalCount"}
    assert body["totalCount"] == len(body["data"]["objects"]) == 5
    objects = {obj["nameSingular"]: obj for obj in body["data"]["objects"]}
    assert {name: obj["namePlural"] for name, obj in objects.items()} == {
        "person": "people",
        "company": "companies",
        "opportunity": "opportunities",
        "note": "notes",
        "noteTarget": "noteTargets",
    }
    for obj in objects.values():
        assert set(obj) >= OBJECT_KEYS
        assert obj["isCustom"] is False
        for field in obj["fields"]:
            assert set(field) >= FIELD_KEYS
            assert field["objectMetadataId"] == obj["id"]
    person = fields_by_name(objects["person"])
    assert person["emails"]["type"] == "EMAILS" and person["emails"]["isUnique"] is True
    assert person["name"]["type"] == "FULL_NAME"
    assert fields_by_name(objects["company"])["domainName"]["isUnique"] is True
    assert fields_by_name(objects["note"])["bodyV2"]["type"] == "RICH_TEXT"


def test_default_stages_have_ids_labels_positions_colors_and_no_negotiation(twenty_client):
    """docs/twenty-api.md#select-options: default stages NEW, SCREENING, MEETING, PROPOSAL,
    CUSTOMER; no NEGOTIATION, LOST."""
    stage = fields_by_name(objects_by_name(twenty_client)["opportunity"])["stage"]
    assert stage["type"] == "SELECT"
    assert stage["defaultValue"] == "'NEW'"
    assert stage["isNullable"] is False
    assert [option["value"] for option in stage["options"]] == [
        "NEW",
        "SCREENING",
        "MEETING",
        "PROPOSAL",
        "CUSTOMER",
    ]
    assert [option["position"] for option in stage["options"]] == [0, 1, 2, 3, 4]
    assert all(option["id"] and option["label"] and option["color"] for option in stage["options"])


def test_note_target_links_are_discoverable_in_both_styles(twenty_client, twenty_factory):
    """docs/twenty-api.md#capability-discovery: link names are derived from metadata:
    ``targetPerson`` (MORPH_RELATION, join column ``targetPersonId``) on current servers,
    ``person`` (``personId``) on legacy ones (docs/twenty-api.md#notetarget-links)."""
    current = fields_by_name(objects_by_name(twenty_client)["noteTarget"])
    assert current["targetPerson"]["type"] == "MORPH_RELATION"
    assert current["targetPerson"]["settings"]["joinColumnName"] == "targetPersonId"
    assert current["targetOpportunity"]["relation"]["targetObjectMetadata"]["nameSingular"] == (
        "opportunity"
    )
    assert "person" not in current
    _, legacy_client = twenty_factory(note_target_style="legacy")
    legacy = fields_by_name(objects_by_name(legacy_client)["noteTarget"])
    assert legacy["person"]["type"] == "RELATION"
    assert legacy["person"]["settings"]["joinColumnName"] == "personId"
    assert "targetPerson" not in legacy


def test_create_unique_text_field_returns_create_one_field(twenty_client):
    """docs/twenty-api.md#metadata-api: ``POST /rest/metadata/fields`` with a flat body →
    ``{data:{createOneField}}``."""
    object_id = twenty_client.object_id("person")
    response = twenty_client.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": object_id,
            "type": "TEXT",
            "name": "whopUserId",
            "label": "Whop user id",
            "isUnique": True,
            "isNullable": True,
        },
    )
    assert response.status_code == 201
    field = response.json()["data"]["createOneField"]
    assert set(field) >= FIELD_KEYS
    assert (field["name"], field["type"], field["isUnique"], field["isCustom"]) == (
        "whopUserId",
        "TEXT",
        True,
        True,
    )
    assert field["objectMetadataId"] == object_id
    listed = fields_by_name(objects_by_name(twenty_client)["person"])
    assert listed["whopUserId"]["id"] == field["id"]
    assert (
        twenty_client.get(f"/rest/metadata/fields/{field['id']}").json()["data"]["field"]["name"]
        == "whopUserId"
    )


def test_new_field_appears_on_existing_and_new_records(twenty, twenty_client):
    """docs/twenty-api.md#custom-fields: a new custom field is writable at once; existing rows
    read its default (null)."""
    existing = twenty.seed_record("opportunities", {"name": "old"})
    twenty_client.create_field("opportunity", "whopRenewalDate", type="DATE_TIME")
    twenty_client.create_field("opportunity", "seats", type="NUMBER")
    record = twenty_client.get(f"/rest/opportunities/{existing['id']}").json()["data"][
        "opportunity"
    ]
    assert record["whopRenewalDate"] is None and record["seats"] is None
    created = twenty_client.post(
        "/rest/opportunities", json={"whopRenewalDate": "2025-06-01T00:00:00Z", "seats": 3}
    )
    assert created.json()["data"]["createOpportunity"]["seats"] == 3


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "jobTitle",
            "Name 'jobTitle' is not available, check that it is not duplicating "
            "another field's name.",
        ),
        (
            "company",
            "Name 'company' is not available, check that it is not duplicating "
            "another field's name.",
        ),
        ("whop_user_id", "whop_user_id should be in camelCase"),
        ("WhopUserId", "WhopUserId should be in camelCase"),
    ],
)
def test_field_names_are_camel_case_and_unique_per_object(twenty_client, name, message):
    """docs/twenty-api.md#custom-fields: names are camelCase and not taken on the object (a
    duplicate name is a 400)."""
    response = twenty_client.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": twenty_client.object_id("person"),
            "type": "TEXT",
            "name": name,
            "label": "x",
        },
    )
    assert response.status_code == 400
    assert twenty_client.messages(response) == [message]


def test_creating_the_same_custom_field_twice_is_a_400(twenty_client):
    """docs/twenty-api.md#custom-fields: create each field only if missing; the second create
    is refused."""
    twenty_client.create_field("note", "whopPaymentId", isUnique=True)
    again = twenty_client.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": twenty_client.object_id("note"),
            "type": "TEXT",
            "name": "whopPaymentId",
            "label": "again",
        },
    )
    assert again.status_code == 400


def test_adding_stages_with_a_full_option_list_keeps_ids(twenty_client):
    """docs/twenty-api.md#select-options: PATCH the stage field with every existing option (ids
    kept) plus new ones → ``{data:{updateOneField}}``; the new values are then accepted on
    records."""
    field_id = twenty_client.field_id("opportunity", "stage")
    current = twenty_client.get(f"/rest/metadata/fields/{field_id}").json()["data"]["field"]
    options = current["options"] + [
        {"value": "NEGOTIATION", "label": "Negotiation", "position": 5, "color": "orange"},
        {"value": "LOST", "label": "Lost", "position": 6, "color": "gray"},
    ]
    response = twenty_client.patch(f"/rest/metadata/fields/{field_id}", json={"options": options})
    assert response.status_code == 200
    updated = response.json()["data"]["updateOneField"]
    assert [o["value"] for o in updated["options"]][-2:] == ["NEGOTIATION", "LOST"]
    assert [o["id"] for o in updated["options"]][:5] == [o["id"] for o in current["options"]]
    created = twenty_client.post("/rest/opportunities", json={"name": "o", "stage": "LOST"})
    assert created.json()["data"]["createOpportunity"]["stage"] == "LOST"


def test_option_values_must_be_upper_snake_case_and_nothing_changes(twenty_client):
    """docs/twenty-api.md#select-options: "Value must be in UPPER_CASE and follow snake_case";
    a refused update changes nothing."""
    field_id = twenty_client.field_id("opportunity", "stage")
    current = twenty_client.get(f"/rest/metadata/fields/{field_id}").json()["data"]["field"]
    bad = current["options"] + [{"value": "Negotiation", "label": "Negotiation", "position": 5}]
    response = twenty_client.patch(f"/rest/metadata/fields/{field_id}", json={"options": bad})
    assert response.status_code == 400
    assert twenty_client.messages(response) == [
        "Value must be in UPPER_CASE and follow snake_case 'Negotiation'"
    ]
    after = twenty_client.get(f"/rest/metadata/fields/{field_id}").json()["data"]["field"]
    assert after["options"] == current["options"]
    duplicate = current["options"] + [{"value": "NEW", "label": "Again", "position": 9}]
    assert twenty_client.messages(
        twenty_client.patch(f"/rest/metadata/fields/{field_id}", json={"options": duplicate})
    ) == ["Duplicated option value"]


def test_removing_an_option_in_use_moves_records_to_the_default(twenty, twenty_client):
    """docs/twenty-api.md#select-options: options are a full replacement; dropping one still in
    use is destructive."""
    record = twenty.seed_record("opportunities", {"stage": "PROPOSAL"})
    field_id = twenty_client.field_id("opportunity", "stage")
    current = twenty_client.get(f"/rest/metadata/fields/{field_id}").json()["data"]["field"]
    kept = [option for option in current["options"] if option["value"] != "PROPOSAL"]
    assert (
        twenty_client.patch(f"/rest/metadata/fields/{field_id}", json={"options": kept}).status_code
        == 200
    )
    stored = twenty_client.get(f"/rest/opportunities/{record['id']}").json()["data"]["opportunity"]
    assert stored["stage"] == "NEW"


def test_making_a_field_unique_fails_on_existing_duplicates(twenty, twenty_client):
    """docs/twenty-api.md#custom-fields: setting ``isUnique`` builds a unique index and fails if
    duplicates exist."""
    field = twenty_client.create_field("person", "whopUsername")
    twenty.seed_record("people", {"whopUsername": "same"})
    twenty.seed_record("people", {"whopUsername": "same"})
    refused = twenty_client.patch(
        f"/rest/metadata/fields/{field['id']}", json={"isUnique": True, "label": "Username"}
    )
    assert refused.status_code == 400
    still = twenty_client.get(f"/rest/metadata/fields/{field['id']}").json()["data"]["field"]
    assert (still["isUnique"], still["label"]) == (False, "whopUsername")
    type_change = twenty_client.patch(
        f"/rest/metadata/fields/{field['id']}", json={"type": "NUMBER"}
    )
    assert twenty_client.messages(type_change) == [
        "Field 'type' is not defined by type 'UpdateFieldInput'."
    ]


def test_custom_object_gets_name_field_system_fields_and_rest_routes(twenty, twenty_client):
    """docs/twenty-api.md#metadata-api ``createOneObject``: a custom object has a default
    ``name`` field and the system fields; its REST routes work at once, and unique custom fields
    drive its upserts (docs/twenty-api.md#unique-fields)."""
    response = twenty_client.post(
        "/rest/metadata/objects",
        json={
            "nameSingular": "whopProduct",
            "namePlural": "whopProducts",
            "labelSingular": "Whop product",
            "labelPlural": "Whop products",
        },
    )
    assert response.status_code == 201
    created = response.json()["data"]["createOneObject"]
    assert created["isCustom"] is True
    field_names = {field["name"] for field in created["fields"]}
    assert {
        "id",
        "name",
        "createdAt",
        "updatedAt",
        "deletedAt",
        "position",
        "createdBy",
    } <= field_names
    twenty_client.create_field("whopProduct", "whopProductId", isUnique=True)
    rows = [{"name": "Course", "whopProductId": "prod_1"}]
    first = twenty_client.post("/rest/batch/whopProducts", params={"upsert": "true"}, json=rows)
    assert first.status_code == 201
    rows[0]["name"] = "Course v2"
    second = twenty_client.post("/rest/batch/whopProducts", params={"upsert": "true"}, json=rows)
    assert (
        second.json()["data"]["createWhopProducts"][0]["id"]
        == first.json()["data"]["createWhopProducts"][0]["id"]
    )
    assert [p["name"] for p in twenty.dump()["whopProducts"]] == ["Course v2"]
    assert "targetWhopProduct" in fields_by_name(objects_by_name(twenty_client)["noteTarget"])


def test_custom_object_name_rules(twenty_client):
    """docs/twenty-api.md#metadata-api: object names are camelCase, singular ≠ plural, and not
    already taken."""

    def create(**body: str) -> httpx.Response:
        base = {"labelSingular": "X", "labelPlural": "Xs"}
        return twenty_client.post("/rest/metadata/objects", json={**base, **body})

    assert twenty_client.messages(create(nameSingular="person", namePlural="persons")) == [
        "Object already exists"
    ]
    assert twenty_client.messages(create(nameSingular="thing", namePlural="thing")) == [
        "The singular and plural name cannot be the same for an object"
    ]
    assert create(nameSingular="Bad_name", namePlural="badNames").status_code == 400


def test_reset_with_data_drops_custom_metadata(twenty, twenty_client):
    """docs/twenty-api.md#custom-fields: a reset workspace is the initial one again (fields
    created again get the same id)."""
    first = twenty_client.create_field("person", "whopProfileUrl")
    twenty.reset(data=True)
    assert "whopProfileUrl" not in fields_by_name(objects_by_name(twenty_client)["person"])
    again = twenty_client.create_field("person", "whopProfileUrl")
    assert again["id"] == first["id"]


def test_public_client_config_and_health(twenty_session):
    """docs/twenty-api.md#authentication and #capability-discovery: ``/client-config`` is public
    and carries ``appVersion``; ``/healthz`` too."""
    url = twenty_session[1].url
    config = httpx.get(f"{url}/client-config")
    assert config.status_code == 200 and config.json()["appVersion"]
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"

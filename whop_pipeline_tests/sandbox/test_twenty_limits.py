"""Contract: authentication, rate limiting, injected faults and the control endpoints of the Twenty
emulator. Each test's docstring opens with the section of docs/twenty-api.md whose rule it enforces
(#authentication, #error-bodies, #rate-limit)."""

from __future__ import annotations

import httpx
import pytest

pytest_plugins = ("whop_pipeline_tests.sandbox.conftest_twenty",)
pytestmark = pytest.mark.sandbox


def test_missing_or_wrong_key_is_refused_by_the_guard(twenty_session):
    """docs/twenty-api.md#authentication: ``Authorization: Bearer <key>``. Twenty's JWT guard
    refuses with Nest's 403 "Forbidden resource" (twentyhq/twenty#8449), on core and metadata
    routes alike."""
    with httpx.Client(base_url=twenty_session[1].url) as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "twenty-test-key"},
        ):
            for route in ("/rest/people", "/rest/metadata/objects"):
                response = anonymous.get(route, headers=headers)
                assert response.status_code == 403
                assert response.json() == {
                    "statusCode": 403,
                    "error": "ForbiddenException",
                    "messages": ["Forbidden resource"],
                }


def test_over_the_limit_is_429_with_twentys_body_and_retry_after(twenty_factory):
    """docs/twenty-api.md#rate-limit: long bucket N per 60000 ms; over it REST answers 429
    "Limit reached (N tokens per 60000 ms)" with a Retry-After header."""
    _, client = twenty_factory(rate_limit_per_minute=3)
    for _ in range(3):
        assert client.get("/rest/people").status_code == 200
    response = client.get("/rest/people")
    assert response.status_code == 429
    assert response.json() == {
        "statusCode": 429,
        "error": "HttpException",
        "messages": ["Limit reached (3 tokens per 60000 ms)"],
    }
    assert 15 <= int(response.headers["Retry-After"]) <= 20  # one token per 20 s
    assert client.get("/_sandbox/stats").json()["throttled"] == 1


def test_a_batch_call_costs_one_token_and_metadata_calls_count(twenty_factory):
    """docs/twenty-api.md#rate-limit: each call costs one token whatever it carries; metadata
    calls count too."""
    _, client = twenty_factory(rate_limit_per_minute=3)
    batch = client.post("/rest/batch/notes", json=[{"title": str(i)} for i in range(200)])
    assert batch.status_code == 201
    assert client.get("/rest/metadata/objects").status_code == 200
    assert client.get("/rest/notes", params={"limit": "200"}).json()["totalCount"] == 200
    assert client.get("/rest/metadata/fields").status_code == 429


def test_only_authenticated_api_calls_spend_tokens(twenty_factory):
    """docs/twenty-api.md#rate-limit: the throttle applies to API-key traffic only: control
    routes, public routes and refused requests spend nothing."""
    _, client = twenty_factory(rate_limit_per_minute=2)
    for _ in range(5):
        client.get("/_sandbox/stats")
        client.get("/_sandbox/dump")
        client.get("/client-config")
        client.get("/healthz")
        client.get("/rest/people", headers={"Authorization": ""})  # no key: 403
    assert client.get("/rest/people").status_code == 200
    assert client.get("/rest/people").status_code == 200
    assert client.get("/rest/people").status_code == 429
    stats = client.get("/_sandbox/stats").json()
    assert stats["requests"]["GET /rest/people"] == 8
    assert "GET /_sandbox/dump" not in stats["requests"]


def test_rate_limit_can_be_changed_while_running(twenty_factory):
    """docs/twenty-api.md#rate-limit (Cloud is stricter, #14122): the limit is a setting, from
    Python or over HTTP."""
    emulator, client = twenty_factory()
    emulator.set_rate_limit(1)
    assert client.get("/rest/notes").status_code == 200
    throttled = client.get("/rest/notes")
    assert client.messages(throttled) == ["Limit reached (1 tokens per 60000 ms)"]
    assert client.post("/_sandbox/rate-limit", json={"perMinute": 1000}).status_code == 200
    client.post("/_sandbox/reset")
    assert client.get("/rest/notes").status_code == 200
    assert client.post("/_sandbox/rate-limit", json={"perMinute": 0}).status_code == 400


def test_injected_faults_use_twentys_bodies_and_are_counted(twenty_factory):
    """docs/twenty-api.md#error-bodies and #rate-limit: injected 500s and 429s look like the real
    server's; dropped connections cut the response; every fault is counted in
    ``/_sandbox/stats``; control routes are never faulted."""
    emulator, client = twenty_factory(fault_rate=1.0, fault_seed=3)
    statuses = []
    for _ in range(12):
        try:
            response = client.get("/rest/people")
        except httpx.HTTPError:
            statuses.append("drop")
            continue
        statuses.append(response.status_code)
        body = response.json()
        assert set(body) == {"statusCode", "error", "messages"}
        if response.status_code == 429:
            assert body["error"] == "HttpException"
            assert body["messages"] == ["Limit reached (100 tokens per 60000 ms)"]
            assert int(response.headers["Retry-After"]) >= 1
        else:
            assert body == {
                "statusCode": 500,
                "error": "InternalServerErrorException",
                "messages": ["Internal server error"],
            }
    assert {500, 429, "drop"} <= set(statuses)
    stats = client.get("/_sandbox/stats").json()
    assert stats["faults"] == 12
    assert stats["throttled"] == statuses.count(429)
    assert client.get("/_sandbox/dump").status_code == 200
    assert emulator.dump()["people"] == []


def test_latency_is_added_to_api_calls(twenty_factory):
    emulator, client = twenty_factory(latency_ms=80)
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    emulator.faults.sleep = record_sleep
    assert client.get("/rest/people").status_code == 200
    assert delays == [0.08]
    client.get("/_sandbox/stats")
    assert delays == [0.08]  # control routes: no latency


def test_dump_lists_every_object_with_soft_deleted_records(twenty, twenty_client):
    """Control: ``/_sandbox/dump`` keys every object by plural (custom ones too) and keeps
    soft-deleted records with ``deletedAt``, shaped as the REST API returns them."""
    twenty_client.post(
        "/rest/metadata/objects",
        json={
            "nameSingular": "whopProduct",
            "namePlural": "whopProducts",
            "labelSingular": "Whop product",
            "labelPlural": "Whop products",
        },
    )
    kept = twenty_client.post("/rest/notes", json={"title": "kept"}).json()["data"]["createNote"]
    gone = twenty_client.post("/rest/notes", json={"title": "gone"}).json()["data"]["createNote"]
    twenty_client.delete(f"/rest/notes/{gone['id']}", params={"soft_delete": "true"})
    dump = twenty_client.get("/_sandbox/dump").json()
    assert set(dump) == {
        "people",
        "companies",
        "opportunities",
        "notes",
        "noteTargets",
        "whopProducts",
    }
    notes = {note["title"]: note for note in dump["notes"]}
    assert notes["kept"] == twenty_client.get(f"/rest/notes/{kept['id']}").json()["data"]["note"]
    assert notes["gone"]["deletedAt"] is not None
    assert dump == twenty.dump()


def test_reset_clears_stats_and_optionally_data(twenty, twenty_client):
    """Control: ``POST /_sandbox/reset`` clears stats; ``?data=true`` also clears records and
    custom metadata."""
    twenty_client.create_field("person", "whopUserId", isUnique=True)
    twenty_client.post("/rest/people", json={"whopUserId": "u1"})
    assert twenty_client.post("/_sandbox/reset").status_code == 200
    assert twenty_client.get("/_sandbox/stats").json()["total"] == 0
    assert len(twenty.dump()["people"]) == 1
    twenty_client.post("/_sandbox/reset", params={"data": "true"})
    assert twenty.dump()["people"] == []
    response = twenty_client.post("/rest/people", json={"whopUserId": "u1"})
    assert twenty_client.messages(response) == [
        'Object person doesn\'t have any "whopUserId" field.'
    ]


def test_seed_endpoint_mirrors_seed_record(twenty, twenty_client):
    """Control: ``POST /_sandbox/seed/<plural>`` pre-creates records (validated, no token)."""
    response = twenty_client.post(
        "/_sandbox/seed/people", json=[{"emails": {"primaryEmail": "Pre@X.com"}}]
    )
    assert response.status_code == 201
    [seeded] = response.json()["data"]
    assert seeded["emails"]["primaryEmail"] == "pre@x.com"
    bad = twenty_client.post(
        "/_sandbox/seed/people", json=[{"emails": {"primaryEmail": "b@x.com"}}, {"firstName": "x"}]
    )
    assert bad.status_code == 400
    assert [p["id"] for p in twenty.dump()["people"]] == [seeded["id"]]
    assert twenty_client.get("/_sandbox/stats").json()["total"] == 0

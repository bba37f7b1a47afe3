"""Contract: list calls of the Twenty emulator: filter, order_by, limit, cursors, totalCount and
soft-deleted visibility. Each test's docstring opens with the section of docs/twenty-api.md whose
rule it enforces (#rest-core-api, #filters, #ordering-and-paging, #soft-deleted-records)."""

from __future__ import annotations

import pytest

from whop_pipeline.sandbox.twenty import TwentyEmulator

pytest_plugins = ("whop_pipeline_tests.sandbox.conftest_twenty",)
pytestmark = pytest.mark.sandbox


def seed_people(twenty: TwentyEmulator, count: int) -> list[dict]:
    return [
        twenty.seed_record(
            "people",
            {
                "name": {"firstName": f"F{i:02d}", "lastName": "Even" if i % 2 == 0 else "Odd"},
                "emails": {"primaryEmail": f"p{i:02d}@x.com"},
                "city": None if i % 3 == 0 else f"City{i % 4}",
            },
        )
        for i in range(count)
    ]


def emails(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["emails"]["primaryEmail"] for row in response.json()["data"]["people"]]


def test_list_shape_default_limit_and_total_count(twenty, twenty_client):
    """docs/twenty-api.md#rest-core-api list → ``{data:{people}, totalCount, pageInfo}``;
    docs/twenty-api.md#ordering-and-paging ``limit`` defaults to 60."""
    seed_people(twenty, 65)
    body = twenty_client.get("/rest/people").json()
    assert set(body) == {"data", "totalCount", "pageInfo"}
    assert len(body["data"]["people"]) == 60
    assert body["totalCount"] == 65
    assert body["pageInfo"]["hasNextPage"] is True
    assert set(body["pageInfo"]) >= {"hasNextPage", "startCursor", "endCursor"}


def test_limit_is_silently_capped_at_the_maximum(twenty, twenty_client):
    """docs/twenty-api.md#ordering-and-paging: ``limit`` above QUERY_MAX_RECORDS (200) is
    capped, not refused."""
    twenty_client.post("/rest/batch/notes", json=[{"title": str(i)} for i in range(200)])
    twenty_client.post("/rest/batch/notes", json=[{"title": str(i)} for i in range(10)])
    body = twenty_client.get("/rest/notes", params={"limit": "1000"}).json()
    assert len(body["data"]["notes"]) == 200
    assert body["totalCount"] == 210
    bad = twenty_client.get("/rest/notes", params={"limit": "many"})
    assert twenty_client.messages(bad) == ["limit 'many' is invalid. Should be an integer"]


def test_cursor_paging_visits_every_record_once(twenty, twenty_client):
    """docs/twenty-api.md#ordering-and-paging: pass ``starting_after=<endCursor>`` until
    ``hasNextPage`` is false."""
    seed_people(twenty, 25)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "10", "order_by": "emails.primaryEmail[DescNullsLast]"}
        if cursor:
            params["starting_after"] = cursor
        body = twenty_client.get("/rest/people", params=params).json()
        seen += [row["emails"]["primaryEmail"] for row in body["data"]["people"]]
        pages += 1
        assert body["totalCount"] == 25
        if not body["pageInfo"]["hasNextPage"]:
            break
        cursor = body["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == sorted((f"p{i:02d}@x.com" for i in range(25)), reverse=True)


def test_ending_before_pages_backwards(twenty, twenty_client):
    """docs/twenty-api.md#ordering-and-paging: ``ending_before`` pages backwards (never both
    cursors)."""
    seed_people(twenty, 12)
    order = {"order_by": "emails.primaryEmail"}
    last_page = twenty_client.get("/rest/people", params={**order, "limit": "200"}).json()
    cursor = twenty_client.get("/rest/people", params={**order, "limit": "8"}).json()["pageInfo"][
        "endCursor"
    ]
    before = twenty_client.get(
        "/rest/people", params={**order, "limit": "3", "ending_before": cursor}
    )
    assert emails(before) == ["p04@x.com", "p05@x.com", "p06@x.com"]
    assert len(last_page["data"]["people"]) == 12
    both = twenty_client.get(
        "/rest/people", params={"starting_after": cursor, "ending_before": cursor}
    )
    assert both.status_code == 400


def test_eq_on_composite_subfield_is_case_sensitive(twenty, twenty_client):
    """docs/twenty-api.md#filters: dot paths reach composite subfields; stored emails are lower
    case, filter values are not canonicalized, so clients lower-case their own filter values."""
    seed_people(twenty, 3)
    assert emails(
        twenty_client.get("/rest/people", params={"filter": "emails.primaryEmail[eq]:p01@x.com"})
    ) == ["p01@x.com"]
    assert (
        emails(
            twenty_client.get(
                "/rest/people", params={"filter": "emails.primaryEmail[eq]:P01@X.COM"}
            )
        )
        == []
    )


def test_in_splits_naively_and_strips_quotes(twenty, twenty_client):
    """docs/twenty-api.md#filters ``in``: bracketed list, split on ``,`` without trimming,
    quotes stripped."""
    seed_people(twenty, 5)
    quoted = '["p01@x.com","p03@x.com"]'
    assert sorted(
        emails(
            twenty_client.get(
                "/rest/people", params={"filter": f"emails.primaryEmail[in]:{quoted}"}
            )
        )
    ) == ["p01@x.com", "p03@x.com"]
    spaced = '["p01@x.com", "p03@x.com"]'
    assert emails(
        twenty_client.get("/rest/people", params={"filter": f"emails.primaryEmail[in]:{spaced}"})
    ) == ["p01@x.com"]
    no_brackets = twenty_client.get("/rest/people", params={"filter": "id[in]:abc"})
    assert no_brackets.status_code == 400


def test_is_null_and_not_null(twenty, twenty_client):
    """docs/twenty-api.md#filters ``is`` takes NULL / NOT_NULL."""
    seed_people(twenty, 7)  # city is null for 0, 3, 6
    null_city = twenty_client.get("/rest/people", params={"filter": "city[is]:NULL"})
    assert sorted(emails(null_city)) == ["p00@x.com", "p03@x.com", "p06@x.com"]
    not_null = twenty_client.get("/rest/people", params={"filter": "city[is]:NOT_NULL"})
    assert not_null.json()["totalCount"] == 4


def test_nested_and_or_not(twenty, twenty_client):
    """docs/twenty-api.md#filters: comma = root ``and``; ``and(...)``, ``or(...)``, ``not(...)``
    nest."""
    seed_people(twenty, 10)
    query = "or(name.lastName[eq]:Odd,emails.primaryEmail[eq]:p00@x.com),not(city[is]:NULL)"
    result = twenty_client.get(
        "/rest/people", params={"filter": query, "order_by": "name.firstName"}
    )
    assert emails(result) == ["p01@x.com", "p05@x.com", "p07@x.com"]
    nested = "and(name.lastName[eq]:Even,or(city[eq]:City2,city[eq]:City0))"
    assert sorted(emails(twenty_client.get("/rest/people", params={"filter": nested}))) == [
        "p02@x.com",
        "p04@x.com",
        "p08@x.com",
    ]


def test_comparison_operators_on_numbers_and_dates(twenty, twenty_client):
    """docs/twenty-api.md#filters comparators ``gt``/``gte``/``lt``/``lte`` compare typed
    values; ``like``/``ilike`` and ``startsWith`` match text."""
    for index, micros in enumerate((1_000_000, 5_000_000, 9_000_000)):
        twenty.seed_record(
            "opportunities",
            {
                "name": f"Deal {index}",
                "amount": {"amountMicros": micros, "currencyCode": "USD"},
                "closeDate": f"2025-0{index + 1}-15T00:00:00Z",
            },
        )

    def names(query: str) -> list[str]:
        response = twenty_client.get(
            "/rest/opportunities", params={"filter": query, "order_by": "name"}
        )
        return [row["name"] for row in response.json()["data"]["opportunities"]]

    assert names("amount.amountMicros[gt]:1000000") == ["Deal 1", "Deal 2"]
    assert names("amount.amountMicros[lte]:5000000") == ["Deal 0", "Deal 1"]
    assert names("closeDate[gte]:2025-02-01T00:00:00Z") == ["Deal 1", "Deal 2"]
    assert names("closeDate[lt]:2025-02-01") == ["Deal 0"]
    assert names("name[like]:%al 1") == ["Deal 1"]
    assert names("name[ilike]:deal%") == ["Deal 0", "Deal 1", "Deal 2"]
    assert names("name[startsWith]:Deal 2") == ["Deal 2"]
    assert names("name[neq]:Deal 0") == ["Deal 1", "Deal 2"]


def test_order_by_directions_and_id_tie_breaker(twenty, twenty_client):
    """docs/twenty-api.md#ordering-and-paging: ``order_by=field[DescNullsLast]``; nulls placed
    as asked; id breaks ties."""
    seed_people(twenty, 7)
    ordered = twenty_client.get(
        "/rest/people", params={"order_by": "city[DescNullsLast],emails.primaryEmail"}
    )
    # cities: p01 City1, p02 City2, p04 City0, p05 City1; p00, p03, p06 null
    assert emails(ordered) == [
        "p02@x.com",
        "p01@x.com",
        "p05@x.com",
        "p04@x.com",
        "p00@x.com",
        "p03@x.com",
        "p06@x.com",
    ]
    nulls_first = twenty_client.get("/rest/people", params={"order_by": "city[AscNullsFirst]"})
    assert [row["city"] for row in nulls_first.json()["data"]["people"]][:3] == [None] * 3
    ties = twenty_client.get("/rest/people", params={"order_by": "name.lastName"}).json()
    odd_ids = [row["id"] for row in ties["data"]["people"] if row["name"]["lastName"] == "Odd"]
    assert odd_ids == sorted(odd_ids)
    invalid = twenty_client.get("/rest/people", params={"order_by": "city[Sideways]"})
    assert invalid.status_code == 400


def test_soft_deleted_records_are_hidden_unless_the_filter_names_deleted_at(twenty, twenty_client):
    """docs/twenty-api.md#soft-deleted-records: soft-deleted records are hidden from lists and
    gets; a ``deletedAt`` filter reads them (Twenty switches to ``withDeleted`` then)."""
    people = seed_people(twenty, 3)
    twenty_client.delete(f"/rest/people/{people[1]['id']}", params={"soft_delete": "true"})
    assert sorted(emails(twenty_client.get("/rest/people"))) == ["p00@x.com", "p02@x.com"]
    assert twenty_client.get("/rest/people").json()["totalCount"] == 2
    deleted = twenty_client.get("/rest/people", params={"filter": "deletedAt[is]:NOT_NULL"})
    assert emails(deleted) == ["p01@x.com"]


def test_filter_errors_are_400s(twenty_client):
    """docs/twenty-api.md#filters parser errors: unknown comparator, unknown field, unbalanced
    brackets."""
    unknown_comparator = twenty_client.get("/rest/people", params={"filter": "city[contains]:x"})
    assert twenty_client.messages(unknown_comparator)[0].startswith(
        "'filter' invalid for 'city[contains]:x', comparator contains not in eq, neq, in"
    )
    unknown_field = twenty_client.get("/rest/people", params={"filter": "email[eq]:x"})
    assert twenty_client.messages(unknown_field) == [
        "field 'email' does not exist in 'person' object"
    ]
    unbalanced = twenty_client.get("/rest/people", params={"filter": "or(city[eq]:x"})
    assert twenty_client.messages(unbalanced) == [
        "'filter' invalid. 1 close bracket is missing in the query"
    ]

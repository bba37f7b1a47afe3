"""Pure parts of the Twenty emulator: the filter/order_by parsers, sorting, the token buckets and
value normalization. Each test's docstring opens with the section of docs/twenty-api.md whose rule
it enforces (#filters, #ordering-and-paging, #rate-limit, #composite-fields)."""

from __future__ import annotations

import functools
import random

import pytest

from whop_pipeline.sandbox.twenty.errors import TwentyError, js_inspect
from whop_pipeline.sandbox.twenty.filters import (
    Condition,
    Junction,
    Negation,
    parse_filter,
    split_top_level,
)
from whop_pipeline.sandbox.twenty.ordering import compare_values, parse_order_by, sort_rows
from whop_pipeline.sandbox.twenty.ratelimit import WorkspaceThrottle
from whop_pipeline.sandbox.twenty.values import markdown_to_blocknote, url_with_lower_origin

pytestmark = pytest.mark.unit


def test_root_conditions_are_wrapped_in_and():
    """docs/twenty-api.md#filters: comma-separated conditions form a root ``and``."""
    assert parse_filter("city[eq]:Oslo,jobTitle[is]:NULL") == Junction(
        "and", (Condition(("city",), "eq", "Oslo"), Condition(("jobTitle",), "is", "NULL"))
    )


def test_nested_conjunctions_and_dot_paths():
    """docs/twenty-api.md#filters: ``or(...)`` / ``not(...)`` nest; dot paths reach composite
    subfields."""
    parsed = parse_filter('or(emails.primaryEmail[eq]:a@x.com,not(city[eq]:"Paris, TX"))')
    assert parsed == Junction(
        "or",
        (
            Condition(("emails", "primaryEmail"), "eq", "a@x.com"),
            Negation(Condition(("city",), "eq", "Paris, TX")),
        ),
    )


def test_in_list_split_on_commas_quotes_stripped_no_trim():
    """docs/twenty-api.md#filters: ``in`` is split naively on ``,``; quotes stripped; whitespace
    kept."""
    condition = parse_filter('id[in]:["a","b", "c"]').items[0]
    assert condition == Condition(("id",), "in", ["a", "b", ' "c"'])


@pytest.mark.parametrize(
    ("query", "message_start"),
    [
        ("city=Oslo", "'filter' invalid for 'city=Oslo'. eg: price[gte]:10"),
        ("city[like2]:x", "'filter' invalid for 'city[like2]:x', comparator like2 not in"),
        ("and(city[eq]:x", "'filter' invalid. 1 close bracket is missing"),
        ("not(a[eq]:1,b[eq]:2)", "'filter' invalid. 'not' conjunction should contain only 1"),
        ("id[in]:a,b", "'filter' invalid for 'in' operator. Received 'a' but array value"),
    ],
)
def test_malformed_filters_raise_400(query, message_start):
    with pytest.raises(TwentyError) as caught:
        parse_filter(query)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message_start)


def test_split_top_level_respects_parentheses_brackets_and_quotes():
    assert split_top_level('a[eq]:1,or(b[eq]:2,c[eq]:3),d[in]:[1,2],e[eq]:"x,y"') == [
        "a[eq]:1",
        "or(b[eq]:2,c[eq]:3)",
        "d[in]:[1,2]",
        'e[eq]:"x,y"',
    ]


def test_order_by_defaults_and_id_tie_breaker():
    """docs/twenty-api.md#ordering-and-paging: default direction AscNullsFirst; an ``id``
    tie-breaker is always appended."""
    assert parse_order_by("name.firstName,createdAt[DescNullsLast]") == [
        (("name", "firstName"), "AscNullsFirst"),
        (("createdAt",), "DescNullsLast"),
        (("id",), "AscNullsFirst"),
    ]
    assert parse_order_by(None) == [(("id",), "AscNullsFirst")]
    with pytest.raises(TwentyError):
        parse_order_by("name[Up]")


@pytest.mark.parametrize(
    "direction", ["AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast"]
)
def test_sort_rows_agrees_with_the_cursor_comparison(direction):
    """Cursor positions are bisected with ``compare_values``; it must order as ``sort_rows``."""
    generator = random.Random(7)
    order = [(("city",), direction), (("id",), "AscNullsFirst")]
    rows = [
        ([generator.choice([None, "a", "b", "c"]), f"id{index:03d}"], index) for index in range(60)
    ]
    by_sort = [payload for _, payload in sort_rows(list(rows), order)]
    by_compare = [
        payload
        for _, payload in sorted(
            rows, key=functools.cmp_to_key(lambda x, y: compare_values(x[0], y[0], order))
        )
    ]
    assert by_sort == by_compare
    first_city = sort_rows(list(rows), order)[0][0][0]
    assert (first_city is None) == direction.endswith("NullsFirst")


def test_token_buckets_short_and_long_with_continuous_refill():
    """docs/twenty-api.md#rate-limit: 100 per 1000 ms and N per 60000 ms, continuous refill, 429
    names the exhausted bucket, Retry-After covers the wait for one token; a refused call consumes
    nothing."""
    now = [0.0]
    throttle = WorkspaceThrottle(per_minute=100, clock=lambda: now[0])
    for _ in range(100):
        throttle.acquire()
    with pytest.raises(TwentyError) as caught:
        throttle.acquire()
    assert caught.value.status == 429
    assert caught.value.message == "Limit reached (100 tokens per 1000 ms)"
    now[0] = 1.0  # the short bucket is full again, the long one has refilled 1.67 tokens
    throttle.acquire()
    with pytest.raises(TwentyError) as caught:
        throttle.acquire()
    assert caught.value.message == "Limit reached (100 tokens per 60000 ms)"
    assert caught.value.headers == {"Retry-After": "1"}  # 0.4 s to the next token, rounded up
    now[0] = 1.4
    throttle.acquire()


def test_lowering_the_long_limit_applies_at_once():
    now = [0.0]
    throttle = WorkspaceThrottle(per_minute=100, clock=lambda: now[0])
    throttle.set_per_minute(2)
    throttle.acquire()
    throttle.acquire()
    with pytest.raises(TwentyError) as caught:
        throttle.acquire()
    assert caught.value.message == "Limit reached (2 tokens per 60000 ms)"
    assert caught.value.headers == {"Retry-After": "30"}


def test_link_urls_get_a_lower_case_origin_and_no_trailing_slash():
    """docs/twenty-api.md#composite-fields, Company ``domainName``:
    ``lowercaseUrlOriginAndRemoveTrailingSlash``."""
    assert url_with_lower_origin("HTTPS://Acme.COM/Path/") == "https://acme.com/Path"
    assert url_with_lower_origin("Acme.com") == "acme.com"


def test_js_inspect_matches_node_rendering_in_messages():
    assert js_inspect("LOST") == "'LOST'"
    assert js_inspect(5.0) == "5"
    assert js_inspect(None) == "null"
    assert js_inspect({"a": [1, "b"]}) == "{ a: [ 1, 'b' ] }"


def test_markdown_to_blocknote_is_deterministic():
    assert markdown_to_blocknote("a\nb") == markdown_to_blocknote("a\nb")
    assert markdown_to_blocknote("") == "[]"

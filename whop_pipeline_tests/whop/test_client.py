"""WhopClient: pagination, retries, auth errors and schema errors, against the emulator and against
hand-made responses."""

from __future__ import annotations

import datetime as dt
import math

import httpx
import pytest

from whop_pipeline.lib.http import RateLimiter, RetryPolicy, parse_retry_after
from whop_pipeline.whop.client import WhopApiError, WhopAuthError, WhopClient, iso_utc
from whop_pipeline.whop.models import Membership, WhopSchemaError


def client_for(sandbox, **options) -> WhopClient:
    return WhopClient(
        base_url=sandbox.whop_base_url,
        api_key=options.pop("api_key", sandbox.whop_api_key),
        account_id=sandbox.whop.account_id,
        max_requests_per_second=1000,
        **options,
    )


@pytest.mark.sandbox
@pytest.mark.parametrize("page_size", [1, 7, 42, 100])
def test_paging_takes_exactly_the_pages_needed(sandbox, page_size):
    total = len(sandbox.whop.dataset.rendered("memberships"))
    with client_for(sandbox, page_size=page_size) as client:
        ids = [m.id for page in client.iter_pages("memberships") for m in page.data]
    assert sorted(ids) == sorted(m["id"] for m in sandbox.whop.dataset.rendered("memberships"))
    assert client.stats.calls == math.ceil(total / page_size)


@pytest.mark.sandbox
def test_models_are_typed_and_keep_unknown_fields(sandbox):
    with client_for(sandbox) as client:
        membership = next(iter(client.iter_pages("memberships"))).data[0]
    assert isinstance(membership, Membership)
    assert membership.created_at.tzinfo is not None
    assert isinstance(membership.initial_price.amount, str)
    assert "metadata" in membership.to_json()  # not declared, still kept for the mirror


@pytest.mark.sandbox
def test_a_bad_key_fails_fast_without_retries(sandbox):
    with client_for(sandbox, api_key="wrong-key") as client, pytest.raises(WhopAuthError) as error:
        list(client.iter_pages("members"))
    assert client.stats.calls == 1
    assert error.value.status == 401
    assert "WHOP_API_KEY" in str(error.value) and "wrong-key" not in str(error.value)


def mock_client(handler, **options) -> WhopClient:
    client = WhopClient(
        base_url="https://whop.test/api/v1",
        api_key="secret-key",
        account_id="biz_1",
        max_requests_per_second=1000,
        sleep=lambda _s: None,
        **options,
    )
    client._http = httpx.Client(
        base_url="https://whop.test/api/v1",
        headers=client._http.headers,
        transport=httpx.MockTransport(handler),
    )
    return client


PAGE = {"data": [], "page_info": {"end_cursor": None, "has_next_page": False}}


@pytest.mark.unit
def test_retries_429_and_5xx_honouring_retry_after():
    responses = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0.2"}, json={"error": {"type": "x"}}),
            httpx.Response(503),
            httpx.Response(200, json=PAGE),
        ]
    )
    waits: list[float] = []
    client = mock_client(lambda request: next(responses))
    client._sleep = waits.append
    assert next(iter(client.iter_pages("members"))).data == []
    assert client.stats.calls == 3 and client.stats.throttled == 1 and client.stats.retries == 2
    assert waits[0] == 0.2


@pytest.mark.unit
def test_connection_errors_are_retried_then_reported():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    client = mock_client(handler, retry=RetryPolicy(max_attempts=3, base_delay=0))
    with pytest.raises(WhopApiError, match="GET /members failed after 3 attempts"):
        list(client.iter_pages("members"))
    assert client.stats.calls == 3


@pytest.mark.unit
def test_a_missing_required_field_is_a_located_error():
    item = {"id": "mem_1", "status": "active", "created_at": "2026-01-01T00:00:00Z"}
    body = {"data": [item], "page_info": {"has_next_page": False}}
    client = mock_client(lambda request: httpx.Response(200, json=body))
    with pytest.raises(WhopSchemaError) as error:
        list(client.iter_pages("memberships"))
    message = str(error.value)
    assert "GET /memberships page 1 item 0" in message and "mem_1" in message
    assert "plan_id" in message


@pytest.mark.unit
def test_unknown_enum_values_pass_through():
    item = {
        "id": "mem_1",
        "status": "hibernating",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "product_id": "prod_1",
        "product": {"id": "prod_1", "title": "P"},
        "plan_id": "plan_1",
        "initial_price": {"amount": "1.00", "currency": "xau"},
        "cancel_at_period_end": False,
    }
    body = {"data": [item], "page_info": {"has_next_page": False}}
    client = mock_client(lambda request: httpx.Response(200, json=body))
    assert next(iter(client.iter_pages("memberships"))).data[0].status == "hibernating"


@pytest.mark.unit
def test_every_request_is_pinned_and_filtered():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=PAGE)

    client = mock_client(handler)
    after = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    list(client.iter_pages("payments", created_after=after))
    request = seen[0]
    assert request.headers["Api-Version-Date"] == "2026-10-15-1"
    assert request.url.params["created_after"] == "2026-01-01T00:00:00Z"
    assert request.url.params["account_id"] == "biz_1"
    assert request.url.params["order"] == "created_at"


@pytest.mark.unit
def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_utc(dt.datetime(2026, 1, 1))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(header, seconds):
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC).timestamp()
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.unit
def test_rate_limiter_paces_calls():
    clock = [0.0]
    limiter = RateLimiter(
        10,
        per=1.0,
        burst=1,
        clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    for _ in range(11):
        limiter.acquire()
    # one immediately, then one every 0.1 s
    assert clock[0] == pytest.approx(1.0)

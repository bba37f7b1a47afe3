"""Whop API v1 client: bearer auth, pinned ``Api-Version-Date``, Relay pagination, retries and a
client-side rate limit. Returns typed models; raw JSON never leaves this module.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from whop_pipeline.lib.http import CallStats, RateLimiter, RetryPolicy, send_with_retries
from whop_pipeline.lib.preflight import PreflightError, probe
from whop_pipeline.settings import env_setting_name
from whop_pipeline.whop.models import RESOURCES, Page, WhopModel, parse_object, parse_page

# The one place the API version is pinned (docs/whop-api.md#api-version). Webhooks must use the
# same date.
WHOP_API_VERSION_DATE = "2026-10-15-1"
PAGE_SIZE = 100

log = logging.getLogger(__name__)


REQUIRED_PERMISSIONS = (
    "member:basic:read, member:email:read, payment:basic:read, plan:basic:read and "
    "access_pass:basic:read"
)


class WhopApiError(RuntimeError):
    """A Whop call that failed for good. The message names the endpoint and status, never the key."""

    def __init__(self, endpoint: str, status: int | None, message: str) -> None:
        self.endpoint = endpoint
        self.status = status
        super().__init__(f"Whop {endpoint} failed: {message}")


class WhopAuthError(WhopApiError):
    """401/403: the key is wrong or lacks a permission. Never retried."""


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error") or {}
        detail = error.get("message") or error.get("type") or response.reason_phrase
    except ValueError:
        detail = response.reason_phrase
    return f"HTTP {response.status_code}: {str(detail).rstrip('.')}"


def iso_utc(value: dt.datetime) -> str:
    """Aware UTC ISO 8601: a naive datetime would pick up the machine's offset
    (docs/whop-api.md#date-filters)."""
    if value.tzinfo is None:
        raise ValueError("timestamps sent to Whop must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class WhopClient:
    """One pooled HTTP client for a run. Use as a context manager."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        account_id: str,
        max_requests_per_second: float = 10.0,
        timeout: httpx.Timeout | float = httpx.Timeout(30.0, connect=10.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        page_size: int = PAGE_SIZE,
        setting_name: Callable[[str], str] = env_setting_name,
        reauthorize: Callable[[], str] | None = None,
    ) -> None:
        self.account_id = account_id
        self._setting = setting_name
        # OAuth connections: a new access token when Whop refuses the current one (once per call).
        self._reauthorize = reauthorize
        self.page_size = page_size
        self.stats = CallStats()
        self.limiter = RateLimiter(max_requests_per_second)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry or log.warning
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Api-Version-Date": WHOP_API_VERSION_DATE,
                "Accept": "application/json",
                "User-Agent": "whop-pipeline/0.1",
            },
            timeout=timeout,
        )

    def __enter__(self) -> WhopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        return self.send("GET", path, params=params)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: Any = None,
        _retried: bool = False,
    ) -> Any:
        """One API call and its JSON. GET, PATCH and DELETE are retried; a POST creates
        something, so it is sent once (a retry after a lost answer could create it twice)."""
        endpoint = f"{method} /{path}"
        kwargs: dict[str, Any] = {}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        policy = self.retry if method != "POST" else RetryPolicy(max_attempts=1)
        try:
            response = send_with_retries(
                lambda: self._http.request(method, f"/{path}", params=params, json=json),
                endpoint=endpoint,
                limiter=self.limiter,
                policy=policy,
                stats=self.stats,
                on_retry=self._on_retry,
                **kwargs,
            )
        except RuntimeError as exc:  # RetriesExhausted
            raise WhopApiError(endpoint, None, str(exc)) from None
        if response.status_code == 401 and self._reauthorize is not None and not _retried:
            self._http.headers["Authorization"] = f"Bearer {self._reauthorize()}"
            return self.send(method, path, params=params, json=json, _retried=True)
        if response.status_code == 204 or (method == "DELETE" and not response.content):
            return None
        if response.status_code in (401, 403):
            raise WhopAuthError(
                endpoint,
                response.status_code,
                f"{_error_message(response)}. {self._permission_hint()}",
            )
        if response.status_code >= 400:
            raise WhopApiError(endpoint, response.status_code, _error_message(response))
        try:
            return response.json()
        except ValueError:
            raise WhopApiError(endpoint, response.status_code, "response is not JSON") from None

    def _permission_hint(self) -> str:
        return (
            f"Check {self._setting('whop_api_key')} and that the key has {REQUIRED_PERMISSIONS} "
            f"on {self._setting('whop_account_id')} ({self.account_id})."
        )

    def check(self, connection: str) -> None:
        """One cheap call (the first product): ``PreflightError`` in one line when the API is
        unreachable or refuses the key; retries are for later calls."""
        url = self._setting("whop_api_base_url")

        def first_product() -> httpx.Response:
            return probe(
                self._http,
                "/products",
                params={"account_id": self.account_id, "first": "1"},
                what=f"connection {connection!r}: Whop at {self._http.base_url} ({url})",
            )

        response = first_product()
        if response.status_code == 401 and self._reauthorize is not None:
            # An OAuth access token Whop no longer accepts: one refresh, then the verdict.
            self._http.headers["Authorization"] = f"Bearer {self._reauthorize()}"
            response = first_product()
        if response.status_code in (401, 403):
            raise PreflightError(
                f"connection {connection!r}: Whop refused the key: "
                f"{_error_message(response)}. {self._permission_hint()}",
                auth=True,
            )
        if response.status_code >= 400:
            raise PreflightError(
                f"connection {connection!r}: Whop answered {_error_message(response)} for "
                f"{self._setting('whop_account_id')} ({self.account_id})"
            )

    def iter_pages(
        self,
        resource: str,
        *,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        order: str | None = "created_at",
        direction: str | None = "asc",
        extra: list[tuple[str, str]] | None = None,
    ) -> Iterator[Page[WhopModel]]:
        """Yield pages of ``resource`` in order, stopping on ``has_next_page: false``.

        Every page repeats the filters plus ``after``; nothing but the current page is held, so memory
        stays flat however large the account is.
        """
        model = RESOURCES[resource]
        params: list[tuple[str, str]] = [
            ("account_id", self.account_id),
            ("first", str(self.page_size)),
        ]
        if created_after is not None:
            params.append(("created_after", iso_utc(created_after)))
        if created_before is not None:
            params.append(("created_before", iso_utc(created_before)))
        if order:
            params.append(("order", order))
        if direction:
            params.append(("direction", direction))
        params.extend(extra or [])
        after: str | None = None
        page_number = 0
        while True:
            page_number += 1
            page_params = params + ([("after", after)] if after else [])
            raw = self._get(resource, page_params)
            page = parse_page(model, raw, f"GET /{resource} page {page_number}")
            yield page
            if not page.page_info.has_next_page:
                return
            if not page.page_info.end_cursor:
                raise WhopApiError(
                    f"GET /{resource}", 200, "has_next_page is true but end_cursor is empty"
                )
            after = page.page_info.end_cursor

    def retrieve(self, resource: str, object_id: str) -> WhopModel:
        model = RESOURCES[resource]
        raw = self._get(f"{resource}/{object_id}", [])
        return parse_object(model, raw, f"GET /{resource}/{object_id}")

    def retrieve_if_exists(self, resource: str, object_id: str) -> WhopModel | None:
        """``retrieve``, or None when Whop no longer knows the object (404)."""
        try:
            return self.retrieve(resource, object_id)
        except WhopApiError as exc:
            if exc.status == 404:
                return None
            raise

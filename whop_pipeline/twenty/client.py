"""Twenty REST client: metadata (objects, fields) and batch upserts, rate-limited and retried.

Every call here is idempotent (reads, upserts keyed by id or unique fields, metadata writes guarded by
a prior read), so 429s, 5xx and dropped connections are simply retried
(docs/twenty-api.md#idempotent-writes).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import httpx

from whop_pipeline.lib.http import (
    CallStats,
    RateLimiter,
    RetriesExhausted,
    RetryPolicy,
    send_with_retries,
)
from whop_pipeline.lib.preflight import PreflightError, probe
from whop_pipeline.settings import env_setting_name
from whop_pipeline.twenty.models import FieldMeta, ObjectMeta

log = logging.getLogger(__name__)

MAX_BATCH_MESSAGE = re.compile(r"Maximum number of records to upsert is (\d+)")
METADATA_PAGE = 1000

# One limiter per workspace per process: every step and client in a run spends the same budget.
_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(workspace_key: str, calls_per_minute: float) -> RateLimiter:
    with _limiters_lock:
        limiter = _limiters.get(workspace_key)
        if limiter is None or limiter.fill_rate != calls_per_minute / 60:
            # Burst of a tenth of the minute's budget: the server's bucket is shared by every key of
            # the workspace, so assuming it is full would only buy 429s.
            limiter = RateLimiter(calls_per_minute, per=60, burst=max(1.0, calls_per_minute / 10))
            _limiters[workspace_key] = limiter
        return limiter


class TwentyError(RuntimeError):
    """A Twenty call that failed for good; names the endpoint and status, never the key."""

    def __init__(self, endpoint: str, status: int | None, messages: list[str]) -> None:
        self.endpoint = endpoint
        self.status = status
        self.messages = messages
        super().__init__(f"Twenty {endpoint} failed ({status}): {'; '.join(messages)}")


class TwentyBadRequest(TwentyError):
    """400: the server refused the content. Not retried; the upserter isolates the bad rows."""

    @property
    def max_batch(self) -> int | None:
        for message in self.messages:
            match = MAX_BATCH_MESSAGE.search(message)
            if match:
                return int(match.group(1))
        return None


class TwentyAuthError(TwentyError):
    pass


def _messages(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return [response.text[:300] or response.reason_phrase]
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            return [str(m) for m in body["messages"]]
        if body.get("message"):
            return [str(body["message"])]
        if isinstance(body.get("errors"), list):
            return [str(e.get("message", e)) for e in body["errors"]]
    return [str(body)[:300]]


class TwentyClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        calls_per_minute: float = 100.0,
        timeout: httpx.Timeout | float = httpx.Timeout(60.0, connect=10.0),
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        setting_name: Callable[[str], str] = env_setting_name,
    ) -> None:
        self.stats = CallStats()
        self.base_url = base_url.rstrip("/")
        self._setting = setting_name
        # A workspace is a (server, key) pair: two workspaces on one server have their own limits.
        workspace = hashlib.sha256(f"{self.base_url} {api_key}".encode()).hexdigest()[:16]
        self.limiter = shared_limiter(workspace, calls_per_minute)
        self.retry = retry or RetryPolicy(max_attempts=8, base_delay=1.0)
        self._on_retry = on_retry or log.warning
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
        )

    def __enter__(self) -> TwentyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def write_calls(self) -> int:
        return sum(n for ep, n in self.stats.by_endpoint.items() if not ep.startswith("GET "))

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        endpoint = f"{method} {path}"
        try:
            response = send_with_retries(
                lambda: self._http.request(method, path, json=json, params=params),
                endpoint=endpoint,
                limiter=self.limiter,
                policy=self.retry,
                stats=self.stats,
                on_retry=self._on_retry,
            )
        except RetriesExhausted as exc:
            raise TwentyError(endpoint, None, [str(exc)]) from None
        if response.status_code in (401, 403):
            raise TwentyAuthError(
                endpoint,
                response.status_code,
                [
                    *_messages(response),
                    f"check {self._setting('twenty_api_key')} and the key's role",
                ],
            )
        if response.status_code == 400:
            raise TwentyBadRequest(endpoint, 400, _messages(response))
        if response.status_code >= 400:
            raise TwentyError(endpoint, response.status_code, _messages(response))
        try:
            return response.json()
        except ValueError:
            raise TwentyError(endpoint, response.status_code, ["response is not JSON"]) from None

    # --- metadata -------------------------------------------------------------------------------

    def check(self, connection: str) -> None:
        """One cheap call (one person): ``PreflightError`` in one line when the server is
        unreachable or refuses the key; retries are for later calls."""
        response = probe(
            self._http,
            "/rest/people",
            params={"limit": "1"},
            what=f"connection {connection!r}: Twenty at {self.base_url} "
            f"({self._setting('twenty_api_url')})",
        )
        if response.status_code in (401, 403):
            raise PreflightError(
                f"connection {connection!r}: Twenty refused the key (HTTP "
                f"{response.status_code}: {'; '.join(_messages(response))}); check "
                f"{self._setting('twenty_api_key')} and that its role can read and write people, "
                "opportunities, notes and the data model",
                auth=True,
            )
        if response.status_code == 404:
            raise PreflightError(
                f"connection {connection!r}: {self.base_url}/rest/people is not found; "
                f"{self._setting('twenty_api_url')} must be the Twenty server's base URL, "
                "without /rest"
            )
        if response.status_code >= 400:
            raise PreflightError(
                f"connection {connection!r}: Twenty answered HTTP {response.status_code}: "
                + "; ".join(_messages(response))
            )

    def _paged_metadata(self, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": METADATA_PAGE, **({"starting_after": cursor} if cursor else {})}
            body = self.request("GET", f"/rest/metadata/{kind}", params=params)
            items.extend(body.get("data", {}).get(kind, []))
            page_info = body.get("pageInfo") or {}
            cursor = page_info.get("endCursor")
            if not page_info.get("hasNextPage") or not cursor:
                return items

    def objects(self) -> dict[str, ObjectMeta]:
        """Every active object with its fields, keyed by singular name."""
        raw_objects = self._paged_metadata("objects")
        if raw_objects and not all(isinstance(o.get("fields"), list) for o in raw_objects):
            # Servers that do not embed fields in the object list: fetch them separately.
            by_object: dict[str, list[dict[str, Any]]] = {}
            for field in self._paged_metadata("fields"):
                by_object.setdefault(field["objectMetadataId"], []).append(field)
            for obj in raw_objects:
                obj["fields"] = by_object.get(obj["id"], [])
        return {
            o["nameSingular"]: ObjectMeta.from_api(o)
            for o in raw_objects
            if o.get("isActive", True)
        }

    def create_field(self, body: dict[str, Any]) -> FieldMeta:
        data = self.request("POST", "/rest/metadata/fields", json=body)["data"]
        return FieldMeta.from_api(data["createOneField"])

    def update_field(self, field_id: str, body: dict[str, Any]) -> FieldMeta:
        data = self.request("PATCH", f"/rest/metadata/fields/{field_id}", json=body)["data"]
        return FieldMeta.from_api(data["updateOneField"])

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/rest/metadata/objects", json=body)["data"]["createOneObject"]

    # --- records --------------------------------------------------------------------------------

    def batch_upsert(self, plural: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /rest/batch/<plural>?upsert=true``; returns the records in input order."""
        body = self.request(
            "POST", f"/rest/batch/{plural}", json=records, params={"upsert": "true"}
        )
        data = body.get("data") or {}
        key = f"create{plural[0].upper()}{plural[1:]}"
        result = data.get(key)
        if result is None and len(data) == 1:
            result = next(iter(data.values()))
        if not isinstance(result, list) or len(result) != len(records):
            raise TwentyError(
                f"POST /rest/batch/{plural}", 201, [f"unexpected response shape: {list(data)}"]
            )
        return result

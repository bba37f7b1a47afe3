"""The Twenty CRM emulator: one workspace behind Twenty's REST core and metadata API.

``create_twenty_app(...)`` returns a ``TwentyEmulator`` whose ``.app`` is an ASGI app wrapped in the
shared ``SandboxMiddleware`` (stats, latency, injected faults). Requests to ``/rest`` pass the
API-key check (docs/twenty-api.md#authentication) and the workspace throttle
(docs/twenty-api.md#rate-limit) before reaching a handler; ``/_sandbox`` control routes,
``/client-config`` and ``/healthz`` are never throttled.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from whop_pipeline.sandbox.common import (
    ASGIApp,
    FaultPlan,
    Receive,
    RequestStats,
    SandboxMiddleware,
    Scope,
    Send,
    send_json,
)
from whop_pipeline.sandbox.twenty import metadata_routes, rest
from whop_pipeline.sandbox.twenty.errors import TwentyError, error_body, throttled
from whop_pipeline.sandbox.twenty.ratelimit import LONG_WINDOW_MS, WorkspaceThrottle
from whop_pipeline.sandbox.twenty.records import RecordStore, clone
from whop_pipeline.sandbox.twenty.standard import build_standard_objects
from whop_pipeline.sandbox.twenty.values import now_iso

APP_VERSION = "1.23.0"
WORKSPACE_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-5e8f-9a0b-1c2d3e4f5a6b")
NoteTargetStyle = Literal["current", "legacy"]
Handler = Callable[[Request, Any], tuple[int, dict[str, Any]]]


class TwentyEmulator:
    """A Twenty workspace in memory. Thread-safe: one lock guards records and metadata."""

    def __init__(
        self,
        *,
        api_key: str,
        rate_limit_per_minute: float = 100,
        max_batch: int = 200,
        note_target_style: NoteTargetStyle = "current",
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        api_key_name: str = "Sandbox API key",
        workspace_id: str | None = None,
    ) -> None:
        if note_target_style not in ("current", "legacy"):
            raise ValueError("note_target_style must be 'current' or 'legacy'")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.api_key = api_key
        self.workspace_id = workspace_id or default_workspace_id(api_key)
        self.api_key_name = api_key_name
        self.max_batch = max_batch
        self.note_target_style: NoteTargetStyle = note_target_style
        self.lock = threading.RLock()
        self.store = self._fresh_store()
        self.throttle = WorkspaceThrottle(rate_limit_per_minute)
        # The window matches the long throttle bucket, so the stats show the busiest minute.
        self.stats = RequestStats(window_seconds=LONG_WINDOW_MS / 1000)
        self.faults = FaultPlan(latency_ms=latency_ms, rate=fault_rate, seed=fault_seed)
        self.app: ASGIApp = SandboxMiddleware(
            ApiGate(self, build_routes(self)),
            stats=self.stats,
            faults=self.faults,
            error_body=self.fault_body,
        )

    def _fresh_store(self) -> RecordStore:
        return RecordStore(
            build_standard_objects(self.note_target_style, now_iso()), self.api_key_name
        )

    # ---- Python control API -------------------------------------------------------------------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every record of every object keyed by plural name, soft-deleted ones included."""
        with self.lock:
            return {
                table.obj.name_plural: [clone(record) for record in table.rows.values()]
                for table in self.store.tables.values()
            }

    def reset(self, data: bool = False) -> None:
        """Clears stats and rate-limit buckets; ``data`` also restores the initial workspace
        (no records, no custom fields or objects)."""
        with self.lock:
            self.stats.reset()
            self.throttle.reset()
            if data:
                self.store = self._fresh_store()

    def seed_record(self, object_plural: str, record: dict[str, Any]) -> dict[str, Any]:
        """Creates one record as the API would (validation included), without spending a token:
        e.g. a person already in the CRM with an email and no Whop id."""
        return self.seed_records(object_plural, [record])[0]

    def seed_records(
        self, object_plural: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Plain create of several records at once (all or none), no batch-size limit."""
        with self.lock:
            table = self.store.table(object_plural)
            created = self.store.create_many(
                table, records, upsert=False, max_records=max(1, len(records))
            )
            return [clone(record) for record in created]

    def set_rate_limit(self, per_minute: float) -> None:
        self.throttle.set_per_minute(per_minute)

    def fault_body(self, status: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Injected faults answer with Twenty's own bodies (docs/twenty-api.md#error-bodies,
        docs/twenty-api.md#rate-limit)."""
        if status == 429:
            error = throttled(self.throttle.long.describe(), self.faults.retry_after_seconds)
            return error.body(), error.headers
        return error_body(status, "Internal server error"), {}


def create_twenty_app(
    *,
    api_key: str,
    rate_limit_per_minute: float = 100,
    max_batch: int = 200,
    note_target_style: NoteTargetStyle = "current",
    latency_ms: float = 0,
    fault_rate: float = 0.0,
    fault_seed: int | None = None,
    workspace_id: str | None = None,
) -> TwentyEmulator:
    return TwentyEmulator(
        api_key=api_key,
        workspace_id=workspace_id,
        rate_limit_per_minute=rate_limit_per_minute,
        max_batch=max_batch,
        note_target_style=note_target_style,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
    )


def default_workspace_id(api_key: str) -> str:
    """A stable UUID per API key: workspaces are told apart by key, and the id stays the same
    across restarts."""
    return str(uuid.uuid5(WORKSPACE_NAMESPACE, api_key))


class ApiGate:
    """API-key check and throttle for ``/rest``. A refused token is Nest's guard failure:
    403 ``Forbidden resource`` (``JwtAuthGuard`` returns false; twentyhq/twenty#8449)."""

    def __init__(self, emulator: TwentyEmulator, app: ASGIApp) -> None:
        self.emulator = emulator
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/rest"):
            headers = dict(scope.get("headers") or [])
            expected = f"Bearer {self.emulator.api_key}".encode()
            if headers.get(b"authorization", b"").strip() != expected:
                await send_json(send, 403, error_body(403, "Forbidden resource"))
                return
            try:
                self.emulator.throttle.acquire()
            except TwentyError as error:
                await send_json(send, error.status, error.body(), error.headers)
                return
        await self.app(scope, receive, send)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise TwentyError(400, f"Unexpected token in JSON body: {error}") from None


def endpoint(
    emulator: TwentyEmulator, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    """Runs a synchronous handler under the workspace lock and renders Twenty's error shape.
    The body is serialized under the lock too, so no metadata change can interleave."""

    async def run(request: Request) -> Response:
        try:
            body = await read_json(request) if request.method in ("POST", "PATCH", "PUT") else None
            with emulator.lock:
                status, payload = handler(request, body)
                return json_response(status, payload)
        except TwentyError as error:
            return json_response(error.status, error.body(), error.headers)

    return run


def build_routes(emulator: TwentyEmulator) -> Starlette:
    def store() -> RecordStore:
        return emulator.store

    def params(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def path(request: Request, name: str) -> str:
        return request.path_params[name]

    limit = emulator.max_batch
    style = emulator.note_target_style
    handlers: list[tuple[str, list[str], Handler]] = [
        (
            "/rest/metadata/objects",
            ["GET"],
            lambda r, b: metadata_routes.list_objects(store(), params(r)),
        ),
        (
            "/rest/metadata/objects",
            ["POST"],
            lambda r, b: metadata_routes.create_object(store(), b, style),
        ),
        (
            "/rest/metadata/objects/{id}",
            ["GET"],
            lambda r, b: metadata_routes.get_object(store(), path(r, "id")),
        ),
        (
            "/rest/metadata/objects/{id}",
            ["PATCH", "PUT"],
            lambda r, b: metadata_routes.update_object(store(), path(r, "id"), b),
        ),
        (
            "/rest/metadata/fields",
            ["GET"],
            lambda r, b: metadata_routes.list_fields(store(), params(r)),
        ),
        ("/rest/metadata/fields", ["POST"], lambda r, b: metadata_routes.create_field(store(), b)),
        (
            "/rest/metadata/fields/{id}",
            ["GET"],
            lambda r, b: metadata_routes.get_field(store(), path(r, "id")),
        ),
        (
            "/rest/metadata/fields/{id}",
            ["PATCH", "PUT"],
            lambda r, b: metadata_routes.update_field(store(), path(r, "id"), b),
        ),
        (
            "/rest/batch/{plural}",
            ["POST"],
            lambda r, b: rest.create_batch(store(), path(r, "plural"), b, params(r), limit),
        ),
        (
            "/rest/{plural}",
            ["GET"],
            lambda r, b: rest.list_records(store(), path(r, "plural"), params(r), limit),
        ),
        (
            "/rest/{plural}",
            ["POST"],
            lambda r, b: rest.create_one(store(), path(r, "plural"), b, params(r), limit),
        ),
        (
            "/rest/{plural}/{id}",
            ["GET"],
            lambda r, b: rest.get_record(store(), path(r, "plural"), path(r, "id"), params(r)),
        ),
        (
            "/rest/{plural}/{id}",
            ["PATCH", "PUT"],
            lambda r, b: rest.update_one(store(), path(r, "plural"), path(r, "id"), b),
        ),
        (
            "/rest/{plural}/{id}",
            ["DELETE"],
            lambda r, b: rest.delete_one(store(), path(r, "plural"), path(r, "id"), params(r)),
        ),
        ("/_sandbox/dump", ["GET"], lambda r, b: (200, emulator.dump())),
        ("/_sandbox/reset", ["POST"], lambda r, b: control_reset(emulator, r)),
        (
            "/_sandbox/seed/{plural}",
            ["POST"],
            lambda r, b: control_seed(emulator, path(r, "plural"), b),
        ),
        ("/_sandbox/rate-limit", ["POST"], lambda r, b: control_rate_limit(emulator, b)),
        ("/client-config", ["GET"], lambda r, b: (200, client_config())),
        (
            "/healthz",
            ["GET"],
            lambda r, b: (200, {"status": "ok", "info": {}, "error": {}, "details": {}}),
        ),
    ]
    routes = [
        Route(route_path, endpoint(emulator, handler), methods=methods)
        for route_path, methods, handler in handlers
    ]

    async def nest_not_found(request: Request, exc: Exception) -> Response:
        # Unmatched routes get Nest's default body, not Twenty's REST filter shape.
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        error = "Not Found" if status == 404 else "Method Not Allowed"
        return json_response(
            status,
            {
                "message": f"Cannot {request.method} {request.url.path}",
                "error": error,
                "statusCode": status,
            },
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        return json_response(500, error_body(500, "Internal server error"))

    return Starlette(
        routes=routes,
        exception_handlers={404: nest_not_found, 405: nest_not_found, Exception: internal_error},
    )


def control_reset(emulator: TwentyEmulator, request: Request) -> tuple[int, dict[str, Any]]:
    data = request.query_params.get("data") == "true"
    emulator.reset(data=data)
    return 200, {"reset": True, "data": data}


def control_seed(emulator: TwentyEmulator, plural: str, body: Any) -> tuple[int, dict[str, Any]]:
    rows = body if isinstance(body, list) else [body]
    return 201, {"data": emulator.seed_records(plural, rows)}


def control_rate_limit(emulator: TwentyEmulator, body: Any) -> tuple[int, dict[str, Any]]:
    per_minute = body.get("perMinute") if isinstance(body, dict) else None
    if not isinstance(per_minute, int | float) or isinstance(per_minute, bool) or per_minute <= 0:
        raise TwentyError(400, "perMinute must be a positive number")
    emulator.set_rate_limit(per_minute)
    return 200, {"perMinute": per_minute}


def client_config() -> dict[str, Any]:
    return {
        "appVersion": APP_VERSION,
        "api": {"mutationMaximumAffectedRecords": 100},
        "isMultiWorkspaceEnabled": False,
        "signInPrefilled": False,
        "billing": {"isBillingEnabled": False},
    }

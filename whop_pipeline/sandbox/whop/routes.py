"""HTTP routes: the Whop API v1 read endpoints and the ``/_sandbox`` control endpoints.

API (``/api/v1``): ``GET /{members,memberships,payments,products,variants,plans}`` (list) and
``GET /.../{id}`` (retrieve); webhook management (``hooks_api.py``). Bearer auth with the configured
key or an unexpired OAuth access token granted for this account (``oauth.py``); a wrong, missing or
expired token is a 401 with Whop's error body, except that ``GET /products/{id}``,
``/variants/{id}`` and ``/plans/{id}`` are public reads that work without a token (a wrong token
is still refused). ``Api-Version-Date`` is accepted with any value (the emulator serves the
``2026-10-15-1`` shapes).

Control (never counted, never faulted; ``GET /_sandbox/stats`` comes from ``SandboxMiddleware``):
``POST /_sandbox/reset[?data=true]``, ``POST /_sandbox/memberships[/{id}]``,
``POST /_sandbox/payments[/{id}]``, ``POST /_sandbox/members/{id}``, ``GET /_sandbox/webhooks``
(delivery attempts), ``PUT /_sandbox/webhooks`` (``{"url", "secret"}``: retarget deliveries),
``GET /_sandbox/dump`` (account, counts, size, seed, scale) and ``GET /_sandbox/dump/{kind}`` (every
record of a kind, rendered), ``GET|POST /_sandbox/clock`` (``hooks_api.py``).

``POST /_sandbox/members/{id}`` changes a member the way its user would on their Whop profile:
body ``{"name": str | null, "email": str | null, "username": str}`` (any non-empty subset; unknown
fields, an empty body, a malformed email, a username another member holds, or a business buyer
without a user are a 400; an unknown id a 404). ``display_name`` follows (name, else username).
Answers 200 with the member exactly as ``GET /api/v1/members/{id}`` renders it afterwards, and
delivers ``member.updated`` (with ``previous_attributes``) if a rendered field changed.
Membership creates and changes also deliver ``member.created`` / ``member.updated`` for the member
they create or whose access they move (see ``webhooks.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from whop_pipeline.sandbox.whop.errors import WhopApiError, bad_param, error_body
from whop_pipeline.sandbox.whop.hooks_api import webhook_routes
from whop_pipeline.sandbox.whop.queries import LIST_REQUESTS, Params, account_mismatch
from whop_pipeline.sandbox.whop.render import render

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.app import WhopEmulator

PUBLIC_RETRIEVE = frozenset({"products", "variants", "plans"})
KIND_OF = {"variants": "plans"}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise WhopApiError(400, "The request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise WhopApiError(400, "The request body must be a JSON object", code="invalid_json")
    return value


def build_app(emu: WhopEmulator) -> Starlette:
    store, ds = emu.store, emu.dataset

    def authorize(request: Request, *, public: bool = False) -> None:
        header = request.headers.get("authorization")
        if header is None:
            if public:
                return
            raise WhopApiError(
                401,
                "Missing API key. Send `Authorization: Bearer <API key>`.",
                code="missing_api_key",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not emu.accepts(token.strip()):
            raise WhopApiError(
                401, "The API key provided is invalid or has been revoked.", code="invalid_api_key"
            )

    async def list_endpoint(request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in LIST_REQUESTS:
            raise WhopApiError(404, f"No route for GET /api/v1/{resource}", code="route_not_found")
        authorize(request)
        params = Params(_multi(request))
        with store.lock:
            req = LIST_REQUESTS[resource](ds, params)
            if account_mismatch(ds, params):
                # Outside the key's reach: fewer (here zero) rows, not an error.
                req.predicate = lambda r: False
            page = store.page(req)
            kind = KIND_OF.get(resource, resource)
            counts = store.member_counts() if kind in ("products", "plans") else None
            data = [render(ds, kind, r, counts=counts) for r in page.records]
        return _json(200, {"data": data, "page_info": page.page_info})

    async def retrieve_endpoint(request: Request) -> Response:
        resource, ident = request.path_params["resource"], request.path_params["id"]
        if resource not in LIST_REQUESTS:
            raise WhopApiError(
                404, f"No route for GET /api/v1/{resource}/{{id}}", code="route_not_found"
            )
        authorize(request, public=resource in PUBLIC_RETRIEVE)
        kind = KIND_OF.get(resource, resource)
        with store.lock:
            record = store.get(kind, ident)
            counts = store.member_counts() if kind in ("products", "plans") else None
            return _json(200, render(ds, kind, record, detail=True, counts=counts))

    async def reset(request: Request) -> Response:
        data = request.query_params.get("data", "false").lower() in ("1", "true", "yes")
        emu.reset(data=data)
        return _json(200, {"reset": True, "data": data, "counts": ds.counts()})

    async def create(request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        fields = await _body(request)
        body = (
            emu.create_membership(**fields)
            if kind == "memberships"
            else emu.create_payment(**fields)
        )
        return _json(201, body)

    async def update(request: Request) -> Response:
        kind = request.url.path.split("/")[2]
        fields = await _body(request)
        if not fields:
            raise bad_param("body", "Give at least one field to change", "parameter_missing")
        ident = request.path_params["id"]
        if kind == "memberships":
            return _json(200, emu.update_membership(ident, **fields))
        if kind == "members":
            return _json(200, emu.update_member(ident, **fields))
        return _json(200, emu.update_payment(ident, **fields))

    async def webhooks(request: Request) -> Response:
        if request.method == "PUT":
            fields = await _body(request)
            emu.configure_webhooks(fields.get("url"), fields.get("secret"))
        return _json(
            200,
            {"url": emu.webhooks.url, "pending": emu.webhooks.pending(), "data": emu.deliveries()},
        )

    async def dump(request: Request) -> Response:
        kind = request.path_params.get("kind")
        with store.lock:
            if kind is None:
                account = {
                    "id": ds.account.id,
                    "route": ds.account.route,
                    "title": ds.account.title,
                }
                return _json(
                    200,
                    {
                        "account": account,
                        "counts": ds.counts(),
                        "size": ds.size,
                        "seed": ds.seed,
                        "scale": ds.scale,
                        "churn": ds.churn,
                    },
                )
            if KIND_OF.get(kind, kind) not in ds.counts():
                raise WhopApiError(404, f"Unknown kind `{kind}`", code="resource_not_found")
            return _json(
                200,
                {"data": ds.rendered(kind, detail=request.query_params.get("detail") == "true")},
            )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WhopApiError)
        return _json(exc.status, exc.body)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return _json(exc.status_code, error_body(exc.status_code, message))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _json(500, error_body(500, f"Internal error: {type(exc).__name__}"))

    routes = [
        *webhook_routes(emu, authorize, _body),
        Route("/api/v1/{resource}", list_endpoint, methods=["GET"]),
        Route("/api/v1/{resource}/{id}", retrieve_endpoint, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/memberships", create, methods=["POST"]),
        Route("/_sandbox/payments", create, methods=["POST"]),
        Route("/_sandbox/memberships/{id}", update, methods=["POST"]),
        Route("/_sandbox/payments/{id}", update, methods=["POST"]),
        Route("/_sandbox/members/{id}", update, methods=["POST"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET", "PUT"]),
        Route("/_sandbox/dump", dump, methods=["GET"]),
        Route("/_sandbox/dump/{kind}", dump, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            WhopApiError: api_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )


def _multi(request: Request) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        values.setdefault(key, []).append(value)
    return values

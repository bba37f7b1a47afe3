"""Routes for webhooks registered through the API, and the emulator clock's control route.

API (``/api/v1``, Bearer auth with the account's key or an OAuth token of the account):

- ``POST /webhooks {url, events[], api_version_date, resource_id, enabled, child_resource_events}``
  → 201, the webhook with its ``webhook_secret`` (the only response that shows it).
- ``GET /webhooks[?account_id|company_id=biz_…&has_failures=&first=&after=&last=&before=]``: most
  recently created first; another account's id lists nothing.
- ``GET /webhooks/{id}``, ``PATCH /webhooks/{id}``, ``DELETE /webhooks/{id}`` (→ ``{deleted, id}``).
- ``GET /webhooks/{id}/deliveries[?first=&after=]``: every attempt, newest first.
- ``POST /webhooks/{id}/replay {sent_after, sent_before?, events?, failed_only?, regenerate_ids?}``
  → ``{"queued": true}``; the re-sends go out asynchronously.
- ``POST /webhooks/{id}/deliveries/{delivery_id}/replay {regenerate_id?}`` → waits for the one
  re-send and answers ``{status, body, success}`` (``status`` 0 when nothing answered).

Control: ``GET /_sandbox/clock`` → ``{now, offset_seconds}``; ``POST /_sandbox/clock
{"advance_seconds": N}`` moves the emulator clock forward (see ``clock.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from whop_pipeline.sandbox.whop.errors import bad_param

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.app import WhopEmulator

Authorize = Callable[[Request], None]
ReadBody = Callable[[Request], Any]


def webhook_routes(emu: WhopEmulator, authorize: Authorize, read_body: ReadBody) -> list[Route]:
    hooks = emu.hooks

    async def collection(request: Request) -> Response:
        authorize(request)
        if request.method == "POST":
            return JSONResponse(hooks.create(await read_body(request)), status_code=201)
        return JSONResponse(hooks.list(dict(request.query_params)))

    async def one(request: Request) -> Response:
        authorize(request)
        ident = request.path_params["id"]
        if request.method == "PATCH":
            return JSONResponse(hooks.update(ident, await read_body(request)))
        if request.method == "DELETE":
            return JSONResponse(hooks.delete(ident))
        return JSONResponse(hooks.get(ident))

    async def deliveries(request: Request) -> Response:
        authorize(request)
        return JSONResponse(hooks.deliveries(request.path_params["id"], dict(request.query_params)))

    async def replay(request: Request) -> Response:
        authorize(request)
        return JSONResponse(hooks.replay(request.path_params["id"], await read_body(request)))

    async def replay_one(request: Request) -> Response:
        authorize(request)
        fields = await read_body(request)
        regenerate = fields.get("regenerate_id", False)
        if not isinstance(regenerate, bool):
            raise bad_param("regenerate_id", "`regenerate_id` must be a boolean")
        done = hooks.replay_delivery(
            request.path_params["id"], request.path_params["delivery_id"], regenerate
        )
        result = await asyncio.wrap_future(done)
        if result is None:  # dropped: the webhook was disabled or the emulator closed meanwhile
            return JSONResponse({"status": 0, "body": "", "success": False})
        text = result.body.decode("utf-8", "replace")
        return JSONResponse(
            {"status": result.status or 0, "body": text, "success": result.delivered}
        )

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            fields = await read_body(request)
            seconds = fields.get("advance_seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise bad_param("advance_seconds", "`advance_seconds` must be a number >= 0")
            emu.clock.advance(seconds)
        return JSONResponse(emu.clock.snapshot())

    return [
        Route("/api/v1/webhooks", collection, methods=["GET", "POST"]),
        Route("/api/v1/webhooks/{id}", one, methods=["GET", "PATCH", "DELETE"]),
        Route("/api/v1/webhooks/{id}/deliveries", deliveries, methods=["GET"]),
        Route("/api/v1/webhooks/{id}/replay", replay, methods=["POST"]),
        Route(
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", replay_one, methods=["POST"]
        ),
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
    ]


__all__ = ["webhook_routes"]

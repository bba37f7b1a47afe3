"""Several Twenty workspaces behind one server: each request goes to the workspace of its API key.

A workspace is a whole ``TwentyEmulator`` (records, metadata, throttle, stats, faults), so nothing
one workspace does is seen by, or charged to, another. Routing:

- API calls (``/rest``, ``/client-config``, ``/healthz``) go to the workspace whose key the
  ``Authorization: Bearer`` header carries; any other or no header goes to the first workspace,
  which refuses it exactly as a single workspace does (a 403 on ``/rest``).
- ``GET /_sandbox/workspaces`` lists ``[{"id", "api_key"}, ...]`` in workspace order.
- Every other ``/_sandbox`` route goes to the workspace named by ``?workspace=<id>`` (default: the
  first); an unknown id is a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from whop_pipeline.sandbox.common import (
    CONTROL_PREFIX,
    Receive,
    Scope,
    Send,
    bearer_token,
    query_value,
    send_json,
)
from whop_pipeline.sandbox.twenty.app import TwentyEmulator
from whop_pipeline.sandbox.twenty.errors import error_body


class TwentyWorkspaces:
    """The ASGI app serving ``workspaces`` (the first is the default)."""

    def __init__(self, workspaces: Sequence[TwentyEmulator]) -> None:
        if not workspaces:
            raise ValueError("at least one workspace is needed")
        self.workspaces = list(workspaces)
        self.by_key = {w.api_key: w for w in self.workspaces}
        self.by_id = {w.workspace_id: w for w in self.workspaces}
        if len(self.by_key) != len(self.workspaces) or len(self.by_id) != len(self.workspaces):
            raise ValueError("every workspace needs its own API key and id")

    def listing(self) -> list[dict[str, Any]]:
        return [{"id": w.workspace_id, "api_key": w.api_key} for w in self.workspaces]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = self.workspaces[0]
        if scope["type"] != "http":
            await first.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            if path == f"{CONTROL_PREFIX}/workspaces" and scope["method"] == "GET":
                await send_json(send, 200, self.listing())
                return
            wanted = query_value(scope, "workspace")
            target = first if wanted is None else self.by_id.get(wanted)
            if target is None:
                await send_json(send, 404, error_body(404, f"Unknown workspace {wanted}"))
                return
        else:
            token = bearer_token(scope)
            target = self.by_key.get(token, first) if token is not None else first
        await target.app(scope, receive, send)


__all__ = ["TwentyWorkspaces"]

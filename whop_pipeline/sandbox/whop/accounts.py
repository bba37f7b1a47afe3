"""Several Whop accounts behind one server: each request goes to the account of its API key.

An account is a whole ``WhopEmulator`` (dataset, store, stats, faults, webhooks), so a key only
ever reaches its own account's data. Routing:

- ``/api/v1`` calls go to the account whose key the ``Authorization: Bearer`` header carries; an
  unknown key goes to the first account, which answers the usual 401. Another account's objects are
  therefore refused by the rules one account already has for a resource outside the key's reach:
  a list asked with another account's ``account_id`` is a 200 with zero rows, and retrieving
  another account's member, membership or payment by id is the 404 of an unknown id.
- Products, variants and plans are public reads (``GET /api/v1/{products,variants,plans}/{id}``
  works without a token): such a retrieve without a token, or with a valid key of another account,
  is served by the account that owns the id, as the real API serves a public object to anyone.
- An OAuth access token (``oauth.py``) goes to the account it was granted for, as its key would.
- ``/oauth/...`` and ``/_sandbox/oauth...`` are the one OAuth server of all accounts
  (``oauth_routes.py``); it uses the first account's clock.
- ``GET /_sandbox/accounts`` lists ``[{"id", "api_key", "seed"}, ...]`` in account order.
- Every other ``/_sandbox`` route goes to the account named by ``?account=biz_...`` (default: the
  first); an unknown account is a 404.
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
from whop_pipeline.sandbox.whop.app import WhopEmulator
from whop_pipeline.sandbox.whop.errors import error_body
from whop_pipeline.sandbox.whop.oauth import OAuthConfig, OAuthServer
from whop_pipeline.sandbox.whop.oauth_routes import build_oauth_app
from whop_pipeline.sandbox.whop.routes import PUBLIC_RETRIEVE

API_PREFIX = "/api/v1/"
OAUTH_PREFIX = "/oauth/"
OAUTH_CONTROL = f"{CONTROL_PREFIX}/oauth"


class WhopAccounts:
    """The ASGI app serving ``accounts`` (the first is the default) and their OAuth server
    (``oauth``: the registered app, default ``OAuthConfig()``)."""

    def __init__(
        self, accounts: Sequence[WhopEmulator], *, oauth: OAuthConfig | None = None
    ) -> None:
        if not accounts:
            raise ValueError("at least one account is needed")
        self.accounts = list(accounts)
        self.by_key = {a.api_key: a for a in self.accounts}
        self.by_id = {a.account_id: a for a in self.accounts}
        if len(self.by_key) != len(self.accounts) or len(self.by_id) != len(self.accounts):
            raise ValueError("every account needs its own API key and account id")
        self.oauth = OAuthServer(self.accounts, oauth)
        self.oauth_app = build_oauth_app(self.oauth)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"id": a.account_id, "api_key": a.api_key, "seed": a.dataset.seed}
            for a in self.accounts
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = self.accounts[0]
        if scope["type"] != "http":
            await first.app(scope, receive, send)
            return
        path: str = scope["path"]
        if (
            path.startswith(OAUTH_PREFIX)
            or path == OAUTH_CONTROL
            or path.startswith(OAUTH_CONTROL + "/")
        ):
            await self.oauth_app(scope, receive, send)
            return
        if path.startswith(CONTROL_PREFIX):
            if path == f"{CONTROL_PREFIX}/accounts" and scope["method"] == "GET":
                await send_json(send, 200, self.listing())
                return
            wanted = query_value(scope, "account")
            target = first if wanted is None else self.by_id.get(wanted)
            if target is None:
                body = error_body(404, f"Unknown account {wanted}", code="resource_not_found")
                await send_json(send, 404, body)
                return
            await target.app(scope, receive, send)
            return
        token = bearer_token(scope)
        target = self._account_for(token) if token is not None else None
        if len(self.accounts) > 1 and (token is None or target is not None):
            owner = self._public_owner(path)
            if owner is not None and owner is not target:
                await owner.app(_without_authorization(scope), receive, send)
                return
        await (target or first).app(scope, receive, send)

    def _account_for(self, token: str) -> WhopEmulator | None:
        """The account of an API key or of a live OAuth access token."""
        found = self.by_key.get(token)
        if found is None:
            granted = self.oauth.account_of(token)
            found = self.by_id.get(granted) if granted is not None else None
        return found

    def _public_owner(self, path: str) -> WhopEmulator | None:
        """The account owning the object of a public retrieve, else ``None``."""
        if not path.startswith(API_PREFIX):
            return None
        resource, _, ident = path[len(API_PREFIX) :].partition("/")
        if resource not in PUBLIC_RETRIEVE or not ident or "/" in ident:
            return None
        return next((a for a in self.accounts if a.dataset.get(resource, ident)), None)


def _without_authorization(scope: Scope) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers") or () if k != b"authorization"]
    return {**scope, "headers": headers}


__all__ = ["WhopAccounts"]

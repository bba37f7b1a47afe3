"""HTTP routes of the emulator's OAuth server (``oauth.py``), served on the API host root.

- ``GET /oauth/authorize``: validates the request; a wrong ``client_id`` or a ``redirect_uri`` that is
  not the registered one is a 400 HTML page (no redirect); other errors redirect to the
  ``redirect_uri`` with ``error``, ``error_description`` and ``state``. A valid request shows the
  consent page (the sandbox user, the account being granted, the scopes, "Approve" / "Deny"),
  unless a decision was preset: approve → 302 to ``redirect_uri?code=…&state=…``, deny → 302 to
  ``redirect_uri?error=access_denied&state=…``.
- ``POST /oauth/authorize``: the consent page's form (the same parameters plus ``decision``).
- ``POST /oauth/token``: form-encoded (JSON is accepted too); client secret in the body or HTTP
  Basic. Errors are RFC 6749 §5.2 bodies, 400, or 401 for ``invalid_client``.
- ``GET|POST /oauth/userinfo`` with ``Authorization: Bearer <access token>``; 401 ``invalid_token``.

Control (``/_sandbox/oauth``): ``GET`` (configuration and live token counts), ``POST /consent
{"decision": "approve"|"deny"|"ask"}``, ``POST /revoke {"refresh_token"?: str, "all"?: bool}`` →
``{"revoked": n}``, ``POST /expire`` → ``{"expired": n}`` (every access token expires now).

These routes sit outside the accounts' ``SandboxMiddleware``: never counted in ``/_sandbox/stats``,
never faulted.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from whop_pipeline.sandbox.whop.errors import error_body
from whop_pipeline.sandbox.whop.oauth import (
    CONSENT_DECISIONS,
    AuthRequest,
    OAuthError,
    OAuthServer,
    PageError,
    RedirectError,
)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORWARDED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "company_id",
)


def _redirect(uri: str, **params: str | None) -> Response:
    """``uri`` with ``params`` added to its query (an existing query is kept: RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=NO_STORE)


def _error_page(exc: OAuthError) -> HTMLResponse:
    body = (
        f"<p><strong>{html.escape(exc.error)}</strong>: {html.escape(exc.description)}</p>"
        "<p>The request was not sent back to the application: its redirect URI is not verified.</p>"
    )
    return _page("Authorization error", body, exc.status)


def _consent_page(server: OAuthServer, auth: AuthRequest, params: dict[str, str]) -> HTMLResponse:
    user, account = server.user, auth.account_id
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{html.escape(params[name], quote=True)}'>"
        for name in _FORWARDED
        if params.get(name) is not None
    )
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in auth.scope.split())
    body = (
        f"<p>Signed in as <strong>{html.escape(user.name)}</strong> "
        f"(@{html.escape(user.username)}, <code>{html.escape(user.id)}</code>).</p>"
        f"<p><code>{html.escape(server.config.client_id)}</code> asks for access to "
        f"<strong>{html.escape(server.account_title(account))}</strong> "
        f"(<code>{html.escape(account)}</code>) with these scopes:</p><ul>{scopes}</ul>"
        f"<form method='post' action='/oauth/authorize'>{hidden}"
        "<button type='submit' name='decision' value='approve'>Approve</button> "
        "<button type='submit' name='decision' value='deny'>Deny</button></form>"
    )
    return _page("Authorize app (Whop sandbox)", body)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Client authentication must use HTTP Basic", 401)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
        client_id, secret = decoded.split(":", 1)
    except ValueError as exc:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials", 401) from exc
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return unquote_plus(client_id), unquote_plus(secret)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (a JSON object is accepted too). A parameter
    sent twice is an ``invalid_request`` (RFC 6749 §3.1, §3.2)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            value = json.loads(raw or b"{}")
        except ValueError as exc:
            raise OAuthError("invalid_request", "The body is not valid JSON") from exc
        if not isinstance(value, dict):
            raise OAuthError("invalid_request", "The body must be a JSON object")
        return {k: v for k, v in value.items() if isinstance(v, str)}
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    form = dict(pairs)
    if len(form) != len(pairs):
        raise OAuthError("invalid_request", "A parameter was sent more than once")
    return form


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    value = json.loads(raw) if raw.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def build_oauth_app(server: OAuthServer) -> Starlette:
    async def authorize(request: Request) -> Response:
        decision: str | None = None
        try:
            params = (
                await _form(request) if request.method == "POST" else dict(request.query_params)
            )
        except OAuthError as exc:
            return _error_page(exc)
        if request.method == "POST":
            decision = params.pop("decision", None)
        try:
            auth = server.authorization_request(params)
        except PageError as exc:
            return _error_page(exc)
        except RedirectError as exc:
            return _redirect(
                params["redirect_uri"],
                error=exc.error,
                error_description=exc.description,
                state=params.get("state"),
            )
        if decision is None and server.consent != "ask":
            decision = server.consent
        if decision is None:
            return _consent_page(server, auth, params)
        if decision == "approve":
            return _redirect(auth.redirect_uri, code=server.issue_code(auth), state=auth.state)
        if decision == "deny":
            description = "The user denied the authorization request"
            return _redirect(
                auth.redirect_uri,
                error="access_denied",
                error_description=description,
                state=auth.state,
            )
        return _error_page(PageError("invalid_request", f"Unknown decision {decision!r}"))

    async def token(request: Request) -> Response:
        try:
            basic = _basic_credentials(request)
            form = await _form(request)
            issuer = str(request.base_url).rstrip("/")
            return JSONResponse(server.token(form, basic, issuer), headers=NO_STORE)
        except OAuthError as exc:
            headers = dict(NO_STORE)
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="whop-sandbox"'
            return JSONResponse(exc.body, status_code=exc.status, headers=headers)

    async def userinfo(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            info = server.userinfo(token.strip() if scheme.lower() == "bearer" else None)
        except OAuthError as exc:
            challenge = f'Bearer error="{exc.error}"'
            return JSONResponse(
                exc.body, status_code=exc.status, headers={"WWW-Authenticate": challenge}
            )
        return JSONResponse(info, headers=NO_STORE)

    async def control(request: Request) -> Response:
        action = request.path_params.get("action")
        if action is None:
            return JSONResponse(server.snapshot())
        try:
            fields = await _json_body(request)
        except ValueError:
            return JSONResponse(error_body(400, "The body must be a JSON object"), status_code=400)
        if action == "consent":
            decision = fields.get("decision")
            if decision not in CONSENT_DECISIONS:
                message = f"`decision` must be one of {', '.join(CONSENT_DECISIONS)}"
                return JSONResponse(error_body(400, message, param="decision"), status_code=400)
            server.set_consent(decision)
            return JSONResponse({"consent": server.consent})
        if action == "revoke":
            everything = fields.get("all") is True
            token = fields.get("refresh_token")
            if not everything and not isinstance(token, str):
                message = "Give `refresh_token` or `all: true`"
                return JSONResponse(error_body(400, message, param="refresh_token"), 400)
            return JSONResponse({"revoked": server.revoke(token, all=everything)})
        if action == "expire":
            return JSONResponse({"expired": server.expire_access_tokens()})
        return JSONResponse(error_body(404, f"No control route {action}"), status_code=404)

    return Starlette(
        routes=[
            Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/oauth/userinfo", userinfo, methods=["GET", "POST"]),
            Route("/_sandbox/oauth", control, methods=["GET"]),
            Route("/_sandbox/oauth/{action}", control, methods=["POST"]),
        ]
    )


__all__ = ["build_oauth_app"]

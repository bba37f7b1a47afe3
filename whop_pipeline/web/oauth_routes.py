"""``GET /auth/whop`` and ``GET /auth/whop/callback``: connect a Whop account with OAuth 2.1 + PKCE.

The start route keeps the state and the PKCE verifier server-side (``oauth_states``: the state
hashed, the verifier encrypted), bound to the browser session that started it, single use and valid
for ten minutes; the redirect URI is the configured one, never taken from the request. The
callback checks all of that before it spends the code; whatever goes wrong ends on a page that
says what happened, with nothing stored. On success it stores the tokens encrypted, registers the
connection's webhook, makes the connection active and starts its first full sync.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import secrets

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from whop_pipeline.execution import connection_ops
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections, oauth_tokens, tokens
from whop_pipeline.store.tables import oauth_states
from whop_pipeline.web import auth
from whop_pipeline.whop import oauth

log = logging.getLogger(__name__)
STATE_LIFETIME = dt.timedelta(minutes=10)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def page(title: str, message: str, status: int = 400) -> HTMLResponse:
    """A small page that says what happened (and links back to the settings page)."""
    body = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title></head><body><main><h1>{html.escape(title)}</h1><p role=status>"
        f"{html.escape(message)}</p><p><a href='/'>Back to the settings page</a></p></main>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status)


async def start(request: Request) -> Response:
    state = request.app.state
    principal = auth.principal(request, state.engine)
    name = request.query_params.get("connection", "")
    if principal is None:
        return page("Sign in first", "Sign in on the settings page, or send a Bearer token.", 401)
    if not principal.may_act_on(name):
        return page("Not allowed", "This token cannot connect that connection.", 403)
    try:
        settings = oauth.OAuthSettings.from_env()
    except Exception as exc:
        return page("Whop OAuth is not configured", str(exc), 503)
    with state.engine.connect() as conn:
        row = connections.get(conn, name)
    if row is None:
        return page("Unknown connection", f"There is no connection named {name!r}.", 404)
    verifier = secrets.token_urlsafe(64)
    raw_state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(16)
    with state.engine.begin() as conn:
        conn.execute(
            sa.insert(oauth_states).values(
                connection=name,
                state_hash=_hash(raw_state),
                code_verifier_encrypted=SecretBox.from_env().encrypt(verifier),
                nonce=nonce,
                session_hash=auth.session_hash(request),
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    url = oauth.authorization_url(
        settings,
        state=raw_state,
        code_verifier=verifier,
        nonce=nonce,
        company_id=row.whop_account_id,
    )
    return RedirectResponse(url, status_code=302)


def _claim_state(engine: sa.Engine, raw_state: str, session: str) -> tuple[str | None, str]:
    """(connection, PKCE verifier) of a valid state, now marked used; or (None, what was
    wrong)."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(oauth_states).where(oauth_states.c.state_hash == _hash(raw_state))
        ).first()
        if row is None:
            return None, "This authorization is unknown: start again from the settings page."
        if row.used_at is not None:
            return None, "This authorization was already used: start again."
        claimed = conn.execute(
            sa.update(oauth_states)
            .where(oauth_states.c.state_hash == row.state_hash, oauth_states.c.used_at.is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            return None, "This authorization was already used: start again."
        if now - row.created_at > STATE_LIFETIME:
            return None, "This authorization expired (ten minutes): start again."
        if row.session_hash != session:
            return None, "This authorization was started in another browser session."
        verifier = SecretBox.from_env().decrypt(row.code_verifier_encrypted)
        return row.connection, verifier


async def callback(request: Request) -> Response:
    state = request.app.state
    params = request.query_params
    raw_state = params.get("state", "")
    if not raw_state:
        return page("Authorization failed", "Whop's answer carried no state.")
    name, verifier_or_problem = await run_in_threadpool(
        _claim_state, state.engine, raw_state, auth.session_hash(request)
    )
    if name is None:
        return page("Authorization failed", verifier_or_problem)
    if params.get("error"):
        reason = {"access_denied": "You declined the authorization on Whop."}.get(
            params["error"], f"Whop answered {params['error']}."
        )
        return page("Whop was not connected", f"{reason} Nothing was stored.")
    code = params.get("code", "")
    if not code:
        return page("Authorization failed", "Whop's answer carried no code.")
    try:
        settings = oauth.OAuthSettings.from_env()
        token_set = await run_in_threadpool(
            oauth.exchange_code, settings, code=code, code_verifier=verifier_or_problem
        )
        identity = await run_in_threadpool(oauth.userinfo, settings, token_set.access_token)
    except oauth.OAuthFailure as exc:
        log.warning("connection %s: code exchange refused: %s", name, exc.code)
        return page("Whop was not connected", f"Whop refused the authorization ({exc.code}).")
    handle = identity.get("username") or identity.get("name") or identity.get("sub")
    box = SecretBox.from_env()
    with state.engine.begin() as conn:
        oauth_tokens.save_authorized(
            conn,
            box,
            name,
            access_token=token_set.access_token,
            refresh_token=token_set.refresh_token,
            expires_at=token_set.expires_at,
            handle=handle,
            now=dt.datetime.now(dt.UTC),
        )
        new_token = None if tokens.has_token(conn, name) else tokens.issue(conn, name)
    try:
        await run_in_threadpool(
            connection_ops.register_webhook, state.engine, name, settings.public_url, box
        )
    except Exception as exc:  # the connection works without it; the status says so
        log.warning("connection %s: webhook not registered: %s", name, exc)
        with state.engine.begin() as conn:
            connections.set_status(
                conn, name, "active", error=f"the Whop webhook could not be registered: {exc}"
            )
    run_id = state.launcher.launch(name, full=True)
    request.session["flash"] = {
        "connected": name,
        "handle": handle,
        "run_id": run_id,
        # The session cookie is signed, not encrypted: the one-time token travels encrypted.
        **({"token": box.encrypt(new_token)} if new_token else {}),
    }
    return RedirectResponse("/", status_code=303)

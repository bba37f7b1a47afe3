"""Who is asking: an admin (``WHOP_PIPELINE_ADMIN_TOKEN``) or one connection (its API token).

A request proves it with ``Authorization: Bearer <token>`` (scripts, GraphQL) or with the signed
session cookie set when the token was entered on the settings page. A connection's token acts on
that connection only; every handler asks ``Principal.may_act_on`` before it reads or changes one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from starlette.requests import Request

from whop_pipeline.lib.secrets import KEYS_VAR
from whop_pipeline.settings import SettingsError
from whop_pipeline.store import tokens

SESSION_SECRET_VAR = "WHOP_PIPELINE_SESSION_SECRET"


@dataclass(frozen=True)
class Principal:
    admin: bool = False
    connection: str | None = None

    def may_act_on(self, name: str) -> bool:
        return self.admin or (self.connection is not None and self.connection == name)

    @property
    def label(self) -> str:
        return "admin" if self.admin else f"connection {self.connection}"


def principal_for_token(engine: sa.Engine, token: str) -> Principal | None:
    if not token:
        return None
    if tokens.is_admin(token):
        return Principal(admin=True)
    with engine.connect() as conn:
        name = tokens.connection_of(conn, token)
    return Principal(connection=name) if name else None


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def principal(request: Request, engine: sa.Engine) -> Principal | None:
    """From the Bearer token when sent, else from the session (signed cookie)."""
    token = bearer(request)
    if token is not None:
        return principal_for_token(engine, token)
    session = request.session if "session" in request.scope else {}
    if session.get("admin"):
        return Principal(admin=True)
    if session.get("connection"):
        return Principal(connection=session["connection"])
    return None


def session_id(request: Request) -> str:
    """A random id for this browser session (created on first use), to bind OAuth states to."""
    sid = request.session.get("sid")
    if not sid:
        sid = secrets.token_urlsafe(24)
        request.session["sid"] = sid
    return sid


def session_hash(request: Request) -> str:
    return hashlib.sha256(session_id(request).encode()).hexdigest()


def session_secret(environ: Mapping[str, str] | None = None) -> str:
    """The key that signs session cookies: its own variable, else derived from the first
    encryption key (so one secret to manage is enough)."""
    env = os.environ if environ is None else environ
    if env.get(SESSION_SECRET_VAR):
        return env[SESSION_SECRET_VAR]
    first = env.get(KEYS_VAR, "").split(",")[0].strip()
    if not first:
        raise SettingsError(f"{SESSION_SECRET_VAR} or {KEYS_VAR} must be set to sign sessions")
    return hmac.new(first.encode(), b"whop-pipeline session cookies", hashlib.sha256).hexdigest()

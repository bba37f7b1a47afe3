"""Serving the whole web app (``create_web_app``) on a free port for tests, and talking to it.

``serve_web_app`` starts the app under uvicorn on a background thread and yields a ``WebApp``
with its base URL; ``WebApp.client(token)`` is an httpx client on it that keeps cookies (so a
settings-page session or an OAuth round trip carries over) and, given a token, sends it as
``Authorization: Bearer``. ``web_env`` sets what the app reads at request time.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tokens import ADMIN_TOKEN_VAR
from whop_pipeline.web.app import create_web_app
from whop_pipeline.web.launcher import SyncLauncher
from whop_pipeline_tests.pipeline import FAST

ADMIN_TOKEN = "admin-token-of-the-tests"
TOKEN_LINE = re.compile(r"API token of '([a-z0-9-]+)'.*: (wpc_\S+)")
# The environment connection would be a third one next to those a test adds.
ENVIRONMENT_CONNECTION_VARS = (
    "WHOP_API_KEY",
    "TWENTY_API_KEY",
    "WHOP_ACCOUNT_ID",
    "TWENTY_API_URL",
    "WHOP_WEBHOOK_SECRET",
    "WHOP_PIPELINE_CONNECTION",
)


def web_env(
    monkeypatch: pytest.MonkeyPatch, db_url: str, *, admin_token: str = ADMIN_TOKEN
) -> None:
    """What the app reads from the environment: the database (sync runs and disconnects resolve
    connections through ``WHOP_PIPELINE_DB_URL``, so it must be the app's), the admin token and
    rate limits that never slow a test; no environment connection. Needs an encryption key set
    (the ``encryption_key`` fixture): it also signs the session cookies."""
    for name in ENVIRONMENT_CONNECTION_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", db_url)
    monkeypatch.setenv(ADMIN_TOKEN_VAR, admin_token)
    monkeypatch.setenv("TWENTY_MAX_CALLS_PER_MINUTE", str(FAST))
    monkeypatch.setenv("WHOP_MAX_REQUESTS_PER_SECOND", str(FAST))


def tokens_printed(out: str) -> dict[str, str]:
    """Connection name → the API token ``connections add`` printed (once)."""
    return {m.group(1): m.group(2) for m in TOKEN_LINE.finditer(out)}


@dataclass
class WebApp:
    app: Starlette
    server: BackgroundServer
    db_url: str
    instance: dg.DagsterInstance | None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def engine(self) -> sa.Engine:
        return self.app.state.engine

    @property
    def launcher(self) -> SyncLauncher:
        return self.app.state.launcher

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client on the app (cookies kept across requests and redirects); ``token`` is
        sent as ``Authorization: Bearer``. Close it, or use it as a context manager."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(options.pop("headers", {}))
        options.setdefault("timeout", 120.0)
        return httpx.Client(base_url=self.url, headers=headers, **options)


@contextlib.contextmanager
def serve_web_app(
    db_url: str,
    *,
    instance: dg.DagsterInstance | None = None,
    secrets: Mapping[str, str] | None = None,
    public_url: str | None = None,
    port: int = 0,
) -> Iterator[WebApp]:
    """``create_web_app`` on 127.0.0.1:``port`` (0: a free one) until the block ends; then the
    server stops, runs still going are waited for and the inbox writer is flushed (what the
    app's lifespan does when uvicorn runs it)."""
    get_engine(db_url)  # migrated before serving, as `serve` does
    app = create_web_app(db_url=db_url, secrets=secrets, instance=instance, public_url=public_url)
    server = BackgroundServer(app, port=port).start()
    try:
        yield WebApp(app, server, db_url, instance)
    finally:
        server.stop()
        app.state.launcher.close()
        app.state.receiver.state.writer.close()


def graphql(
    client: httpx.Client,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> dict[str, Any]:
    """POST ``query`` to ``/graphql``; the JSON answer (``data`` and ``errors``), after checking
    the HTTP status."""
    response = client.post("/graphql", json={"query": query, "variables": dict(variables or {})})
    assert response.status_code == status, response.text
    return response.json()


def graphql_data(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    """The ``data`` of an answer that must carry no error."""
    body = graphql(client, query, variables)
    assert not body.get("errors"), body
    return body["data"]


def graphql_error(client: httpx.Client, query: str, **variables: Any) -> str:
    """The one error message of an answer that must fail."""
    body = graphql(client, query, variables)
    errors = body.get("errors") or []
    assert len(errors) == 1, body
    return errors[0]["message"]

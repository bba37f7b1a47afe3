"""A web app, a sandbox with its OAuth server, and a connection waiting for Whop authorization:
the stack the OAuth and webhook tests share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import httpx
import sqlalchemy as sa

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.store import connections, oauth_tokens
from whop_pipeline.store.database import get_engine
from whop_pipeline.web.app import create_web_app
from whop_pipeline_tests.pipeline import FAST, start_test_sandbox

ADMIN = "admin-token-for-tests-4c1e"
CLIENT_ID = "app_sandbox"
CLIENT_SECRET = "sandbox-oauth-secret"


@dataclass
class Stack:
    app_url: str
    sandbox: object
    engine: sa.Engine
    web: object

    def client(self) -> httpx.Client:
        """A browser-like client: keeps cookies, does not follow redirects by itself."""
        return httpx.Client(timeout=30, follow_redirects=False)

    def start(self, client: httpx.Client, connection: str = "acme", **extra: str) -> httpx.Response:
        return client.get(
            f"{self.app_url}/auth/whop",
            params={"connection": connection, **extra},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )

    def authorize(self, client: httpx.Client, url: str) -> str:
        """Follow the redirect to Whop's authorize endpoint; the callback URL it sends back."""
        answer = client.get(url)
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    def row(self, name: str = "acme") -> connections.Connection:
        with self.engine.connect() as conn:
            return connections.require(conn, name)


def set_oauth_env(
    monkeypatch, *, client_id: str, client_secret: str, app_url: str, whop_root: str
) -> None:
    """The app's Whop OAuth settings, pointed at the sandbox's OAuth server."""
    for name, value in {
        "WHOP_OAUTH_CLIENT_ID": client_id,
        "WHOP_OAUTH_CLIENT_SECRET": client_secret,
        "WHOP_OAUTH_REDIRECT_URI": f"{app_url}/auth/whop/callback",
        "WHOP_OAUTH_BASE_URL": whop_root,
        "WHOP_PIPELINE_PUBLIC_URL": app_url,
    }.items():
        monkeypatch.setenv(name, value)


def save_waiting_connection(engine: sa.Engine, sandbox, name: str = "acme") -> None:
    """A connection to the sandbox's first account with its Twenty key, waiting for Whop consent."""
    with engine.begin() as conn:
        oauth_tokens.save_pending(
            conn,
            SecretBox.from_env(),
            name=name,
            whop_account_id=sandbox.whop.account_id,
            twenty_api_url=sandbox.twenty_url,
            twenty_api_key=sandbox.twenty_api_key,
            whop_api_base_url=sandbox.whop_base_url,
            now=dt.datetime.now(dt.UTC),
        )


def serve_stack(monkeypatch, sqlite_url: str) -> Iterator[Stack]:
    """The stack, torn down in order: the app (waiting for its syncs), then the sandbox."""
    monkeypatch.setenv("WHOP_PIPELINE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", sqlite_url)
    monkeypatch.setenv("TWENTY_MAX_CALLS_PER_MINUTE", str(FAST))
    monkeypatch.setenv("WHOP_MAX_REQUESTS_PER_SECOND", str(FAST))
    for name in ("WHOP_API_KEY", "TWENTY_API_KEY", "WHOP_PIPELINE_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    with dg.instance_for_test() as instance:
        app = create_web_app(db_url=sqlite_url, instance=instance, secret_cache_seconds=0)
        web = BackgroundServer(app).start()
        callback = f"{web.url}/auth/whop/callback"
        sandbox = start_test_sandbox(
            oauth_client_id=CLIENT_ID,
            oauth_client_secret=CLIENT_SECRET,
            oauth_redirect_uri=callback,
        )
        try:
            root = sandbox.whop_server.url
            set_oauth_env(
                monkeypatch,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                app_url=web.url,
                whop_root=root,
            )
            httpx.post(f"{root}/_sandbox/oauth/consent", json={"decision": "approve"})
            engine = get_engine(sqlite_url)
            save_waiting_connection(engine, sandbox)
            yield Stack(web.url, sandbox, engine, app)
        finally:
            web.stop()
            # What the app's lifespan does when served for real (the test server runs none):
            # wait for the syncs it launched (they need the sandbox), flush the inbox writer.
            app.state.launcher.close()
            app.state.receiver.state.writer.close()
            sandbox.stop()


def connect(stack: Stack) -> None:
    """Connect Whop for ``acme`` and wait for the first sync the callback launched."""
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        assert client.get(callback).status_code == 303
    launcher = stack.web.state.launcher
    for run_id in launcher.launched("acme"):
        launcher.wait(run_id, timeout=120)

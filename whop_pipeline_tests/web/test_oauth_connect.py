"""Connect Whop with OAuth 2.1 + PKCE against the sandbox's OAuth server: the happy path, and each
attack or mistake refused with the right answer and nothing stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.execution.sync import run_sync
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.store import connections, oauth_tokens, tokens
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import oauth_states
from whop_pipeline.web.app import create_web_app
from whop_pipeline_tests.expected_crm import expected_people
from whop_pipeline_tests.pipeline import FAST, start_test_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

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


@pytest.fixture
def stack(monkeypatch, sqlite_url, encryption_key) -> Iterator[Stack]:
    monkeypatch.setenv("WHOP_PIPELINE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", sqlite_url)
    monkeypatch.setenv("TWENTY_MAX_CALLS_PER_MINUTE", str(FAST))
    monkeypatch.setenv("WHOP_MAX_REQUESTS_PER_SECOND", str(FAST))
    for name in ("WHOP_API_KEY", "TWENTY_API_KEY", "WHOP_PIPELINE_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    with dg.instance_for_test() as instance:
        app = create_web_app(db_url=sqlite_url, instance=instance)
        web = BackgroundServer(app).start()
        callback = f"{web.url}/auth/whop/callback"
        sandbox = start_test_sandbox(
            oauth_client_id=CLIENT_ID,
            oauth_client_secret=CLIENT_SECRET,
            oauth_redirect_uri=callback,
        )
        try:
            root = sandbox.whop_server.url
            for name, value in {
                "WHOP_OAUTH_CLIENT_ID": CLIENT_ID,
                "WHOP_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
                "WHOP_OAUTH_REDIRECT_URI": callback,
                "WHOP_OAUTH_BASE_URL": root,
                "WHOP_PIPELINE_PUBLIC_URL": web.url,
            }.items():
                monkeypatch.setenv(name, value)
            httpx.post(f"{root}/_sandbox/oauth/consent", json={"decision": "approve"})
            engine = get_engine(sqlite_url)
            with engine.begin() as conn:
                oauth_tokens.save_pending(
                    conn,
                    SecretBox.from_env(),
                    name="acme",
                    whop_account_id=sandbox.whop.account_id,
                    twenty_api_url=sandbox.twenty_url,
                    twenty_api_key=sandbox.twenty_api_key,
                    whop_api_base_url=sandbox.whop_base_url,
                    now=dt.datetime.now(dt.UTC),
                )
            yield Stack(web.url, sandbox, engine, app)
        finally:
            web.stop()
            # What the app's lifespan does when served for real (the test server runs none):
            # wait for the syncs it launched (they need the sandbox), flush the inbox writer.
            app.state.launcher.close()
            app.state.receiver.state.writer.close()
            sandbox.stop()


def nothing_stored(stack: Stack) -> None:
    row = stack.row()
    assert row.status == "needs_reauth" and not row.has_credentials
    assert row.whop_account_handle is None and row.whop_webhook_id is None


def test_connect_stores_tokens_registers_the_webhook_and_syncs(stack):
    with stack.client() as client:
        start = stack.start(client)
        assert start.status_code == 302
        authorize = urlsplit(start.headers["location"])
        query = parse_qs(authorize.query)
        # PKCE S256, the configured redirect URI, the account to scope the token to.
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["redirect_uri"] == [f"{stack.app_url}/auth/whop/callback"]
        assert query["company_id"] == [stack.sandbox.whop.account_id]
        callback = stack.authorize(client, start.headers["location"])
        done = client.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/"
    row = stack.row()
    assert row.status == "active" and row.whop_auth == "oauth" and row.whop_account_handle
    assert row.whop_webhook_id
    hooks = httpx.get(
        f"{stack.sandbox.whop_base_url}/webhooks",
        params={"account_id": stack.sandbox.whop.account_id},
        headers={"Authorization": f"Bearer {stack.sandbox.whop_api_key}"},
    ).json()["data"]
    assert [h["url"] for h in hooks if h["id"] == row.whop_webhook_id] == [
        f"{stack.app_url}/webhooks/whop/acme"
    ]
    with stack.engine.connect() as conn:
        stored = conn.execute(sa.select(connections.connections)).one()
    assert stored.webhook_secret_encrypted and stored.whop_refresh_token_encrypted
    # The first full sync was launched; it lands the account's people.
    launcher = stack.web.state.launcher
    [run_id] = launcher.launched("acme")
    launcher.wait(run_id, timeout=120)
    run = launcher.run(run_id, "acme")
    assert run.status == "SUCCESS", run.error
    assert run.written("twenty_people") == len(expected_people(stack.sandbox.whop.dataset))
    assert stack.row().last_sync_outcome == "success"


def test_a_state_is_single_use(stack):
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        assert client.get(callback).status_code == 303
        again = client.get(callback)
    assert again.status_code == 400 and "already used" in again.text


def test_a_state_from_another_session_is_refused_and_nothing_stored(stack):
    with stack.client() as victim, stack.client() as attacker:
        callback = stack.authorize(attacker, stack.start(attacker).headers["location"])
        answer = victim.get(callback)  # the attacker's callback, in the victim's browser
    assert answer.status_code == 400 and "another browser session" in answer.text
    nothing_stored(stack)


def test_an_expired_state_is_refused(stack):
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        with stack.engine.begin() as conn:
            conn.execute(
                sa.update(oauth_states).values(
                    created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
                )
            )
        answer = client.get(callback)
    assert answer.status_code == 400 and "expired" in answer.text
    nothing_stored(stack)


def test_a_code_for_another_verifier_is_refused(stack):
    """PKCE: a code obtained with one verifier cannot be redeemed under another state's."""
    with stack.client() as client:
        first = stack.authorize(client, stack.start(client).headers["location"])
        second = stack.authorize(client, stack.start(client).headers["location"])
        code = parse_qs(urlsplit(first).query)["code"][0]
        state = parse_qs(urlsplit(second).query)["state"][0]
        answer = client.get(
            f"{stack.app_url}/auth/whop/callback", params={"code": code, "state": state}
        )
    assert answer.status_code == 400 and "invalid_grant" in answer.text
    nothing_stored(stack)


def test_a_wrong_client_secret_is_refused(stack, monkeypatch):
    monkeypatch.setenv("WHOP_OAUTH_CLIENT_SECRET", "not-the-secret")
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        answer = client.get(callback)
    assert answer.status_code == 400 and "invalid_client" in answer.text
    nothing_stored(stack)


def test_a_denied_consent_ends_on_a_page_with_nothing_stored(stack):
    httpx.post(f"{stack.sandbox.whop_server.url}/_sandbox/oauth/consent", json={"decision": "deny"})
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
        answer = client.get(callback)
    assert answer.status_code == 400 and "declined" in answer.text
    nothing_stored(stack)


def test_redirects_never_come_from_the_request(stack):
    with stack.client() as client:
        start = stack.start(
            client, redirect_uri="https://evil.example/cb", next="https://evil.example"
        )
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["redirect_uri"] == [f"{stack.app_url}/auth/whop/callback"]
        assert "evil" not in start.headers["location"]
        callback = stack.authorize(client, start.headers["location"])
        done = client.get(callback + "&next=https://evil.example")
    assert done.headers["location"] == "/"


def test_only_an_allowed_principal_may_start(stack):
    with stack.engine.begin() as conn:
        oauth_tokens.save_pending(
            conn,
            SecretBox.from_env(),
            name="beta",
            whop_account_id="biz_beta",
            twenty_api_url="http://t",
            twenty_api_key="k",
            whop_api_base_url="http://w",
            now=dt.datetime.now(dt.UTC),
        )
        beta_token = tokens.issue(conn, "beta")
    with stack.client() as client:
        anonymous = client.get(f"{stack.app_url}/auth/whop", params={"connection": "acme"})
        other = client.get(
            f"{stack.app_url}/auth/whop",
            params={"connection": "acme"},
            headers={"Authorization": f"Bearer {beta_token}"},
        )
    assert anonymous.status_code == 401 and other.status_code == 403
    with stack.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(oauth_states)).scalar_one() == 0


def connect(stack: Stack) -> None:
    with stack.client() as client:
        callback = stack.authorize(client, stack.start(client).headers["location"])
        assert client.get(callback).status_code == 303
    launcher = stack.web.state.launcher
    for run_id in launcher.launched("acme"):
        launcher.wait(run_id, timeout=120)


def stored_refresh_token(stack: Stack) -> str | None:
    with stack.engine.connect() as conn:
        return oauth_tokens.read(conn, SecretBox.from_env(), "acme").refresh_token


def oauth_state(stack: Stack) -> dict:
    return httpx.get(f"{stack.sandbox.whop_server.url}/_sandbox/oauth").json()


def test_an_expired_access_token_is_refreshed_once_and_the_sync_goes_on(stack):
    connect(stack)
    first = stored_refresh_token(stack)
    httpx.post(f"{stack.sandbox.whop_server.url}/_sandbox/oauth/expire", json={})
    instance = stack.web.state.launcher.instance
    report = run_sync(connection="acme", instance=instance, printer=lambda _line: None)
    assert report.success, report.error
    second = stored_refresh_token(stack)
    assert second != first  # rotated, and the new one saved
    assert oauth_state(stack)["live_refresh_tokens"] == 1  # the old one was spent, once
    # Fresh now: the next sync spends no refresh token.
    assert run_sync(connection="acme", instance=instance, printer=lambda _line: None).success
    assert stored_refresh_token(stack) == second


def test_a_revoked_refresh_token_ends_in_needs_reauth_without_retrying(stack):
    connect(stack)
    root = stack.sandbox.whop_server.url
    httpx.post(f"{root}/_sandbox/oauth/revoke", json={"all": True})
    httpx.post(f"{root}/_sandbox/oauth/expire", json={})
    instance = stack.web.state.launcher.instance
    with pytest.raises(connections.ConnectionProblem, match="connect Whop again"):
        run_sync(connection="acme", instance=instance, printer=lambda _line: None)
    row = stack.row()
    assert row.status == "needs_reauth" and "Whop refused the refresh" in row.last_error
    with stack.engine.connect() as conn:
        assert "acme" not in connections.schedulable(conn)  # no schedule retries it

"""Connect Whop with OAuth 2.1 + PKCE against the sandbox's OAuth server: the happy path, and each
attack or mistake refused with the right answer and nothing stored."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.execution.sync import run_sync
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections, oauth_tokens, tokens
from whop_pipeline.store.tables import oauth_states
from whop_pipeline_tests.expected_crm import expected_people
from whop_pipeline_tests.web.oauth_stack import Stack, connect

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]


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

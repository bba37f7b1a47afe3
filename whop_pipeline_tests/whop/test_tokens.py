"""OAuth tokens: refreshed before expiry and once on a 401, the rotated refresh token saved, one
refresh when two processes race, and needs_reauth (no endless retries) when the grant is gone."""

from __future__ import annotations

import datetime as dt
import threading
import time

import httpx
import pytest

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections, oauth_tokens
from whop_pipeline.store.database import get_engine
from whop_pipeline.whop import tokens
from whop_pipeline.whop.client import WhopClient
from whop_pipeline.whop.oauth import OAuthFailure, OAuthSettings, TokenSet

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
SETTINGS = OAuthSettings(
    client_id="app_test", client_secret="s", redirect_uri="http://x/cb", public_url="http://x"
)


@pytest.fixture
def oauth_connection(sqlite_url, encryption_key):
    engine = get_engine(sqlite_url)
    box = SecretBox.from_env()
    with engine.begin() as conn:
        oauth_tokens.save_pending(
            conn,
            box,
            name="acme",
            whop_account_id="biz_a",
            twenty_api_url="http://t",
            twenty_api_key="tk",
            whop_api_base_url="http://w",
            now=NOW,
        )
        oauth_tokens.save_authorized(
            conn,
            box,
            "acme",
            access_token="access-1",
            refresh_token="refresh-1",
            expires_at=NOW + dt.timedelta(minutes=2),
            handle="acme-co",
            now=NOW,
        )
    return engine


class Refresher:
    """Whop's token endpoint, counting what it is asked: rotates, and refuses spent tokens."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.valid = {"refresh-1"}
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, settings, refresh_token: str) -> TokenSet:
        time.sleep(self.delay)
        with self.lock:
            self.calls.append(refresh_token)
            if refresh_token not in self.valid:
                raise OAuthFailure("invalid_grant", "refresh token is invalid")
            self.valid.discard(refresh_token)
            n = len(self.calls) + 1
            self.valid.add(f"refresh-{n}")
        return TokenSet(f"access-{n}", f"refresh-{n}", NOW + dt.timedelta(hours=1))


def test_a_token_about_to_expire_is_refreshed_once_and_the_rotation_saved(oauth_connection):
    refresher = Refresher()
    token = tokens.access_token(
        oauth_connection, "acme", SETTINGS, now=lambda: NOW, refresher=refresher
    )
    assert token == "access-2" and refresher.calls == ["refresh-1"]
    with oauth_connection.connect() as conn:
        stored = oauth_tokens.read(conn, SecretBox.from_env(), "acme")
    assert stored.refresh_token == "refresh-2" and stored.access_token == "access-2"
    # Fresh now: no further call.
    again = tokens.access_token(
        oauth_connection, "acme", SETTINGS, now=lambda: NOW, refresher=refresher
    )
    assert again == "access-2" and len(refresher.calls) == 1


def test_two_processes_racing_refresh_once(oauth_connection):
    refresher = Refresher(delay=0.3)
    results: list[str] = []

    def fetch() -> None:
        results.append(
            tokens.access_token(
                oauth_connection, "acme", SETTINGS, now=lambda: NOW, refresher=refresher
            )
        )

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refresher.calls == ["refresh-1"]  # the spent token was never sent twice
    assert results == ["access-2", "access-2"]


def test_a_revoked_grant_ends_in_needs_reauth_without_retrying(oauth_connection):
    refresher = Refresher()
    refresher.valid.clear()  # revoked on Whop
    with pytest.raises(tokens.NeedsReauthorization, match="connect Whop again"):
        tokens.access_token(
            oauth_connection, "acme", SETTINGS, now=lambda: NOW, refresher=refresher
        )
    assert refresher.calls == ["refresh-1"]
    with oauth_connection.connect() as conn:
        row = connections.require(conn, "acme")
        assert row.status == "needs_reauth" and "Whop refused the refresh" in row.last_error
        assert connections.schedulable(conn, {}) == []  # its syncs stop


def test_a_401_gets_one_new_token_and_the_call_goes_on():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(401, json={"error": {"type": "unauthorized"}})
        return httpx.Response(200, json={"id": "prod_1", "title": "P"})

    renewals: list[int] = []

    def reauthorize() -> str:
        renewals.append(1)
        return "new"

    client = WhopClient(
        base_url="http://whop.test/api/v1",
        api_key="old",
        account_id="biz_a",
        reauthorize=reauthorize,
    )
    client._http = httpx.Client(  # the same client, on a transport that plays Whop
        base_url="http://whop.test/api/v1",
        transport=httpx.MockTransport(handler),
        headers=dict(client._http.headers),
    )
    assert client.send("GET", "products/prod_1")["id"] == "prod_1"
    assert seen == ["Bearer old", "Bearer new"] and renewals == [1]
    seen.clear()

    def always_401(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, json={"error": {"type": "unauthorized"}})

    client._http = httpx.Client(
        base_url="http://whop.test/api/v1",
        transport=httpx.MockTransport(always_401),
        headers=dict(client._http.headers),
    )
    with pytest.raises(Exception, match="401"):
        client.send("GET", "products/prod_1")
    assert len(seen) == 2 and len(renewals) == 2  # once per call, never a loop

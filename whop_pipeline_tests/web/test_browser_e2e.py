"""The settings page in a real browser (Chromium through Playwright), end to end against the
emulators: sign in, Connect Whop through the sandbox's consent page, Sync now, webhooks (v1 and a
legacy event name) applied to Twenty, Disconnect, and a connection whose sync fails.

Screenshots of the page (signed out, connected, syncing, disconnected, error) go to the directory in
``WHOP_PIPELINE_SCREENSHOTS`` (default: this test's tmp dir), for release notes.

Chromium is the system's (Debian package ``chromium``; ``.ci/run`` installs it): without it the test
skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.cli.inbox import process_pending
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.sandbox.readings import live_records
from whop_pipeline.store import connections
from whop_pipeline.store.tables import webhook_inbox
from whop_pipeline_tests.expected_crm import assert_workspace_holds_exactly
from whop_pipeline_tests.inbox.webhook_helpers import signed_headers
from whop_pipeline_tests.pipeline import start_test_sandbox
from whop_pipeline_tests.web.helpers import ADMIN_TOKEN, serve_web_app, web_env
from whop_pipeline_tests.web.oauth_stack import save_waiting_connection, set_oauth_env

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.sandbox, pytest.mark.dagster]

CLIENT_ID = "app_browser_test"
CLIENT_SECRET = "browser-test-oauth-secret"
SYNC_TIMEOUT_MS = 180_000


def chromium() -> str:
    """The system Chromium; skip without one (fail under CI=true, where it must run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        reason = "no Chromium binary on PATH (install the Debian package `chromium`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; CI=true requires the browser test to run")
        pytest.skip(reason)
    return found


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("WHOP_PIPELINE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page() -> Iterator[Any]:
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 860})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def whop_api(sandbox, method: str, path: str, **options: Any) -> httpx.Response:
    """The sandbox's Whop API with account 1's key (what the account's owner would use)."""
    response = httpx.request(
        method,
        f"{sandbox.whop_base_url}{path}",
        headers={"Authorization": f"Bearer {sandbox.whop_api_key}"},
        timeout=30,
        **options,
    )
    assert response.status_code < 300, response.text
    return response


def stage_of(sandbox, membership_id: str) -> str:
    opportunities = live_records(sandbox.twenty.dump(), "opportunities")
    return next(o["stage"] for o in opportunities if o["whopMembershipId"] == membership_id)


def legacy_envelope(sandbox, membership: dict[str, Any]) -> dict[str, Any]:
    """A delivery as existing webhooks still send it: the pre-v1 event name, the v1 envelope."""
    return {
        "id": "msg_legacy_went_valid_1",
        "type": "membership.went_valid",
        "api_version": "v1",
        "api_version_date": sandbox.whop.api_version_date,
        "account_id": sandbox.whop.account_id,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "data": membership,
    }


def post_signed(url: str, envelope: dict[str, Any], secret: str) -> httpx.Response:
    body = json.dumps(envelope).encode()
    return httpx.post(url, content=body, headers=signed_headers(body, secret, envelope["id"]))


@pytest.mark.timeout(900)
def test_the_settings_page_in_a_browser(
    browser_page, screenshots, monkeypatch, sqlite_url, encryption_key
):
    from playwright.sync_api import expect

    page = browser_page
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = screenshots / f"settings-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    web_env(monkeypatch, sqlite_url)
    with dg.instance_for_test() as instance, serve_web_app(sqlite_url, instance=instance) as web:
        callback = f"{web.url}/auth/whop/callback"
        # The consent page is left to ask: the browser clicks Approve on it.
        sandbox = start_test_sandbox(
            oauth_client_id=CLIENT_ID,
            oauth_client_secret=CLIENT_SECRET,
            oauth_redirect_uri=callback,
        )
        try:
            set_oauth_env(
                monkeypatch,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                app_url=web.url,
                whop_root=sandbox.whop_server.url,
            )
            save_waiting_connection(web.engine, sandbox)
            home = f"{web.url}/"
            row = page.locator("#connection-acme")
            status = row.locator('[data-field="status"]')
            last_sync = row.locator('[data-field="last-sync"]')

            # --- sign in with the admin token ----------------------------------------------
            page.goto(home)
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            shot("signed-out")
            page.get_by_label("Token").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("status")).to_contain_text("Signed in as admin")
            expect(status).to_have_text("needs re-authorization")
            expect(row.locator('[data-field="error"]')).to_contain_text("waiting for Whop")

            # --- Connect Whop: the sandbox's consent page, Approve, back on the page --------
            row.get_by_role("link", name="Connect Whop").click()
            expect(page.get_by_role("heading", name="Authorize app")).to_be_visible()
            assert page.url.startswith(sandbox.whop_server.url)
            page.get_by_role("button", name="Approve").click()
            page.wait_for_url(home)
            with web.engine.connect() as conn:
                stored = connections.require(conn, "acme")
            handle = stored.whop_account_handle
            assert handle and stored.whop_auth == "oauth" and stored.whop_webhook_id
            expect(page.get_by_role("status")).to_contain_text(f"Connected acme as {handle}.")
            expect(page.locator(".token code")).to_contain_text("wpc_")
            expect(status).to_have_text("connected")
            expect(row.locator('[data-field="handle"]')).to_have_text(handle)
            shot("connected")
            # The flash is shown once; the first full sync (started by the callback) runs.
            page.goto(home)
            expect(page.locator(".token")).to_have_count(0)
            expect(page.get_by_role("status")).not_to_contain_text("Connected acme")
            expect(last_sync).to_contain_text("succeeded", timeout=SYNC_TIMEOUT_MS)

            # --- Sync now: the row says syncing…, then that it succeeded ---------------------
            row.get_by_role("button", name="Sync now").click()
            expect(last_sync).to_contain_text("syncing…")
            expect(row.get_by_role("button", name="Sync now")).to_have_count(0)
            shot("syncing")
            # The page reloads itself while the run lasts.
            expect(last_sync).to_contain_text("succeeded", timeout=SYNC_TIMEOUT_MS)
            expect(row.locator('[data-field="error"]')).to_have_text("—")
            dump = sandbox.twenty.dump()
            people, opportunities = (live_records(dump, k) for k in ("people", "opportunities"))
            assert people and opportunities
            assert_workspace_holds_exactly(dump, sandbox.whop.dataset)

            # --- webhooks: a v1 membership.activated from Whop, a legacy went_valid ----------
            with web.engine.connect() as conn:
                hook_id = connections.require(conn, "acme").whop_webhook_id
                secret = connections.secrets(conn, SecretBox.from_env(), "acme").webhook_secret
            assert hook_id and secret
            canceled = [
                m for m in sandbox.whop.dataset.rendered("memberships") if m["status"] == "canceled"
            ]
            first, second = canceled[0]["id"], canceled[1]["id"]
            assert stage_of(sandbox, first) == stage_of(sandbox, second) == "LOST"

            sandbox.whop.update_membership(first, status="active")
            assert sandbox.whop.wait_for_webhooks(20)
            deliveries = whop_api(sandbox, "GET", f"/webhooks/{hook_id}/deliveries").json()["data"]
            activated = [
                d
                for d in deliveries
                if d["event"] == "membership.activated" and d["request_body"]["data"]["id"] == first
            ]
            assert [d["response_code"] for d in activated] == [200], deliveries

            # The second change reaches the app only as the legacy event: the webhook is off
            # while it happens, and the old-style delivery is signed with the webhook's secret.
            whop_api(sandbox, "PATCH", f"/webhooks/{hook_id}", json={"enabled": False})
            reactivated = sandbox.whop.update_membership(second, status="active")
            whop_api(sandbox, "PATCH", f"/webhooks/{hook_id}", json={"enabled": True})
            receiver = f"{web.url}/webhooks/whop/acme"
            legacy = post_signed(receiver, legacy_envelope(sandbox, reactivated), secret)
            assert legacy.status_code == 200 and legacy.json() == {"status": "stored"}
            with web.engine.connect() as conn:
                stored_types = {
                    (r.event_type, r.payload["type"], r.object_id)
                    for r in conn.execute(
                        sa.select(webhook_inbox).where(webhook_inbox.c.connection == "acme")
                    )
                }
            assert ("membership.activated", "membership.activated", first) in stored_types
            assert ("membership.activated", "membership.went_valid", second) in stored_types

            # What the daemon's sensor does in production.
            done = process_pending(connection="acme", instance=instance, printer=lambda _: None)
            assert done >= 2
            assert stage_of(sandbox, first) == "CUSTOMER"
            assert stage_of(sandbox, second) == "CUSTOMER"

            # --- Disconnect, confirmed: the records stay, the row says so, webhooks are 410 --
            counts = {
                k: len(live_records(sandbox.twenty.dump(), k)) for k in ("people", "opportunities")
            }
            page.goto(home)
            row.get_by_role("link", name="Disconnect").click()
            expect(page.get_by_role("heading", name="Disconnect acme?")).to_be_visible()
            page.get_by_role("button", name="Disconnect acme").click()
            # "I understand" is required: without it the form is not sent, nothing changes.
            expect(page.get_by_role("heading", name="Disconnect acme?")).to_be_visible()
            with web.engine.connect() as conn:
                assert connections.require(conn, "acme").status == "active"
            page.get_by_label("I understand").check()
            page.get_by_role("button", name="Disconnect acme").click()
            page.wait_for_url(home)
            expect(page.get_by_role("status")).to_contain_text("Disconnected acme.")
            expect(status).to_have_text("disconnected")
            expect(row.get_by_role("button", name="Sync now")).to_have_count(0)
            shot("disconnected")
            after = {
                k: len(live_records(sandbox.twenty.dump(), k)) for k in ("people", "opportunities")
            }
            assert after == counts
            hooks = whop_api(sandbox, "GET", "/webhooks").json()["data"]
            assert hook_id not in {h["id"] for h in hooks}
            late = dict(legacy_envelope(sandbox, reactivated), id="msg_after_disconnect")
            deadline = time.monotonic() + 15  # the receiver caches a connection's secret briefly
            while (answer := post_signed(receiver, late, secret)).status_code != 410:
                assert time.monotonic() < deadline, (answer.status_code, answer.text)
                time.sleep(0.5)
            assert answer.json() == {"error": "connection disconnected"}

            # --- a connection whose sync fails: its error is on its row -----------------------
            with web.engine.begin() as conn:
                connections.save(
                    conn,
                    SecretBox.from_env(),
                    name="broken",
                    whop_account_id=sandbox.whop.account_id,
                    twenty_api_url=sandbox.twenty_url,
                    whop_api_key=sandbox.whop_api_key,
                    twenty_api_key="not-the-twenty-key",
                    whop_api_base_url=sandbox.whop_base_url,
                    now=dt.datetime.now(dt.UTC),
                )
            page.goto(home)
            broken = page.locator("#connection-broken")
            broken.get_by_role("button", name="Sync now").click()
            expect(broken.locator('[data-field="error"]')).to_contain_text(
                "Twenty", timeout=SYNC_TIMEOUT_MS
            )
            expect(broken.locator('[data-field="status"]')).to_have_text("needs re-authorization")
            expect(page.get_by_role("status")).to_contain_text("The sync of broken did not start")
            shot("error")
        finally:
            sandbox.stop()
    for path in shots:
        assert path.stat().st_size > 0
    print("screenshots:", *shots, sep="\n  ")

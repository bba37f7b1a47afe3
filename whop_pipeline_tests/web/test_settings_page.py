"""The settings page without a browser: every form refuses a missing or wrong CSRF token with a 403
and changes nothing, a connection's token sees and acts on its own row only, a bad token is a 401,
every page carries the security headers, and the post-OAuth flash is shown once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.store import connections, health_models, sync_history, tokens
from whop_pipeline.store.database import get_engine
from whop_pipeline.web.app import create_web_app
from whop_pipeline.web.launcher import RunView
from whop_pipeline_tests.connections_helpers import add_connection
from whop_pipeline_tests.web.helpers import ADMIN_TOKEN, web_env

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FLASH = {"connected": "acme", "handle": "acme_owner", "run_id": "run-of-acme", "token": "wpc_once"}


@dataclass
class Launches:
    """Stands in for the launcher's ``launch``: records what would have started."""

    calls: list[tuple[str, bool]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)

    def launch(self, connection: str, *, full: bool = False) -> str:
        self.calls.append((connection, full))
        return f"run-{len(self.calls)}"

    def run(self, run_id: str, connection: str | None = None) -> RunView | None:
        if run_id in self.running:
            return RunView(run_id, connection or "", "STARTED", None, None)
        return None


@dataclass
class Page:
    client: httpx.Client
    app: object
    launches: Launches

    def csrf(self) -> str:
        match = CSRF.search(self.client.get("/").text)
        assert match, "the page carries no CSRF token"
        return match.group(1)

    def sign_in(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        return self.client.post(
            "/sign-in", data={"token": token, "csrf_token": self.csrf()}, follow_redirects=False
        )

    def post(self, path: str, csrf: str | None, **data: str) -> httpx.Response:
        if csrf is not None:
            data["csrf_token"] = csrf
        return self.client.post(path, data=data, follow_redirects=False)

    def status(self, name: str) -> str:
        with self.app.state.engine.connect() as conn:
            return connections.require(conn, name).status


@pytest.fixture
def page(monkeypatch, sqlite_url, encryption_key) -> Iterator[Page]:
    web_env(monkeypatch, sqlite_url)
    for name in ("acme", "beta"):
        add_connection(sqlite_url, name)

    async def set_flash(request: Request) -> PlainTextResponse:
        # What the OAuth callback leaves in the session before it redirects to the page.
        # The token travels encrypted in the signed (not encrypted) session cookie.
        request.session["flash"] = {**FLASH, "token": SecretBox.from_env().encrypt(FLASH["token"])}
        return PlainTextResponse("ok")

    with dg.instance_for_test() as instance:
        app = create_web_app(
            db_url=sqlite_url,
            instance=instance,
            extra_routes=[Route("/test/flash", set_flash, methods=["GET"])],
        )
        launches = Launches()
        real_run = app.state.launcher.run
        monkeypatch.setattr(app.state.launcher, "launch", launches.launch)
        monkeypatch.setattr(
            app.state.launcher,
            "run",
            lambda run_id, connection=None: (
                launches.run(run_id, connection) or real_run(run_id, connection)
            ),
        )
        get_engine(sqlite_url)
        server = BackgroundServer(app).start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                yield Page(client, app, launches)
        finally:
            server.stop()
            app.state.launcher.close()
            app.state.receiver.state.writer.close()


def test_every_page_carries_the_security_headers(page):
    answers = [page.client.get("/")]  # the sign-in form
    answers.append(page.sign_in("wrong"))  # its 401
    answers.append(page.post("/sign-out", csrf=None))  # a 403
    assert page.sign_in().status_code == 303
    answers += [page.client.get("/"), page.client.get("/connections/acme/disconnect")]
    for answer in answers:
        headers = answer.headers
        assert headers["content-type"].startswith("text/html")
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    cookie = page.sign_in().headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_the_sign_in_form_is_accessible_and_a_bad_token_is_401(page):
    form = page.client.get("/")
    assert form.status_code == 200
    assert '<html lang="en">' in form.text
    assert '<label for="token">' in form.text and 'id="token"' in form.text
    assert 'role="status"' in form.text
    refused = page.sign_in("wpc_not-a-token")
    assert refused.status_code == 401
    assert "was not accepted" in refused.text and 'action="/sign-in"' in refused.text
    assert "Connections" not in page.client.get("/").text  # still signed out


def test_signing_in_rotates_the_csrf_token_and_shows_the_table(page):
    before = page.csrf()
    assert page.sign_in().status_code == 303
    table = page.client.get("/").text
    after = CSRF.search(table).group(1)
    assert after != before
    assert "Signed in as admin." in table
    assert table.count('<th scope="col">') == 7
    assert 'id="connection-acme"' in table and 'id="connection-beta"' in table


@pytest.mark.parametrize("csrf", [None, "", "forged-token"], ids=["missing", "empty", "wrong"])
def test_every_form_refuses_a_missing_or_wrong_csrf_token(page, csrf):
    # Sign in: refused, and the session stays signed out.
    refused = page.post("/sign-in", csrf, token=ADMIN_TOKEN)
    assert refused.status_code == 403 and "Nothing was changed" in refused.text
    assert 'action="/sign-in"' in page.client.get("/").text

    assert page.sign_in().status_code == 303
    # Sync now: refused, nothing launched.
    assert page.post("/connections/acme/sync", csrf).status_code == 403
    assert page.launches.calls == []
    # Disconnect, even confirmed: refused, the connection stays.
    assert page.post("/connections/acme/disconnect", csrf, confirm="yes").status_code == 403
    assert page.status("acme") == "active"
    # Sign out: refused, still signed in.
    assert page.post("/sign-out", csrf).status_code == 403
    assert 'id="connection-acme"' in page.client.get("/").text

    # The same forms with the session's token do what they say (POST, then 303 to the page).
    token = page.csrf()
    synced = page.post("/connections/acme/sync", token)
    assert synced.status_code == 303 and synced.headers["location"] == "/"
    assert page.launches.calls == [("acme", True)]  # never synced: a full sync
    unconfirmed = page.post("/connections/acme/disconnect", token)
    assert unconfirmed.status_code == 400 and page.status("acme") == "active"
    gone = page.post("/connections/acme/disconnect", token, confirm="yes")
    assert gone.status_code == 303 and page.status("acme") == "disconnected"
    assert page.post("/sign-out", token).status_code == 303
    assert 'action="/sign-in"' in page.client.get("/").text


def test_a_connection_token_sees_and_acts_on_its_own_row_only(page):
    with page.app.state.engine.begin() as conn:
        acme_token = tokens.issue(conn, "acme")
    assert page.sign_in(acme_token).status_code == 303
    table = page.client.get("/").text
    assert "Signed in as connection acme." in table
    assert 'id="connection-acme"' in table and "beta" not in table
    token = page.csrf()
    for answer in (
        page.post("/connections/beta/sync", token),
        page.client.get("/connections/beta/disconnect"),
        page.post("/connections/beta/disconnect", token, confirm="yes"),
        page.post("/connections/nope/sync", token),
    ):
        assert answer.status_code == 404, answer.text
        assert "no connection by that name that you may act on" in answer.text
    assert page.launches.calls == [] and page.status("beta") == "active"
    # Its own row works.
    assert page.post("/connections/acme/sync", token).status_code == 303
    assert page.launches.calls == [("acme", True)]


def test_a_running_sync_shows_and_the_page_refreshes_until_it_ends(page):
    assert page.sign_in().status_code == 303
    page.launches.running.add("run-1")
    assert page.post("/connections/acme/sync", page.csrf()).status_code == 303
    shown = page.client.get("/").text
    row = shown.split('id="connection-acme"')[1].split("</tr>")[0]
    assert "syncing…" in row and "Sync now" not in row
    assert '<meta http-equiv="refresh" content="2">' in shown
    assert "Syncing acme…" in shown
    # A second click while it runs starts nothing.
    assert page.post("/connections/acme/sync", page.csrf()).status_code == 303
    assert "already running" in page.client.get("/").text
    assert len(page.launches.calls) == 1
    page.launches.running.clear()
    calm = page.client.get("/").text
    assert "http-equiv" not in calm and "syncing…" not in calm


def test_the_flash_after_connecting_is_shown_once(page):
    assert page.sign_in().status_code == 303
    page.client.get("/test/flash")
    first = page.client.get("/").text
    assert "Connected acme as acme_owner." in first
    assert "wpc_once" in first and "shown once" in first
    # A reload would take the token away before it is copied.
    assert "http-equiv" not in first
    second = page.client.get("/").text
    assert "Connected acme" not in second and "wpc_once" not in second


def test_a_sync_left_running_by_a_dead_process_does_not_hide_sync_now(page):
    with page.app.state.engine.begin() as conn:
        sync_history.record_sync_start(
            conn, "acme", "run-of-a-dead-process", dt.datetime.now(dt.UTC)
        )
    assert page.sign_in().status_code == 303
    shown = page.client.get("/").text
    row = shown.split('id="connection-acme"')[1].split("</tr>")[0]
    assert "syncing…" not in row and "Sync now" in row and "http-equiv" not in shown


def churn_cell(page: Page, name: str) -> str:
    row = page.client.get("/").text.split(f'id="connection-{name}"')[1].split("</tr>")[0]
    return re.search(r'data-field="churn-model">([^<]*)<', row).group(1)


def test_the_churn_model_cell_says_what_scores_mean(page):
    assert page.sign_in().status_code == 303
    assert churn_cell(page, "acme") == "not trained yet"
    now = dt.datetime.now(dt.UTC)
    learned = {"roc_auc": 0.7841, "reason": None}
    for chosen, no_signal, metrics, shown in (
        ("rule", False, {"reason": "3 ended"}, "v1: rule (history too thin to learn)"),
        ("gradient_boosting", False, learned, "v2: gradient boosting, holdout AUC 0.78"),
        ("logistic", True, {"roc_auc": 0.503}, "v3: no signal, scores withheld"),
    ):
        with page.app.state.engine.begin() as conn:
            health_models.save(
                conn, "acme", "churn", {}, chosen=chosen, no_signal=no_signal,
                metrics=metrics, trained_at=now,
            )  # fmt: skip
        assert churn_cell(page, "acme") == shown
    assert churn_cell(page, "beta") == "not trained yet"  # acme's models are acme's

"""The GraphQL API at ``/graphql`` over HTTP, on two sandbox accounts: the whole checklist of a
connection (status, sync, the run's counts, disconnect) through GraphQL alone, each operation
refused for another connection's token with nothing read or changed, no operation without a valid
token, a failed run's error, a waiting sync holding up nothing else, and the Whop OAuth connect
followed by the same checklist."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.cli import main
from whop_pipeline.execution.health import run_health
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.orchestration.tags import CONNECTION_TAG
from whop_pipeline.sandbox.common import free_port
from whop_pipeline.sandbox.readings import live_records, write_requests
from whop_pipeline.sandbox.runner import Sandbox
from whop_pipeline.store import connections
from whop_pipeline.web import launcher as launcher_module
from whop_pipeline.web import views
from whop_pipeline_tests.connections_helpers import add_argv
from whop_pipeline_tests.pipeline import start_test_sandbox
from whop_pipeline_tests.web.helpers import (
    ADMIN_TOKEN,
    WebApp,
    graphql,
    graphql_data,
    graphql_error,
    serve_web_app,
    tokens_printed,
    web_env,
)
from whop_pipeline_tests.web.oauth_stack import save_waiting_connection, set_oauth_env

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster, pytest.mark.e2e]

NAMES = ("acme", "beta")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
RUN_FIELDS = "id connection status startedAt finishedAt counts productsSync usersSync "
RUN_FIELDS += "membershipsSync errors"

STATUS = f"""query Status($connection: String) {{
  whopConnectionStatus(connection: $connection) {{
    name isConnected lastSyncAt handle status lastError whopAuth
    lastRun {{ {RUN_FIELDS} }}
  }}
}}"""
CONNECTIONS = """{ whopConnections { name status isConnected handle lastSyncAt lastError } }"""
TRIGGER = """mutation Sync($connection: String, $full: Boolean, $wait: Boolean) {
  triggerWhopSync(connection: $connection, full: $full, wait: $wait) {
    success runId status productsSync usersSync membershipsSync errors
  }
}"""
RUN = f"""query Run($connection: String, $id: String!) {{
  whopSyncRun(connection: $connection, id: $id) {{ {RUN_FIELDS} }}
}}"""
HEALTH = """query Health($connection: String, $min: Int) {
  whopCustomerHealth(connection: $connection, minChurnRisk: $min) {
    churnModel { kind version chosen noSignal rocAuc reason }
    leadModel { version }
    peopleScored customersAtRiskCount
    customersAtRisk { personKey churnRisk reasons lifetimeValueUsd }
  }
}"""
DISCONNECT = """mutation Disconnect($connection: String) {
  disconnectWhopAccount(connection: $connection)
}"""


@dataclass
class Stack:
    web: WebApp
    sandbox: Sandbox
    instance: dg.DagsterInstance
    tokens: dict[str, str]

    def client(self, name: str | None = None, **options) -> httpx.Client:
        """A client with ``name``'s connection token, the admin token for None."""
        return self.web.client(self.tokens[name] if name else ADMIN_TOKEN, **options)

    def runs_of(self, name: str) -> list[str]:
        records = self.instance.get_run_records(filters=dg.RunsFilter(tags={CONNECTION_TAG: name}))
        return sorted(r.dagster_run.run_id for r in records)

    def row(self, name: str) -> connections.Connection:
        with self.web.engine.connect() as conn:
            return connections.require(conn, name)

    def dump(self, index: int) -> dict[str, list[dict]]:
        return self.sandbox.account(index).twenty.dump()

    def writes(self, index: int) -> int:
        return sum(write_requests(self.sandbox.account(index).twenty.stats.snapshot()).values())


def add_with_api_key(sandbox, name: str, index: int, monkeypatch, capsys) -> str:
    """``connections add`` with the account's API keys; the connection token it printed."""
    account = sandbox.account(index)
    monkeypatch.setenv(f"{name.upper()}_WHOP_KEY", account.whop_api_key)
    monkeypatch.setenv(f"{name.upper()}_TWENTY_KEY", account.twenty_api_key)
    capsys.readouterr()
    code = main(add_argv(sandbox, name, index))
    assert code == 0
    return tokens_printed(capsys.readouterr().out)[name]


@pytest.fixture
def stack(monkeypatch, capsys, sqlite_url, encryption_key, two_accounts) -> Iterator[Stack]:
    web_env(monkeypatch, sqlite_url)
    issued = {
        name: add_with_api_key(two_accounts, name, index, monkeypatch, capsys)
        for index, name in enumerate(NAMES, start=1)
    }
    with dg.instance_for_test() as instance, serve_web_app(sqlite_url, instance=instance) as web:
        yield Stack(web, two_accounts, instance, issued)


def landed(dump: dict[str, list[dict]], plural: str) -> int:
    return len(live_records(dump, plural))


def test_the_checklist_through_graphql_alone(stack):
    with stack.client("acme") as acme:
        # Added, never synced: connected, no run yet. The token's own connection by default.
        status = graphql_data(acme, STATUS)["whopConnectionStatus"]
        assert status == {
            "name": "acme",
            "isConnected": True,
            "lastSyncAt": None,
            "handle": None,
            "status": "active",
            "lastError": None,
            "whopAuth": "api_key",
            "lastRun": None,
        }
        assert stack.writes(1) == 0

        first = graphql_data(acme, TRIGGER, full=True, wait=True)["triggerWhopSync"]
        dump = stack.dump(1)
        people, opportunities = landed(dump, "people"), landed(dump, "opportunities")
        products = landed(dump, "whopProducts")
        assert people > 0 and opportunities > 0 and products > 0
        # Each count is what that workspace now holds: every record was written once.
        assert first == {
            "success": True,
            "runId": first["runId"],
            "status": "SUCCESS",
            "productsSync": products,
            "usersSync": people,
            "membershipsSync": opportunities,
            "errors": [],
        }
        assert stack.runs_of("acme") == [first["runId"]]
        assert stack.runs_of("beta") == [] and stack.writes(2) == 0

        run = graphql_data(acme, RUN, id=first["runId"])["whopSyncRun"]
        assert (run["id"], run["connection"], run["status"], run["errors"]) == (
            first["runId"],
            "acme",
            "SUCCESS",
            [],
        )
        assert (run["productsSync"], run["usersSync"], run["membershipsSync"]) == (
            products,
            people,
            opportunities,
        )
        assert run["counts"]["twenty_people"]["created"] == people
        assert run["startedAt"] and run["finishedAt"]
        assert dt.datetime.fromisoformat(run["startedAt"]) <= dt.datetime.fromisoformat(
            run["finishedAt"]
        )

        status = graphql_data(acme, STATUS)["whopConnectionStatus"]
        assert status["isConnected"] and status["status"] == "active"
        assert status["lastSyncAt"] and status["lastError"] is None
        assert status["lastRun"] == run

        # Again without waiting: the answer comes at once; counts appear once the run finished.
        second = graphql_data(acme, TRIGGER, full=True)["triggerWhopSync"]
        assert second["success"] and second["runId"] != first["runId"] and not second["errors"]
        if second["status"] not in FINISHED:
            assert (second["productsSync"], second["usersSync"], second["membershipsSync"]) == (
                None,
                None,
                None,
            )
        stack.web.launcher.wait(second["runId"])
        again = graphql_data(acme, RUN, id=second["runId"])["whopSyncRun"]
        # Nothing changed in Whop, so nothing is written.
        assert (again["status"], again["productsSync"], again["usersSync"]) == ("SUCCESS", 0, 0)
        assert again["membershipsSync"] == 0
        assert again["counts"]["twenty_people"]["unchanged"] == people

        assert graphql_data(acme, DISCONNECT) == {"disconnectWhopAccount": True}
        status = graphql_data(acme, STATUS)["whopConnectionStatus"]
        assert (status["status"], status["isConnected"]) == ("disconnected", False)
        assert status["lastRun"]["id"] == second["runId"]
        row = stack.row("acme")
        assert row.status == "disconnected" and not row.has_credentials
        # Twenty keeps every record.
        after = stack.dump(1)
        assert (landed(after, "people"), landed(after, "opportunities")) == (
            people,
            opportunities,
        )

        refused = graphql_data(acme, TRIGGER, full=True, wait=True)["triggerWhopSync"]
        assert refused["success"] is False and refused["runId"] is None
        assert len(refused["errors"]) == 1 and "disconnected" in refused["errors"][0]
        assert stack.runs_of("acme") == sorted([first["runId"], second["runId"]])
    # Beta was never touched.
    assert stack.row("beta").status == "active" and stack.writes(2) == 0


def test_a_connection_token_acts_on_its_connection_alone(stack):
    with stack.client() as admin:
        listed = graphql_data(admin, CONNECTIONS)["whopConnections"]
        assert [c["name"] for c in listed] == ["acme", "beta"]
        # The admin token names the connection; it has no own one.
        assert "connection is required" in graphql_error(admin, STATUS)
        beta_sync = graphql_data(admin, TRIGGER, connection="beta", full=True, wait=True)
    beta_run = beta_sync["triggerWhopSync"]["runId"]
    assert beta_sync["triggerWhopSync"]["success"]
    assert run_health("beta", instance=stack.instance, printer=lambda _l: None).success
    beta_row, beta_runs, beta_writes = stack.row("beta"), stack.runs_of("beta"), stack.writes(2)
    assert len(beta_runs) == 2 and beta_run in beta_runs  # the sync, then the health scores

    with stack.client("acme") as acme:
        assert [c["name"] for c in graphql_data(acme, CONNECTIONS)["whopConnections"]] == ["acme"]
        refusals = {
            "status": graphql_error(acme, STATUS, connection="beta"),
            "trigger": graphql_error(acme, TRIGGER, connection="beta", full=True, wait=True),
            "run": graphql_error(acme, RUN, connection="beta", id=beta_run),
            "disconnect": graphql_error(acme, DISCONNECT, connection="beta"),
            "health": graphql_error(acme, HEALTH, connection="beta"),
        }
        for operation, message in refusals.items():
            assert message == "not allowed to act on connection 'beta'", operation
        # Beta's run id under acme's own name is no run of acme's.
        assert graphql_error(acme, RUN, id=beta_run) == f"no run {beta_run!r} of connection 'acme'"
        # A connection that does not exist gets the same answer as another's.
        unknown = graphql_error(acme, STATUS, connection="nobody")
        assert unknown.replace("'nobody'", "'beta'") == refusals["status"]
        body = graphql(acme, DISCONNECT, {"connection": "beta"})
        assert body["data"] is None and body["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    # Nothing of beta was read into an answer, changed, or run.
    assert stack.row("beta") == beta_row
    assert stack.runs_of("beta") == beta_runs and stack.writes(2) == beta_writes
    assert stack.runs_of("acme") == []

    with stack.client("beta") as beta:
        assert [c["name"] for c in graphql_data(beta, CONNECTIONS)["whopConnections"]] == ["beta"]
        run = graphql_data(beta, RUN, id=beta_run)["whopSyncRun"]
        assert run["status"] == "SUCCESS" and run["usersSync"] == landed(stack.dump(2), "people")
        health = graphql_data(beta, HEALTH, min=0)["whopCustomerHealth"]
    # Every person with a risk in beta's workspace is listed, riskiest first.
    risky = [p for p in live_records(stack.dump(2), "people") if p.get("whopChurnRisk") is not None]
    assert health["churnModel"]["version"] == 1 and health["leadModel"]["version"] == 1
    assert health["customersAtRiskCount"] == len(risky) > 0
    risks = [c["churnRisk"] for c in health["customersAtRisk"]]
    assert risks == sorted((p["whopChurnRisk"] for p in risky), reverse=True)[:20]


def test_a_failed_run_answers_success_false_with_its_error(stack):
    """Acme's Whop key was revoked after it was added: the run fails on its check, and the
    answer, the run and the status all carry Whop's refusal."""
    with stack.web.engine.begin() as conn:
        conn.execute(
            sa.update(connections.connections)
            .where(connections.connections.c.name == "acme")
            .values(whop_credential_encrypted=SecretBox.from_env().encrypt("revoked-key"))
        )
    with stack.client("acme") as acme:
        failed = graphql_data(acme, TRIGGER, full=True, wait=True)["triggerWhopSync"]
        assert (failed["success"], failed["status"]) == (False, "FAILURE")
        assert (failed["productsSync"], failed["usersSync"], failed["membershipsSync"]) == (
            None,
            None,
            None,
        )
        [error] = failed["errors"]
        assert "Whop refused the key" in error and "HTTP 401" in error
        run = graphql_data(acme, RUN, id=failed["runId"])["whopSyncRun"]
        assert (run["status"], run["errors"], run["usersSync"]) == ("FAILURE", [error], None)
        status = graphql_data(acme, STATUS)["whopConnectionStatus"]
        assert (status["status"], status["isConnected"]) == ("needs_reauth", False)
        assert "refused the key" in status["lastError"]
    assert stack.writes(1) == 0 and stack.writes(2) == 0


def test_a_waiting_sync_holds_up_nothing_else(stack, monkeypatch):
    """``wait: true`` waits in a worker thread: while the run is held, the same app answers the
    health check and other queries, and the waiting mutation answers once the run is let go."""
    gate = threading.Event()
    real_run_sync = launcher_module.run_sync

    def held_run_sync(*args, **kwargs):
        assert gate.wait(timeout=120), "the test never let the run go"
        return real_run_sync(*args, **kwargs)

    monkeypatch.setattr(launcher_module, "run_sync", held_run_sync)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    acme, other = stack.client("acme"), stack.client()
    try:
        waiting = pool.submit(graphql_data, acme, TRIGGER, full=True, wait=True)
        deadline = time.monotonic() + 60
        while not stack.web.launcher.launched("acme"):
            assert time.monotonic() < deadline and not waiting.done(), "no run was launched"
            time.sleep(0.01)
        [run_id] = stack.web.launcher.launched("acme")
        assert other.get("/healthz").json() == {"status": "ok"}
        status = graphql_data(other, STATUS, connection="acme")["whopConnectionStatus"]
        assert status["lastRun"] is None
        held = graphql_data(other, RUN, connection="acme", id=run_id)["whopSyncRun"]
        assert held["status"] == "STARTING" and held["usersSync"] is None
        assert not waiting.done()  # still waiting for the held run
        gate.set()
        result = waiting.result(timeout=120)["triggerWhopSync"]
    finally:
        gate.set()  # a failed assertion must not leave the run held
        pool.shutdown(wait=True)
        acme.close()
        other.close()
    assert result["runId"] == run_id and result["success"] and result["status"] == "SUCCESS"
    assert result["usersSync"] == landed(stack.dump(1), "people")


def test_an_unexpected_failure_answers_without_its_details(stack, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("could not connect to server at db.internal:5432")

    monkeypatch.setattr(views, "connection_view", broken)
    with stack.client("acme") as acme:
        assert graphql_error(acme, STATUS) == "Unexpected error."
        # Answers meant for the caller still say what is wrong.
        refused = graphql_error(acme, RUN, connection="beta", id="any")
        assert refused == "not allowed to act on connection 'beta'"
    assert "db.internal:5432" in caplog.text  # the operator's log keeps it


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wpc_not-a-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}-but-longer"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ],
    ids=["none", "unknown-token", "wrong-admin-token", "not-bearer"],
)
def test_without_a_valid_token_nothing_runs(stack, headers):
    with stack.web.client(headers=headers) as anonymous:
        for query, variables in (
            (STATUS, {"connection": "acme"}),
            (CONNECTIONS, {}),
            (TRIGGER, {"connection": "acme", "full": True, "wait": True}),
            (DISCONNECT, {"connection": "acme"}),
            ("{ __schema { queryType { name } } }", {}),
        ):
            body = graphql(anonymous, query, variables, status=401)
            assert body["data"] is None
            [error] = body["errors"]
            assert error["message"].startswith("unauthorized")
            assert error["extensions"] == {"code": "UNAUTHENTICATED"}
        # The IDE still loads in a browser: it sends the token with each query.
        ide = anonymous.get("/graphql", headers={"Accept": "text/html"})
        assert ide.status_code == 200 and "graphiql" in ide.text.lower()
    assert stack.runs_of("acme") == [] and stack.row("acme").status == "active"
    assert stack.writes(1) == 0


# --- OAuth connect, then the checklist --------------------------------------------------------

CLIENT_ID = "app_graphql_tests"
CLIENT_SECRET = "graphql-tests-oauth-secret"


def connect_in_browser(client: httpx.Client, name: str, callback: str) -> httpx.Response:
    """The browser's round trip: the app's ``/auth/whop`` → Whop's authorize endpoint (consent
    preset to approve) → the app's callback; the callback's answer (cookies kept throughout)."""
    answer = client.get("/auth/whop", params={"connection": name})
    hops = 0
    while answer.is_redirect and not str(answer.url).startswith(callback):
        answer = client.get(urljoin(str(answer.url), answer.headers["location"]))
        hops += 1
    assert hops == 2, answer.text  # to Whop, back to the callback
    return answer


def test_connect_with_oauth_then_the_checklist(monkeypatch, sqlite_url, encryption_key):
    web_env(monkeypatch, sqlite_url)
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    callback = f"{app_url}/auth/whop/callback"
    sandbox = start_test_sandbox(
        oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET, oauth_redirect_uri=callback
    )
    try:
        root = sandbox.whop_server.url
        set_oauth_env(
            monkeypatch,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            app_url=app_url,
            whop_root=root,
        )
        consent = httpx.post(f"{root}/_sandbox/oauth/consent", json={"decision": "approve"})
        assert consent.status_code == 200, consent.text
        with (
            dg.instance_for_test() as instance,
            serve_web_app(sqlite_url, instance=instance, port=port) as web,
        ):
            save_waiting_connection(web.engine, sandbox)
            with web.client(ADMIN_TOKEN) as admin:
                before = graphql_data(admin, STATUS, connection="acme")["whopConnectionStatus"]
                assert (before["status"], before["isConnected"], before["handle"]) == (
                    "needs_reauth",
                    False,
                    None,
                )
                waiting = graphql_data(admin, TRIGGER, connection="acme")["triggerWhopSync"]
                assert waiting["success"] is False and waiting["runId"] is None
                assert "needs_reauth" in waiting["errors"][0]

                answer = connect_in_browser(admin, "acme", callback)
                assert (answer.status_code, answer.headers["location"]) == (303, "/")
                # The callback started the first full sync.
                [first] = web.launcher.launched("acme")
                web.launcher.wait(first)

                status = graphql_data(admin, STATUS, connection="acme")["whopConnectionStatus"]
                assert (status["status"], status["isConnected"], status["whopAuth"]) == (
                    "active",
                    True,
                    "oauth",
                )
                # The handle of the Whop user who consented, from Whop's userinfo.
                assert status["handle"] == sandbox.oauth.user.username
                assert status["lastRun"]["id"] == first
                assert status["lastRun"]["status"] == "SUCCESS"
                dump = sandbox.twenty.dump()
                people, opportunities = landed(dump, "people"), landed(dump, "opportunities")
                assert people > 0 and opportunities > 0
                assert (status["lastRun"]["usersSync"], status["lastRun"]["membershipsSync"]) == (
                    people,
                    opportunities,
                )

                again = graphql_data(admin, TRIGGER, connection="acme", full=True, wait=True)
                assert again["triggerWhopSync"]["success"]
                assert again["triggerWhopSync"]["usersSync"] == 0
                assert again["triggerWhopSync"]["membershipsSync"] == 0

                assert graphql_data(admin, DISCONNECT, connection="acme") == {
                    "disconnectWhopAccount": True
                }
                after = graphql_data(admin, STATUS, connection="acme")["whopConnectionStatus"]
                assert (after["status"], after["isConnected"]) == ("disconnected", False)
                assert landed(sandbox.twenty.dump(), "people") == people
                refused = graphql_data(admin, TRIGGER, connection="acme")["triggerWhopSync"]
                assert refused["success"] is False and "disconnected" in refused["errors"][0]
    finally:
        sandbox.stop()

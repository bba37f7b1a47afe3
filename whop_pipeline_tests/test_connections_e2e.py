"""End to end, two connections: two Whop accounts into two Twenty workspaces through the command
line, each workspace holding exactly its own account's records; a refused key fails only its own
connection; disconnect, purge and reconnect."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from whop_pipeline.cli import main
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.sandbox.readings import write_requests
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import RAW_TABLES, crm_records, sync_state
from whop_pipeline_tests.connections_helpers import add_argv
from whop_pipeline_tests.expected_crm import assert_workspace_holds_exactly
from whop_pipeline_tests.pipeline import FAST

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster, pytest.mark.e2e]

NAMES = ("acme", "beta")


@pytest.fixture
def cli_env(monkeypatch, db_url, encryption_key, two_accounts):
    """No environment connection: both connections come from the table."""
    for name in (
        "WHOP_API_KEY",
        "TWENTY_API_KEY",
        "WHOP_ACCOUNT_ID",
        "TWENTY_API_URL",
        "WHOP_WEBHOOK_SECRET",
        "WHOP_PIPELINE_CONNECTION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", db_url)
    monkeypatch.setenv("TWENTY_MAX_CALLS_PER_MINUTE", str(FAST))
    monkeypatch.setenv("WHOP_MAX_REQUESTS_PER_SECOND", str(FAST))
    for name, account in zip(NAMES, two_accounts.accounts, strict=True):
        monkeypatch.setenv(f"{name.upper()}_WHOP_KEY", account.whop_api_key)
        monkeypatch.setenv(f"{name.upper()}_TWENTY_KEY", account.twenty_api_key)
    return db_url


def add(sandbox, name: str, index: int, *extra: str) -> int:
    return main(add_argv(sandbox, name, index, *extra))


def writes(sandbox, index: int) -> int:
    return sum(write_requests(sandbox.account(index).twenty.stats.snapshot()).values())


def test_two_connections_each_land_exactly_their_own_account(two_accounts, cli_env, capsys):
    assert add(two_accounts, "acme", 1) == 0
    assert add(two_accounts, "beta", 2) == 0
    assert main(["sync", "--all", "--full"]) == 0
    for index in (1, 2):
        account = two_accounts.account(index)
        assert_workspace_holds_exactly(account.twenty.dump(), account.whop.dataset)
    # The datasets differ (seed + 1), so exact equality means nothing of the other landed.
    members = [
        {m["id"] for m in two_accounts.account(i).whop.dataset.rendered("members")} for i in (1, 2)
    ]
    assert members[0].isdisjoint(members[1])
    out = capsys.readouterr().out
    assert "2 of 2 connections synced" in out
    # Again: nothing changed in Whop, so nothing is written to either workspace.
    before = [writes(two_accounts, 1), writes(two_accounts, 2)]
    assert main(["sync", "--all", "--full"]) == 0
    assert [writes(two_accounts, 1), writes(two_accounts, 2)] == before
    assert main(["connections", "list"]) == 0
    listing = capsys.readouterr().out
    for name in NAMES:
        line = next(line for line in listing.splitlines() if line.startswith(name))
        assert "active" in line and "success" in line


def test_a_refused_key_fails_only_its_connection_in_one_line(two_accounts, cli_env, capsys):
    assert add(two_accounts, "beta", 2) == 0
    with get_engine(cli_env).begin() as conn:  # acme's key was revoked after it was added
        connections.save(
            conn,
            SecretBox.from_env(),
            name="acme",
            whop_account_id=two_accounts.account(1).account_id,
            twenty_api_url=two_accounts.twenty_url,
            whop_api_key="revoked-key",
            twenty_api_key=two_accounts.account(1).twenty_api_key,
            whop_api_base_url=two_accounts.whop_base_url,
            now=dt.datetime.now(dt.UTC),
        )
    capsys.readouterr()
    assert main(["sync", "--all", "--full"]) == 1
    out = capsys.readouterr().out
    failure = [line for line in out.splitlines() if line.startswith("sync of acme failed")]
    assert len(failure) == 1
    assert "Whop refused the key" in failure[0] and "HTTP 401" in failure[0]
    assert "Traceback" not in out and "1 of 2 connections synced; failed: acme" in out
    assert_workspace_holds_exactly(
        two_accounts.account(2).twenty.dump(), two_accounts.account(2).whop.dataset
    )
    assert writes(two_accounts, 1) == 0
    with get_engine(cli_env).connect() as conn:
        acme, beta = connections.require(conn, "acme"), connections.require(conn, "beta")
    assert acme.status == "needs_reauth" and "refused the key" in acme.last_error
    assert beta.status == "active" and beta.last_sync_outcome == "success"


def _count(conn, table, name) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(table).where(table.c.connection == name)
    ).scalar_one()


def test_disconnect_purge_and_reconnect(two_accounts, cli_env, capsys):
    assert add(two_accounts, "acme", 1) == 0
    assert add(two_accounts, "beta", 2) == 0
    assert main(["sync", "--all", "--full"]) == 0
    engine = get_engine(cli_env)
    assert main(["connections", "disconnect", "acme"]) == 0
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(connections.connections).where(connections.connections.c.name == "acme")
        ).one()
        assert row.status == "disconnected"
        assert all(getattr(row, column) is None for column in connections.SECRET_COLUMNS)
        assert connections.schedulable(conn) == ["beta"]
        kept = _count(conn, sync_state, "acme")
    assert kept > 0  # the records stay
    assert main(["sync", "--connection", "acme"]) == 2
    assert "disconnected" in capsys.readouterr().err
    # Reconnecting with the same name resumes: nothing changed in Whop, nothing is written.
    before = writes(two_accounts, 1)
    assert add(two_accounts, "acme", 1) == 0
    assert "reconnected connection 'acme'" in capsys.readouterr().out
    assert main(["sync", "--connection", "acme", "--full"]) == 0
    assert writes(two_accounts, 1) == before
    # --purge deletes acme's pipeline data in one transaction and leaves beta's alone.
    with engine.connect() as conn:
        beta_before = {t.name: _count(conn, t, "beta") for t in (*RAW_TABLES.values(), crm_records)}
    assert main(["connections", "disconnect", "acme", "--purge", "--yes"]) == 0
    with engine.connect() as conn:
        assert all(_count(conn, t, "acme") == 0 for t in connections.DATA_TABLES)
        assert {
            t.name: _count(conn, t, "beta") for t in (*RAW_TABLES.values(), crm_records)
        } == beta_before
    assert main(["connections", "remove", "acme", "--yes"]) == 0
    with engine.connect() as conn:
        assert connections.get(conn, "acme") is None
    assert_workspace_holds_exactly(
        two_accounts.account(1).twenty.dump(), two_accounts.account(1).whop.dataset
    )

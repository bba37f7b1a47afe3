"""Cross-tenant isolation: one connection's runs never read or change another's rows, a refused key
fails only its own connection's run, and no secret is stored or shown in plain text."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from whop_pipeline.cli import main
from whop_pipeline.cli.sync import run_sync
from whop_pipeline.definitions import build_defs
from whop_pipeline.inbox import store as inbox_store
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.orchestration import outcomes
from whop_pipeline.orchestration.tags import CONNECTION_TAG, SYNC_MODE_TAG, range_tags
from whop_pipeline.store import connections, health_models
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline_tests.inbox.webhook_helpers import envelope, put
from whop_pipeline_tests.pipeline import FAST, all_partitions

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster, pytest.mark.e2e]

DATA_TABLES = tuple(t.name for t in connections.DATA_TABLES)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture
def tenants(monkeypatch, sqlite_url, encryption_key, two_accounts):
    """``acme`` (account 1) and ``beta`` (account 2), both stored in the table, both synced."""
    for name in ("WHOP_API_KEY", "TWENTY_API_KEY", "WHOP_PIPELINE_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", sqlite_url)
    monkeypatch.setenv("TWENTY_MAX_CALLS_PER_MINUTE", str(FAST))
    monkeypatch.setenv("WHOP_MAX_REQUESTS_PER_SECOND", str(FAST))
    with get_engine(sqlite_url).begin() as conn:
        for name, index in (("acme", 1), ("beta", 2)):
            account = two_accounts.account(index)
            connections.save(
                conn,
                SecretBox.from_env(),
                name=name,
                whop_account_id=account.account_id,
                whop_api_base_url=two_accounts.whop_base_url,
                twenty_api_url=two_accounts.twenty_url,
                whop_api_key=account.whop_api_key,
                twenty_api_key=account.twenty_api_key,
                webhook_secret=f"ws_secret_of_{name}_83a1",
                now=dt.datetime.now(dt.UTC),
            )
    for name in ("acme", "beta"):
        assert run_sync("full", connection=name, printer=lambda _line: None).success
    return sqlite_url


@contextmanager
def statements(url: str):
    """Every SQL statement (and its parameters) the pipeline database executes meanwhile."""
    seen: list[tuple[str, str]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        seen.append((statement, repr(parameters)))

    engine = get_engine(url)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_beta_runs_never_touch_acme_rows(tenants, two_accounts):
    """Every statement of beta's runs (sync, health models and scores, webhook batch) that touches
    a connection's data names a connection, and none carries acme's name: a query that lost its
    connection filter fails this test."""
    engine = get_engine(tenants)
    acme_row = put(engine, envelope("membership.updated", {"id": "mem_acme"}), "acme")
    beta_row = put(engine, envelope("membership.updated", {"id": "mem_beta"}), "beta")
    defs = build_defs()
    first, last = all_partitions()
    with dg.instance_for_test() as instance, statements(tenants) as seen:
        for mode in ("incremental", "full"):
            result = defs.resolve_job_def("whop_sync_job").execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={**range_tags(first, last), SYNC_MODE_TAG: mode, CONNECTION_TAG: "beta"},
            )
            assert result.success
        # Customer health: both models trained and stored, every customer scored and loaded.
        for job in ("health_models_job", "health_scores_job"):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config=QUIET, tags={CONNECTION_TAG: "beta"}
            )
            assert result.success
        # acme's id is in beta's batch by mistake: it must be neither claimed nor read.
        inbox = defs.resolve_job_def("whop_inbox_job").execute_in_process(
            instance=instance,
            run_config={
                **QUIET,
                "ops": {"whop_webhook_inbox": {"config": {"inbox_ids": [acme_row, beta_row]}}},
            },
            tags={CONNECTION_TAG: "beta"},
        )
        assert inbox.success
    touching = [
        (statement, params)
        for statement, params in seen
        if re.search(r"\b(" + "|".join(DATA_TABLES) + r")\b", statement)
        and not statement.lstrip().upper().startswith("ANALYZE")
    ]
    assert len(touching) > 50  # the runs did real work
    for statement, params in touching:
        assert "connection" in statement, statement
        assert "acme" not in params, (statement, params)
    with engine.connect() as conn:
        assert health_models.versions(conn, "acme", "churn") == []
        assert health_models.versions(conn, "beta", "churn") == [1]
        assert inbox_store.status_counts(conn, "acme")["pending"] == 1
        beta = inbox_store.status_counts(conn, "beta")
        assert beta["pending"] == 0 and beta["done"] + beta["failed"] == 1, beta


def test_a_revoked_key_fails_its_own_run_and_marks_it_while_the_other_succeeds(
    tenants, two_accounts
):
    with get_engine(tenants).begin() as conn:
        # acme's Whop key is revoked: the emulator no longer knows it.
        conn.execute(
            sa.update(connections.connections)
            .where(connections.connections.c.name == "acme")
            .values(whop_credential_encrypted=SecretBox.from_env().encrypt("revoked-key"))
        )
    defs = build_defs()
    first, last = all_partitions()
    with dg.instance_for_test() as instance:
        results = {
            name: defs.resolve_job_def("whop_sync_job").execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={**range_tags(first, last), SYNC_MODE_TAG: "full", CONNECTION_TAG: name},
                raise_on_error=False,
            )
            for name in ("acme", "beta")
        }
        assert not results["acme"].success and results["beta"].success
        message, auth = outcomes.first_error(instance, results["acme"].run_id)
        assert auth and "connection 'acme': Whop refused the key: HTTP 401" in message
        assert "whop_api_key of connection 'acme'" in message
        # What the daemon's failure sensor does with it:
        run = instance.get_run_by_id(results["acme"].run_id)
        failure = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records[0]
        with dg.build_run_status_sensor_context(
            sensor_name="connection_run_failed",
            dagster_event=failure.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
            resources={"pipeline_db": PipelineDatabase(url=tenants)},
        ) as context:
            outcomes.connection_run_failed(context.for_run_failure())
    with get_engine(tenants).connect() as conn:
        acme, beta = connections.require(conn, "acme"), connections.require(conn, "beta")
        assert connections.schedulable(conn) == ["beta"]
    assert acme.status == "needs_reauth" and "refused the key" in acme.last_error
    assert beta.status == "active" and beta.last_error is None


SECRETS = ("ws_secret_of_acme_83a1", "ws_secret_of_beta_83a1")


def test_no_secret_is_stored_or_shown_in_plain_text(tenants, two_accounts, capsys):
    secrets = [
        *SECRETS,
        two_accounts.account(1).whop_api_key,
        two_accounts.account(2).whop_api_key,
        two_accounts.account(1).twenty_api_key,
        two_accounts.account(2).twenty_api_key,
    ]
    path = sa.make_url(tenants).database
    get_engine(tenants).dispose()
    database = Path(path).read_bytes()
    for secret in secrets:
        assert secret.encode() not in database, secret
    assert main(["connections", "list"]) == 0
    assert main(["connections", "show", "acme"]) == 0
    with dg.instance_for_test() as instance:
        result = (
            build_defs()
            .resolve_job_def("whop_sync_job")
            .execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={
                    **range_tags(*all_partitions()),
                    CONNECTION_TAG: "acme",
                    SYNC_MODE_TAG: "incremental",
                },
            )
        )
        logged = " ".join(
            str(record.event_log_entry)
            for record in instance.get_records_for_run(result.run_id, limit=10_000).records
        )
        tags = str(instance.get_run_by_id(result.run_id).tags)
    shown = capsys.readouterr()
    for secret in secrets:
        assert secret not in shown.out + shown.err, secret
        assert secret not in logged and secret not in tags, secret


@pytest.mark.postgres
def test_a_postgres_dump_holds_no_plaintext_secret(pg_url, encryption_key):
    with get_engine(pg_url).begin() as conn:
        connections.save(
            conn,
            SecretBox.from_env(),
            name="acme",
            whop_account_id="biz_acme",
            twenty_api_url="http://twenty.example",
            whop_api_key="whop-key-plain-9b1c",
            twenty_api_key="twenty-key-plain-9b1c",
            webhook_secret="ws_plain_9b1c",
            now=dt.datetime.now(dt.UTC),
        )
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed")
    url = sa.make_url(pg_url)
    schema = url.query.get("options", "").split("search_path=")[-1] or "public"
    dump = subprocess.run(
        [
            pg_dump,
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "-n",
            schema,
            url.database or "test",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "COPY" in dump and "connections" in dump
    for secret in ("whop-key-plain-9b1c", "twenty-key-plain-9b1c", "ws_plain_9b1c"):
        assert secret not in dump

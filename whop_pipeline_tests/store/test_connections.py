"""The connections table: secrets only encrypted, keys rotated, reconnects, purges that stay inside
their connection, and which connections the schedules see."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from whop_pipeline.lib.secrets import KEYS_VAR, SecretBox, SecretsError
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import upsert_raw
from whop_pipeline.store.tables import RAW_TABLES
from whop_pipeline.twenty.freshness import MAX_AGE, freshness_of
from whop_pipeline.whop.mirror import to_raw_record
from whop_pipeline.whop.models import Member
from whop_pipeline_tests.connections_helpers import NOW, add_connection

SECRET = "whop-secret-value-5f1e"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", f"{KEYS_VAR} is not set"),
        ("not-a-key", f"{KEYS_VAR} is invalid: key 1 of 1 is not a Fernet key"),
        (f"{Fernet.generate_key().decode()},short", "key 2 of 2 is not a Fernet key"),
    ],
)
def test_a_missing_or_bad_key_names_the_variable_and_never_the_key(raw, message):
    with pytest.raises(SecretsError, match=message) as caught:
        SecretBox.from_env({KEYS_VAR: raw})
    assert "short" not in str(caught.value) or raw == ""


@pytest.mark.unit
def test_the_first_key_encrypts_every_key_decrypts_and_rotation_moves_to_the_first():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt(SECRET)
    assert SECRET not in token
    both = SecretBox([new, old])
    assert both.decrypt(token) == SECRET
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == SECRET
    with pytest.raises(SecretsError, match="cannot be decrypted with any key"):
        SecretBox([new]).decrypt(token, what="acme's key")


def test_secrets_are_stored_only_encrypted(sqlite_url, encryption_key):
    add_connection(sqlite_url, "acme", whop_key=SECRET, webhook_secret="ws_hook_9c2d")
    with get_engine(sqlite_url).connect() as conn:
        row = conn.execute(sa.select(connections.connections)).one()
        stored = " ".join(str(v) for v in row)
        assert SECRET not in stored and "ws_hook_9c2d" not in stored
        secrets = connections.secrets(conn, SecretBox.from_env(), "acme")
        model = connections.require(conn, "acme")
    assert secrets.whop_credential == SECRET and secrets.webhook_secret == "ws_hook_9c2d"
    assert SECRET not in repr(secrets) and SECRET not in repr(model)


def test_rotate_keys_re_encrypts_every_secret(sqlite_url, monkeypatch, encryption_key):
    add_connection(sqlite_url, "acme", whop_key=SECRET, webhook_secret="ws_1")
    add_connection(sqlite_url, "beta")
    new = Fernet.generate_key().decode()
    monkeypatch.setenv(KEYS_VAR, f"{new},{encryption_key}")
    with get_engine(sqlite_url).begin() as conn:
        assert connections.rotate_keys(conn, SecretBox.from_env()) == 5
    monkeypatch.setenv(KEYS_VAR, new)  # the old key is gone
    with get_engine(sqlite_url).connect() as conn:
        assert connections.resolve(conn, "acme").whop_api_key == SECRET
        assert connections.resolve(conn, "beta").twenty_api_key == "twenty-key-of-beta"


def test_reconnect_keeps_history_and_refuses_another_account(sqlite_url, encryption_key):
    add_connection(sqlite_url, "acme", account="biz_one")
    with get_engine(sqlite_url).begin() as conn:
        with pytest.raises(connections.ConnectionProblem, match="already exists"):
            connections.save(
                conn,
                SecretBox.from_env(),
                name="acme",
                whop_account_id="biz_one",
                twenty_api_url="http://x",
                whop_api_key="k",
                twenty_api_key="t",
                now=NOW,
            )
        connections.disconnect(conn, "acme", now=NOW)
        with pytest.raises(connections.ConnectionProblem, match="would mix two accounts"):
            connections.save(
                conn,
                SecretBox.from_env(),
                name="acme",
                whop_account_id="biz_two",
                twenty_api_url="http://x",
                whop_api_key="k",
                twenty_api_key="t",
                now=NOW,
            )
        later = NOW + dt.timedelta(hours=1)
        again = connections.save(
            conn,
            SecretBox.from_env(),
            name="acme",
            whop_account_id="biz_one",
            twenty_api_url="http://x",
            whop_api_key="k2",
            twenty_api_key="t2",
            now=later,
        )
    assert again.status == "active" and again.created_at == NOW and again.connected_at == later


@pytest.mark.unit
@pytest.mark.parametrize("name", ["", "Acme", "-acme", "acme_1", "a" * 64, "acme corp"])
def test_names_are_slugs(name):
    with pytest.raises(connections.ConnectionProblem, match="is invalid"):
        connections.check_name(name)


def test_purge_deletes_only_its_own_connections_rows(db_url, encryption_key):
    engine = get_engine(db_url)
    row = {
        "id": "mem_1",
        "user": {"id": "user_1"},
        "email": "a@example.com",
        "access_level": "customer",
        "status": "joined",
    }
    with engine.begin() as conn:
        for name in ("acme", "beta"):
            upsert_raw(conn, "members", name, [_raw(row)], extracted_at=NOW)
    with engine.begin() as conn:
        deleted = connections.purge(conn, "acme")
    assert deleted["raw_members"] == 1 and deleted["mirror_changes"] == 1
    table = RAW_TABLES["members"]
    with engine.connect() as conn:
        left = conn.execute(sa.select(table.c.connection)).scalars().all()
    assert left == ["beta"]


def _raw(payload: dict):
    return to_raw_record(Member.model_validate({**payload, "created_at": NOW.isoformat()}), NOW)


def test_schedulable_is_active_with_credentials_plus_the_environment(sqlite_url, encryption_key):
    add_connection(sqlite_url, "acme")
    add_connection(sqlite_url, "held", status="paused")
    add_connection(sqlite_url, "gone", status="disconnected")
    add_connection(sqlite_url, "reauth", status="needs_reauth")
    with get_engine(sqlite_url).connect() as conn:
        assert connections.schedulable(conn, {}) == ["acme"]
        env = {"WHOP_API_KEY": "k", "TWENTY_API_KEY": "t", "WHOP_PIPELINE_CONNECTION": "main"}
        assert connections.schedulable(conn, env) == ["acme", "main"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("last_success", "fresh"),
    [(None, False), (NOW - MAX_AGE, True), (NOW - MAX_AGE - dt.timedelta(seconds=1), False)],
)
def test_freshness_allows_twice_the_incremental_interval(last_success, fresh):
    row = connections.Connection(
        name="acme",
        whop_account_id="biz_1",
        whop_auth="api_key",
        whop_api_base_url="u",
        twenty_api_url="u",
        status="active",
        has_credentials=True,
        has_webhook_secret=False,
        created_at=NOW - dt.timedelta(days=1),
        connected_at=NOW - dt.timedelta(days=1),
        last_success_at=last_success,
        last_error="Twenty at http://x is unreachable",
    )
    result = freshness_of(row, NOW)
    assert result.fresh is fresh
    if not fresh:
        assert "acme" in result.describe() and "unreachable" in result.describe()


def test_a_connection_whose_key_was_refused_takes_a_new_key(sqlite_url, encryption_key):
    add_connection(sqlite_url, "acme", status="needs_reauth")
    with get_engine(sqlite_url).begin() as conn:
        connections.set_status(conn, "acme", "needs_reauth", error="Whop refused the key")
        assert "connections add acme" in connections.require(conn, "acme").last_error
        again = connections.save(
            conn,
            SecretBox.from_env(),
            name="acme",
            whop_account_id="biz_test",
            twenty_api_url="http://x",
            whop_api_key="new-key",
            twenty_api_key="t",
            now=NOW,
        )
        assert again.status == "active" and again.last_error is None
        assert connections.resolve(conn, "acme").whop_api_key == "new-key"

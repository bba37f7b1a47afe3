"""``whop-pipeline webhooks serve``: static secrets from the environment (one) or the deprecated file
(several), starting with no connection at all (the table is read per delivery), errors that name the
variable, and the command itself serving until Ctrl-C."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.fernet import Fernet

from whop_pipeline import cli
from whop_pipeline.inbox.receiver import connection_secrets_from_env
from whop_pipeline.lib.secrets import KEYS_VAR, SecretBox
from whop_pipeline.sandbox.common import free_port
from whop_pipeline.sandbox.whop.webhooks import sign
from whop_pipeline.settings import SettingsError
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import webhook_inbox

SECRET = "ws_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"


@pytest.mark.unit
def test_one_connection_from_plain_variables():
    assert connection_secrets_from_env({"WHOP_WEBHOOK_SECRET": SECRET}) == {"default": SECRET}
    env = {"WHOP_WEBHOOK_SECRET": SECRET, "WHOP_PIPELINE_CONNECTION": "acme"}
    assert connection_secrets_from_env(env) == {"acme": SECRET}


@pytest.mark.unit
def test_missing_or_bad_variables_are_named():
    with pytest.raises(SettingsError, match="WHOP_WEBHOOK_SECRET is not set"):
        connection_secrets_from_env({})
    with pytest.raises(SettingsError, match="WHOP_PIPELINE_CONNECTION is invalid"):
        connection_secrets_from_env(
            {"WHOP_WEBHOOK_SECRET": SECRET, "WHOP_PIPELINE_CONNECTION": "A B"}
        )


@pytest.mark.unit
def test_several_connections_from_a_file_that_holds_no_secret(tmp_path):
    path = tmp_path / "connections.json"
    path.write_text(
        json.dumps(
            {
                "acme": {"webhook_secret_env": "ACME_SECRET", "whop_account_id": "biz_1"},
                "globex": {"webhook_secret_env": "GLOBEX_SECRET"},
            }
        )
    )
    env = {
        "WHOP_PIPELINE_CONNECTIONS_FILE": str(path),
        "ACME_SECRET": SECRET,
        "GLOBEX_SECRET": "ws_globex",
        "WHOP_WEBHOOK_SECRET": "ws_ignored_when_a_file_is_set",
    }
    assert connection_secrets_from_env(env) == {"acme": SECRET, "globex": "ws_globex"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        (None, {}, "cannot be read"),
        ("{", {}, "is not valid JSON"),
        ("[]", {}, "must be a non-empty JSON object"),
        ("{}", {}, "must be a non-empty JSON object"),
        ('{"acme": {}}', {}, "connection 'acme': webhook_secret_env is missing"),
        ('{"acme": {"webhook_secret_env": "ACME_SECRET"}}', {}, "ACME_SECRET is not set"),
        ('{"Acme!": {"webhook_secret_env": "X"}}', {"X": SECRET}, "the name must match"),
    ],
)
def test_connections_file_problems_are_named(tmp_path, content, env, message):
    path = tmp_path / "connections.json"
    if content is not None:
        path.write_text(content)
    full_env = {"WHOP_PIPELINE_CONNECTIONS_FILE": str(path), **env}
    with pytest.raises(SettingsError, match="WHOP_PIPELINE_CONNECTIONS_FILE") as excinfo:
        connection_secrets_from_env(full_env)
    assert message in str(excinfo.value)
    assert SECRET not in str(excinfo.value)


@pytest.mark.unit
def test_static_secrets_are_optional_for_serve():
    assert connection_secrets_from_env({}, required=False) == {}
    env = {"WHOP_PIPELINE_CONNECTION": "acme"}
    assert connection_secrets_from_env(env, required=False) == {}


@pytest.fixture
def no_server(monkeypatch, tmp_path) -> list[object]:
    """``webhooks serve`` up to the point where it would serve (uvicorn's loop is not run)."""
    started: list[object] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: started.append(server))
    for name in (
        "WHOP_WEBHOOK_SECRET",
        "WHOP_PIPELINE_CONNECTIONS_FILE",
        "WHOP_PIPELINE_CONNECTION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHOP_PIPELINE_DB_URL", f"sqlite:///{tmp_path / 'pipeline.db'}")
    return started


@pytest.mark.unit
def test_serve_starts_without_any_connection_yet(no_server, capsys):
    """Connections can be added to the table while it runs, so none is needed to start."""
    assert cli.main(["webhooks", "serve", "--port", "1"]) == 0
    assert len(no_server) == 1
    out = capsys.readouterr().out
    assert "no connection has a webhook secret yet" in out
    assert "connections table is read per delivery" in out


@pytest.mark.unit
def test_serve_prints_the_connections_it_serves_by_name_only(no_server, monkeypatch, capsys):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEYS_VAR, key)
    monkeypatch.setenv("WHOP_WEBHOOK_SECRET", SECRET)
    db_url = os.environ["WHOP_PIPELINE_DB_URL"]
    now = dt.datetime.now(dt.UTC)
    with get_engine(db_url).begin() as conn:
        for name, secret in (("acme", "ws_acme_table"), ("globex", "ws_globex_table")):
            connections.save(
                conn,
                SecretBox.from_env(),
                name=name,
                whop_account_id=f"biz_{name}",
                twenty_api_url="http://twenty.test",
                whop_api_key="whop-key",
                twenty_api_key="twenty-key",
                webhook_secret=secret,
                now=now,
            )
        connections.disconnect(conn, "globex", now=now)
    assert cli.main(["webhooks", "serve", "--port", "1"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:1/webhooks/whop/acme" in out
    assert "http://127.0.0.1:1/webhooks/whop/default" in out  # the environment connection
    assert "globex" not in out
    for secret in (SECRET, "ws_acme_table", key, "whop-key", "twenty-key"):
        assert secret not in out


@pytest.mark.unit
def test_serve_with_a_bad_cache_setting_exits_2_naming_the_variable(no_server, monkeypatch, capsys):
    monkeypatch.setenv("WHOP_PIPELINE_SECRET_CACHE_SECONDS", "forever")
    assert cli.main(["webhooks", "serve", "--port", "1"]) == 2
    assert "WHOP_PIPELINE_SECRET_CACHE_SECONDS" in capsys.readouterr().err
    assert no_server == []


@pytest.mark.sandbox
def test_serve_stores_a_delivery_and_stops_on_ctrl_c(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    port = free_port()
    env = {
        **os.environ,
        "WHOP_WEBHOOK_SECRET": SECRET,
        "WHOP_PIPELINE_CONNECTION": "acme",
        "WHOP_PIPELINE_DB_URL": db_url,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WHOP_PIPELINE_CONNECTIONS_FILE", None)
    command = [sys.executable, "-m", "whop_pipeline.cli", "webhooks", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/webhooks/whop/acme" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        body = json.dumps(
            {"id": "msg_cli", "type": "member.created", "data": {"id": "mber_1"}}
        ).encode()
        sent = int(time.time())
        headers = {
            "webhook-id": "msg_cli",
            "webhook-timestamp": str(sent),
            "webhook-signature": sign(SECRET, "msg_cli", sent, body),
        }
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/whop/acme", content=body, headers=headers
        )
        assert response.json() == {"status": "stored"}
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn shuts down (lifespan included), then re-raises the SIGINT; the CLI exits 130 as for
    # any Ctrl-C, without a traceback.
    assert process.returncode == 130, stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr
    assert SECRET not in stderr
    with get_engine(db_url).connect() as conn:
        stored = conn.execute(
            sa.select(webhook_inbox.c.connection, webhook_inbox.c.webhook_id)
        ).all()
    assert [tuple(r) for r in stored] == [("acme", "msg_cli")]

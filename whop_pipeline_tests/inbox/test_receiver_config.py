"""``whop-pipeline webhooks serve``: connections and secrets from the environment (one) or a file
(several), errors that name the variable, and the command itself serving until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline import cli
from whop_pipeline.inbox.receiver import connection_secrets_from_env
from whop_pipeline.sandbox.common import free_port
from whop_pipeline.sandbox.whop.webhooks import sign
from whop_pipeline.settings import SettingsError
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
def test_serve_without_a_secret_exits_2_naming_the_variable(monkeypatch, capsys):
    for name in ("WHOP_WEBHOOK_SECRET", "WHOP_PIPELINE_CONNECTIONS_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["webhooks", "serve", "--port", "1"]) == 2
    assert "WHOP_WEBHOOK_SECRET is not set" in capsys.readouterr().err


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

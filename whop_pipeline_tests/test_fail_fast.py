"""A connection that cannot work stops a command in one line that names the connection, the
setting and the cause, before any run starts; keys rotate without breaking a connection."""

from __future__ import annotations

import socket

import dagster as dg
import pytest
from cryptography.fernet import Fernet

from whop_pipeline.cli import main
from whop_pipeline.cli.sync import run_sync
from whop_pipeline.lib.secrets import KEYS_VAR
from whop_pipeline.sandbox.readings import write_requests
from whop_pipeline_tests.pipeline import FAST, set_env

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def env(monkeypatch, sandbox, sqlite_url):
    set_env(
        monkeypatch,
        sandbox.env(
            WHOP_PIPELINE_DB_URL=sqlite_url,
            TWENTY_MAX_CALLS_PER_MINUTE=str(FAST),
            WHOP_MAX_REQUESTS_PER_SECOND=str(FAST),
        ),
    )
    monkeypatch.delenv("WHOP_PIPELINE_CONNECTION", raising=False)
    return monkeypatch


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    failures = [line for line in text.splitlines() if "failed:" in line or "whop-pipeline:" in line]
    assert len(failures) == 1, text
    return failures[0]


def test_twenty_pointing_at_nothing_stops_at_once_naming_the_variable(env, sandbox, capsys):
    env.setenv("TWENTY_API_URL", f"http://127.0.0.1:{closed_port()}")
    assert main(["sync"]) == 1
    line = one_line(capsys)
    assert "connection 'default'" in line and "TWENTY_API_URL" in line
    assert "connection refused" in line
    # Whop answered its one call; nothing else was read or written.
    assert sandbox.whop.stats.snapshot()["total"] == 1


def test_a_refused_twenty_key_names_the_variable(env, sandbox, capsys):
    env.setenv("TWENTY_API_KEY", "not-the-key")
    assert main(["sync"]) == 1
    line = one_line(capsys)
    assert "Twenty refused the key (HTTP 403" in line and "TWENTY_API_KEY" in line
    assert "not-the-key" not in line


def test_a_wrong_whop_url_names_the_variable(env, capsys):
    env.setenv("WHOP_API_BASE_URL", f"http://127.0.0.1:{closed_port()}/api/v1")
    assert main(["sync", "--verbose"]) == 1  # the run never started: one line even verbose
    line = one_line(capsys)
    assert "Whop at" in line and "WHOP_API_BASE_URL" in line and "connection refused" in line


def add_acme(sandbox) -> list[str]:
    """`connections add acme` for the sandbox's account, secrets from ACME_WHOP / ACME_TWENTY."""
    return [
        *("connections", "add", "acme"),
        *("--whop-account", sandbox.whop.account_id),
        *("--whop-api-base-url", sandbox.whop_base_url),
        *("--twenty-url", sandbox.twenty_url),
        *("--whop-api-key-env", "ACME_WHOP"),
        *("--twenty-api-key-env", "ACME_TWENTY"),
    ]


def test_add_checks_both_credentials_before_saving(env, sandbox, capsys, encryption_key):
    env.setenv("ACME_WHOP", "wrong-key")
    env.setenv("ACME_TWENTY", sandbox.twenty_api_key)
    args = add_acme(sandbox)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert out.startswith("not saved: connection 'acme': Whop refused the key: HTTP 401")
    assert "--whop-api-key-env" in out
    assert main(["connections", "show", "acme"]) == 2
    assert "no connection named 'acme'" in capsys.readouterr().err
    env.setenv("ACME_WHOP", sandbox.whop_api_key)
    assert main(args) == 0
    assert "added connection 'acme'" in capsys.readouterr().out


def test_secrets_are_never_taken_from_argv(env, capsys, encryption_key):
    assert (
        main(
            [
                "connections",
                "add",
                "acme",
                "--whop-account",
                "biz_x",
                "--twenty-url",
                "http://x",
                "--whop-api-key-env",
                "sk-looks-like-a-key",
                "--twenty-api-key-env",
                "T",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--whop-api-key-env names sk-looks-like-a-key, which is not set" in err


def test_rotate_key_leaves_every_connection_working(env, sandbox, capsys, encryption_key):
    env.setenv("ACME_WHOP", sandbox.whop_api_key)
    env.setenv("ACME_TWENTY", sandbox.twenty_api_key)
    env.delenv("WHOP_API_KEY")  # only the stored connection
    env.delenv("TWENTY_API_KEY")
    assert main(add_acme(sandbox)) == 0
    new = Fernet.generate_key().decode()
    env.setenv(KEYS_VAR, f"{new},{encryption_key}")
    assert main(["connections", "rotate-key"]) == 0
    assert "re-encrypted 2 secrets of 1 connections" in capsys.readouterr().out
    env.setenv(KEYS_VAR, new)  # the old key is dropped
    assert main(["sync", "--connection", "acme", "--full"]) == 0
    assert sum(write_requests(sandbox.twenty.stats.snapshot()).values()) > 0
    env.setenv(KEYS_VAR, Fernet.generate_key().decode())  # a key that never encrypted it
    assert main(["sync", "--connection", "acme"]) == 2
    err = capsys.readouterr().err
    assert f"cannot be decrypted with any key in {KEYS_VAR}" in err and "Traceback" not in err


def test_a_sync_waits_for_its_connections_run_in_flight(env, capsys):
    """The command runs outside the daemon's queue, so it keeps the queue's rule itself."""
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="whop_inbox_job",
                run_id="busy-run",
                status=dg.DagsterRunStatus.STARTED,
                tags={"whop/connection": "default"},
            )
        )
        report = run_sync(instance=instance, printer=lambda _line: None)
    assert not report.success and "has a run in progress (busy-run)" in report.error

"""The webhook the pipeline registered: its health check per connection, and a replay that brings
back what the receiver missed, stored once."""

from __future__ import annotations

import time

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from whop_pipeline.cli import main
from whop_pipeline.definitions import build_defs
from whop_pipeline.inbox import store
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.orchestration.tags import CONNECTION_TAG, SYNC_MODE_TAG, range_tags
from whop_pipeline.store import connections
from whop_pipeline_tests.pipeline import all_partitions
from whop_pipeline_tests.web.oauth_stack import Stack, connect

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e, pytest.mark.dagster]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def health(stack: Stack) -> dg.AssetCheckEvaluation:
    """The check, as the connection's sync run evaluates it."""
    result = (
        build_defs()
        .resolve_job_def("whop_sync_job")
        .execute_in_process(
            instance=stack.web.state.launcher.instance,
            run_config=QUIET,
            tags={
                **range_tags(*all_partitions()),
                SYNC_MODE_TAG: "incremental",
                CONNECTION_TAG: "acme",
            },
            raise_on_error=False,
        )
    )
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "whop_webhook_healthy"
    ]
    return evaluation


def hook(stack: Stack) -> dict:
    row = stack.row()
    return httpx.get(
        f"{stack.sandbox.whop_base_url}/webhooks/{row.whop_webhook_id}",
        headers={"Authorization": f"Bearer {stack.sandbox.whop_api_key}"},
    ).json()


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def set_stored_secret(stack: Stack, secret: str) -> None:
    with stack.engine.begin() as conn:
        conn.execute(
            sa.update(connections.connections)
            .where(connections.connections.c.name == "acme")
            .values(webhook_secret_encrypted=SecretBox.from_env().encrypt(secret))
        )


def inbox_rows(stack: Stack) -> int:
    with stack.engine.connect() as conn:
        return sum(store.status_counts(conn, "acme").values())


def test_a_failing_webhook_fails_its_check_and_a_replay_brings_the_events_back_once(stack):
    connect(stack)
    assert health(stack).passed
    with stack.engine.connect() as conn:
        right_secret = connections.secrets(conn, SecretBox.from_env(), "acme").webhook_secret
    # The receiver refuses every delivery (as if it were down): Whop counts failures.
    set_stored_secret(stack, "ws_not_the_secret")
    before = inbox_rows(stack)
    membership = next(
        m for m in stack.sandbox.whop.dataset.rendered("memberships") if m["status"] == "active"
    )
    stack.sandbox.whop.update_membership(membership["id"], cancel_at_period_end=True)
    wait_for(lambda: hook(stack).get("consecutive_failures", 0) >= 1)
    failing = health(stack)
    assert not failing.passed
    assert "have failed since" in failing.description
    assert "webhooks replay --connection acme" in failing.description
    assert inbox_rows(stack) == before
    # The receiver is back: a replay of what failed lands each event once.
    set_stored_secret(stack, right_secret)
    assert main(["webhooks", "replay", "--connection", "acme", "--since", "2000-01-01"]) == 0
    wait_for(lambda: inbox_rows(stack) > before)
    replayed = inbox_rows(stack)
    assert main(["webhooks", "replay", "--connection", "acme", "--since", "2000-01-01"]) == 0
    time.sleep(1.0)  # a second replay re-sends the same webhook-ids: the inbox keeps one each
    assert inbox_rows(stack) == replayed
    # Three days of failures and Whop disables the endpoint: the check says what to do.
    set_stored_secret(stack, "ws_not_the_secret")
    root = stack.sandbox.whop_server.url
    stack.sandbox.whop.update_membership(membership["id"], cancel_at_period_end=False)
    wait_for(lambda: hook(stack).get("consecutive_failures", 0) >= 1)
    httpx.post(f"{root}/_sandbox/clock", json={"advance_seconds": 3 * 86400 + 60})
    stack.sandbox.whop.update_membership(membership["id"], cancel_at_period_end=True)
    wait_for(lambda: hook(stack).get("enabled") is False)
    disabled = health(stack)
    assert not disabled.passed and "Whop disabled webhook" in disabled.description

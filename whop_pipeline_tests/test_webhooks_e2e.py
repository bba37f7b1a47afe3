"""End to end with the daemon: a membership change in the Whop emulator reaches the Twenty emulator
through the signed webhook, the receiver, the inbox, the sensor and a run the daemon launches."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from whop_pipeline.cli.sync import run_sync
from whop_pipeline.inbox import store
from whop_pipeline.inbox.receiver import create_receiver_app
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.readings import live_records
from whop_pipeline_tests.daemon import Daemon
from whop_pipeline_tests.pipeline import Pipeline, set_env, start_test_sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.sandbox, pytest.mark.dagster]
SECRET = "ws_e2e_daemon_secret"
TIMEOUT = 150


def test_a_membership_change_reaches_twenty_through_the_daemon(tmp_path, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    receiver = BackgroundServer(
        create_receiver_app(db_url=db_url, secrets={"default": SECRET})
    ).start()
    sandbox = start_test_sandbox(
        webhook_url=f"{receiver.url}/webhooks/whop/default", webhook_secret=SECRET
    )
    pipeline = Pipeline(sandbox, db_url)
    try:
        set_env(monkeypatch, pipeline.env())
        assert run_sync("full", printer=lambda _l: None).success
        membership = next(
            m
            for m in sandbox.whop.dataset.rendered("memberships")
            if m["status"] == "active" and not m["cancel_at_period_end"]
        )
        with Daemon(tmp_path / "dagster_home", pipeline.env()) as daemon:
            sandbox.whop.update_membership(membership["id"], status="canceled")
            assert sandbox.whop.wait_for_webhooks(10)
            deadline = time.monotonic() + TIMEOUT
            stage = None
            while time.monotonic() < deadline:
                opp = next(
                    o
                    for o in live_records(pipeline.twenty_dump(), "opportunities")
                    if o["whopMembershipId"] == membership["id"]
                )
                stage = opp["stage"]
                if stage == "LOST":
                    break
                time.sleep(1)
            assert stage == "LOST", f"not in Twenty after {TIMEOUT}s:\n{daemon.log()[-3000:]}"
            with daemon.instance() as instance:
                # The opportunity is written before its run records its success: wait for every
                # inbox run (the membership and the member events may take two) to finish.
                while time.monotonic() < deadline:
                    runs = instance.get_runs(dg.RunsFilter(job_name="whop_inbox_job"))
                    if runs and all(r.is_finished for r in runs):
                        break
                    time.sleep(0.5)
                assert runs and all(
                    r.tags.get("dagster/sensor_name") == "whop_webhook_sensor" for r in runs
                )
                assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [
                    r.status for r in runs
                ]
            with pipeline.engine.connect() as conn:
                counts = store.status_counts(conn, "default")
            assert counts["done"] >= 1 and counts["pending"] == 0 and counts["dead"] == 0
    finally:
        sandbox.stop()
        receiver.stop()

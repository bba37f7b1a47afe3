"""The webhook sensor: bounded reads, batches, deterministic run keys, retries under new keys."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from whop_pipeline.inbox import store
from whop_pipeline.orchestration.sensors import (
    BATCH_SIZE,
    RELAUNCH_AFTER,
    batch_run_key,
    whop_webhook_sensor,
)
from whop_pipeline.orchestration.tags import CONNECTION_TAG
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline_tests.connections_helpers import add_connection
from whop_pipeline_tests.inbox.webhook_helpers import envelope, put

pytestmark = pytest.mark.dagster


@pytest.fixture(autouse=True)
def environment_connection(monkeypatch):
    """The environment defines the ``default`` connection; others come from the table."""
    monkeypatch.setenv("WHOP_API_KEY", "k")
    monkeypatch.setenv("TWENTY_API_KEY", "t")
    monkeypatch.delenv("WHOP_PIPELINE_CONNECTION", raising=False)


def evaluate(db_url, cursor=None, instance=None):
    def run(instance):
        with dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"pipeline_db": PipelineDatabase(url=db_url)},
        ) as context:
            return whop_webhook_sensor(context)

    if instance is not None:
        return run(instance)
    with dg.instance_for_test() as temporary:
        return run(temporary)


def add(engine, n, connection="default"):
    return [
        put(engine, envelope("membership.updated", {"id": f"mem_{i}"}), connection)
        for i in range(n)
    ]


def ids_of(request):
    return request.run_config["ops"]["whop_webhook_inbox"]["config"]["inbox_ids"]


def test_an_empty_inbox_skips_with_a_reason(db_url):
    result = evaluate(db_url)
    assert isinstance(result, dg.SkipReason) and "no webhook events" in result.skip_message


def test_pending_rows_become_one_run_with_a_stable_key(db_url):
    engine = get_engine(db_url)
    rows = add(engine, 3)
    first = evaluate(db_url)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert ids_of(request) == rows
    assert json.loads(first.cursor) == {"default": rows[-1]}
    assert request.tags[CONNECTION_TAG] == "default"
    again = evaluate(db_url, cursor=first.cursor)
    # Same rows, same attempts: the same key, which Dagster will not launch twice.
    assert again.run_requests[0].run_key == request.run_key


def test_many_rows_are_split_into_batches(sqlite_url):
    engine = get_engine(sqlite_url)
    rows = add(engine, BATCH_SIZE + 7)
    result = evaluate(sqlite_url)
    assert [len(ids_of(r)) for r in result.run_requests] == [BATCH_SIZE, 7]
    assert [i for r in result.run_requests for i in ids_of(r)] == rows
    assert len({r.run_key for r in result.run_requests}) == 2


def test_a_failed_row_comes_back_after_its_back_off_under_a_new_key(sqlite_url):
    engine = get_engine(sqlite_url)
    [row] = add(engine, 1)
    original = evaluate(sqlite_url).run_requests[0].run_key
    with engine.begin() as conn:
        store.claim(conn, [row], "k1", connection="default")
        store.mark_failed(conn, [row], "Twenty unavailable", connection="default")
    assert isinstance(evaluate(sqlite_url), dg.SkipReason)  # backing off
    waited = dt.datetime.now(dt.UTC) - store.retry_delay(1) - dt.timedelta(seconds=1)
    with engine.begin() as conn:
        conn.execute(sa.update(store.inbox).values(status_changed_at=waited))
    retried = evaluate(sqlite_url).run_requests[0]
    assert ids_of(retried) == [row] and retried.run_key != original


def test_dead_done_and_processing_rows_are_left_alone_and_each_connection_gets_its_runs(
    sqlite_url, encryption_key
):
    engine = get_engine(sqlite_url)
    dead, done, busy = add(engine, 3)
    others = add(engine, 2, connection="other")
    add(engine, 2, connection="unknown")  # no such connection: never dispatched
    with engine.begin() as conn:
        conn.execute(sa.update(store.inbox).where(store.inbox.c.id == dead).values(status="dead"))
        store.claim(conn, [done, busy], "k", connection="default")
        store.mark_done(conn, [done], connection="default")
    assert isinstance(evaluate(sqlite_url), dg.SkipReason)
    add_connection(sqlite_url, "other")
    [request] = evaluate(sqlite_url).run_requests
    assert ids_of(request) == others and request.tags[CONNECTION_TAG] == "other"
    assert "other" in request.run_key


def test_a_paused_connections_events_wait_and_a_busy_one_does_not_hold_the_others(
    sqlite_url, encryption_key
):
    engine = get_engine(sqlite_url)
    add_connection(sqlite_url, "acme")
    add_connection(sqlite_url, "held", status="paused")
    acme = add(engine, 2, connection="acme")
    add(engine, 2, connection="held")
    mine = add(engine, 1)
    with dg.instance_for_test() as instance:
        for _ in range(2):
            instance.add_run(
                dg.DagsterRun(
                    job_name="whop_inbox_job",
                    run_id=str(uuid.uuid4()),
                    status=dg.DagsterRunStatus.STARTED,
                    tags={CONNECTION_TAG: "default"},
                )
            )
        result = evaluate(sqlite_url, instance=instance)
    assert [(r.tags[CONNECTION_TAG], ids_of(r)) for r in result.run_requests] == [("acme", acme)]
    assert json.loads(result.cursor) == {"acme": acme[-1]}
    assert mine  # default's row waits for its runs in flight


@pytest.mark.unit
def test_an_unclaimed_batch_is_relaunched_after_a_while():
    changed = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [(1, 0, changed), (2, 0, changed)]
    fresh = batch_run_key("acme", rows, changed + dt.timedelta(seconds=30))
    assert fresh == batch_run_key("acme", rows, changed + RELAUNCH_AFTER - dt.timedelta(seconds=1))
    assert fresh != batch_run_key("acme", rows, changed + RELAUNCH_AFTER + dt.timedelta(seconds=1))
    assert fresh != batch_run_key("acme", [(1, 1, changed), (2, 0, changed)], changed)
    assert fresh != batch_run_key("beta", rows, changed + dt.timedelta(seconds=30))


def test_a_second_run_starts_while_one_is_in_flight_with_only_the_new_rows(sqlite_url):
    """One run in flight: the tick dispatches only rows no tick dispatched before, so the next run's
    start-up overlaps the running one. Two in flight: it waits. None: every due row again."""
    engine = get_engine(sqlite_url)
    add(engine, 2)
    with dg.instance_for_test() as instance:
        first = evaluate(sqlite_url, instance=instance)
        assert len(ids_of(first.run_requests[0])) == 2
        running = [
            dg.DagsterRun(
                job_name="whop_inbox_job",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,
                tags={CONNECTION_TAG: "default"},
            )
            for _ in range(2)
        ]
        instance.add_run(running[0])
        assert isinstance(
            evaluate(sqlite_url, cursor=first.cursor, instance=instance), dg.SkipReason
        )
        add(engine, 1)
        second = evaluate(sqlite_url, cursor=first.cursor, instance=instance)
        assert len(ids_of(second.run_requests[0])) == 1  # only the new row
        instance.add_run(running[1])
        add(engine, 1)
        waiting = evaluate(sqlite_url, cursor=second.cursor, instance=instance)
        assert isinstance(waiting, dg.SkipReason) and "in progress" in waiting.skip_message
        for run in running:
            instance.report_run_failed(run)
        # Nothing in flight: every due row (4, none claimed here) goes in one batch.
        assert (
            len(
                ids_of(
                    evaluate(sqlite_url, cursor=second.cursor, instance=instance).run_requests[0]
                )
            )
            == 4
        )

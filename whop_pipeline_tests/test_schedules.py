"""Schedules: one run request per due connection, with its partition range and asset selection."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from whop_pipeline.definitions import build_defs
from whop_pipeline.orchestration.partitions import daily_partitions
from whop_pipeline.orchestration.schedules import (
    RECONCILE_PAYMENT_DAYS,
    whop_incremental_schedule,
    whop_reconcile_schedule,
)
from whop_pipeline.orchestration.tags import (
    CONNECTION_TAG,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    SYNC_MODE_TAG,
)
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline_tests.connections_helpers import add_connection

pytestmark = pytest.mark.dagster
NOW = dt.datetime.now(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def no_environment_connection(monkeypatch):
    for name in ("WHOP_API_KEY", "TWENTY_API_KEY", "WHOP_PIPELINE_CONNECTION"):
        monkeypatch.delenv(name, raising=False)


def keys_until(now: dt.datetime) -> list[str]:
    return daily_partitions.get_partition_keys(current_time=now)


def as_range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]


def tick(schedule, instance, db_url, repository=None) -> dg.ScheduleExecutionData:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=NOW,
        repository_def=repository,
        resources={"pipeline_db": PipelineDatabase(url=db_url)},
    ) as context:
        return schedule.evaluate_tick(context)


def test_incremental_reads_yesterday_and_today_for_each_active_connection(
    sqlite_url, encryption_key
):
    for name, status in [
        ("acme", "active"),
        ("beta", "active"),
        ("gone", "disconnected"),
        ("held", "paused"),
    ]:
        add_connection(sqlite_url, name, status=status)
    with dg.instance_for_test() as instance:
        requests = tick(whop_incremental_schedule, instance, sqlite_url).run_requests
    assert [r.tags[CONNECTION_TAG] for r in requests] == ["acme", "beta"]
    keys = keys_until(NOW)
    for request in requests:
        assert as_range(request) == (keys[-2], keys[-1])
        assert request.tags[SYNC_MODE_TAG] == "incremental"
    assert keys[-1] == NOW.date().isoformat()
    assert len({r.run_key for r in requests}) == 2


def test_the_environment_connection_is_scheduled_without_a_row(sqlite_url, monkeypatch):
    monkeypatch.setenv("WHOP_API_KEY", "k")
    monkeypatch.setenv("TWENTY_API_KEY", "t")
    with dg.instance_for_test() as instance:
        requests = tick(whop_incremental_schedule, instance, sqlite_url).run_requests
    assert [r.tags[CONNECTION_TAG] for r in requests] == ["default"]


def test_a_connection_added_or_paused_between_ticks_counts_at_the_next(sqlite_url, encryption_key):
    with dg.instance_for_test() as instance:
        first = tick(whop_incremental_schedule, instance, sqlite_url)
        assert first.run_requests == [] and "no active connection" in first.skip_message
        add_connection(sqlite_url, "acme")
        second = tick(whop_incremental_schedule, instance, sqlite_url).run_requests
        add_connection(sqlite_url, "beta", status="paused")
        third = tick(whop_incremental_schedule, instance, sqlite_url).run_requests
    assert [r.tags[CONNECTION_TAG] for r in second] == ["acme"]
    assert [r.tags[CONNECTION_TAG] for r in third] == ["acme"]


def test_a_connection_with_a_sync_in_flight_is_skipped_and_the_others_go_on(
    sqlite_url, encryption_key
):
    add_connection(sqlite_url, "acme")
    add_connection(sqlite_url, "beta")
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="whop_sync_job",
                run_id="r1",
                status=dg.DagsterRunStatus.STARTED,
                tags={CONNECTION_TAG: "acme"},
            )
        )
        requests = tick(whop_incremental_schedule, instance, sqlite_url).run_requests
        instance.add_run(
            dg.DagsterRun(
                job_name="whop_sync_job",
                run_id="r2",
                status=dg.DagsterRunStatus.STARTING,
                tags={CONNECTION_TAG: "beta"},
            )
        )
        none = tick(whop_incremental_schedule, instance, sqlite_url)
    assert [r.tags[CONNECTION_TAG] for r in requests] == ["beta"]
    assert none.run_requests == [] and "acme, beta" in none.skip_message


def test_reconcile_reads_every_membership_and_recent_payments(sqlite_url, encryption_key):
    add_connection(sqlite_url, "acme")
    add_connection(sqlite_url, "beta")
    with dg.instance_for_test() as instance:
        # Built inside the instance's scope: loading definitions reads the ambient instance.
        repository = build_defs().get_repository_def()
        requests = tick(whop_reconcile_schedule, instance, sqlite_url, repository).run_requests
    assert [r.tags[CONNECTION_TAG] for r in requests] == ["acme", "acme", "beta", "beta"]
    memberships, payments = requests[:2]
    keys = keys_until(NOW)
    assert as_range(memberships) == (keys[0], keys[-1])
    assert as_range(payments) == (keys[max(0, len(keys) - RECONCILE_PAYMENT_DAYS)], keys[-1])
    membership_assets = {k.to_user_string() for k in memberships.asset_selection}
    payment_assets = {k.to_user_string() for k in payments.asset_selection}
    downstream = {
        "crm_people",
        "crm_opportunities",
        "crm_notes",
        "twenty_people",
        "twenty_opportunities",
        "twenty_notes",
        "twenty_note_targets",
    }
    # Each run reads its own partitioned asset over its own range, and rebuilds what it changed.
    assert membership_assets & {"whop_memberships", "whop_payments"} == {"whop_memberships"}
    assert payment_assets & {"whop_memberships", "whop_payments"} == {"whop_payments"}
    assert "whop_members" in membership_assets and "whop_members" not in payment_assets
    assert downstream <= membership_assets and downstream <= payment_assets
    # Neither is incremental: members are a full scan and every record is compared.
    assert memberships.tags[SYNC_MODE_TAG] != "incremental" != payments.tags[SYNC_MODE_TAG]
    assert len({r.run_key for r in requests}) == 4

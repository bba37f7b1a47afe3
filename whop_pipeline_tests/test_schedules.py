"""Schedules: the partition ranges and asset selections each run request asks for."""

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
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    SYNC_MODE_TAG,
)

pytestmark = pytest.mark.dagster
NOW = dt.datetime.now(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)


def keys_until(now: dt.datetime) -> list[str]:
    return daily_partitions.get_partition_keys(current_time=now)


def as_range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]


def test_incremental_reads_yesterday_and_today():
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW) as context,
    ):
        request = whop_incremental_schedule.evaluate_tick(context).run_requests[0]
    keys = keys_until(NOW)
    assert as_range(request) == (keys[-2], keys[-1])
    assert keys[-1] == NOW.date().isoformat()
    assert request.tags[SYNC_MODE_TAG] == "incremental"


def test_incremental_skips_while_a_sync_is_running():
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(job_name="whop_sync_job", run_id="r1", status=dg.DagsterRunStatus.STARTED)
        )
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW) as context:
            result = whop_incremental_schedule.evaluate_tick(context)
    assert result.run_requests == [] and "still queued or running" in result.skip_message


def test_reconcile_reads_every_membership_and_recent_payments():
    with dg.instance_for_test() as instance:
        # Built inside the instance's scope: loading definitions reads the ambient instance.
        repository = build_defs().get_repository_def()
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=NOW, repository_def=repository
        ) as context:
            memberships, payments = whop_reconcile_schedule.evaluate_tick(context).run_requests
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
    assert memberships.run_key != payments.run_key

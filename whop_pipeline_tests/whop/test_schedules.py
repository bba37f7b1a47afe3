"""Schedules: the partition ranges and asset selections each run request asks for."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from whop_pipeline.definitions import defs
from whop_pipeline.whop.partitions import daily_partitions
from whop_pipeline.whop.schedules import (
    PAYMENT_ASSETS,
    RECONCILE_PAYMENT_DAYS,
    whop_incremental_schedule,
    whop_reconcile_schedule,
)

pytestmark = pytest.mark.dagster
NOW = dt.datetime.now(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)


def keys_until(now: dt.datetime) -> list[str]:
    return daily_partitions.get_partition_keys(current_time=now)


def as_range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[
        ASSET_PARTITION_RANGE_END_TAG
    ]


def test_incremental_reads_yesterday_and_today():
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW)
        request = whop_incremental_schedule.evaluate_tick(context).run_requests[0]
    keys = keys_until(NOW)
    assert as_range(request) == (keys[-2], keys[-1])
    assert keys[-1] == NOW.date().isoformat()


def test_incremental_skips_while_a_sync_is_running():
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(job_name="whop_sync_job", run_id="r1", status=dg.DagsterRunStatus.STARTED)
        )
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW)
        result = whop_incremental_schedule.evaluate_tick(context)
    assert result.run_requests == [] and "still queued or running" in result.skip_message


def test_reconcile_reads_every_membership_and_recent_payments():
    with dg.instance_for_test() as instance:
        # Built inside the instance's scope: loading definitions reads the ambient instance.
        repository = defs().get_repository_def()
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=NOW, repository_def=repository
        )
        memberships, payments = whop_reconcile_schedule.evaluate_tick(context).run_requests
    keys = keys_until(NOW)
    assert as_range(memberships) == (keys[0], keys[-1])
    assert as_range(payments) == (keys[max(0, len(keys) - RECONCILE_PAYMENT_DAYS)], keys[-1])
    membership_assets = {k.to_user_string() for k in memberships.asset_selection}
    payment_assets = {k.to_user_string() for k in payments.asset_selection}
    assert payment_assets == set(PAYMENT_ASSETS)
    assert not membership_assets & payment_assets
    assert {
        "whop_memberships",
        "crm_opportunities",
        "twenty_opportunities",
        "twenty_people",
    } <= membership_assets
    assert memberships.run_key != payments.run_key

"""Extract assets through dg.materialize with real resources pointed at the sandbox: exact rows in the
mirror, exact API calls, backfills over partition ranges, and faults that change nothing."""

from __future__ import annotations

import datetime as dt
import math
import re

import dagster as dg
import pytest
import sqlalchemy as sa

from whop_pipeline.orchestration.tags import SYNC_MODE_TAG, SyncMode
from whop_pipeline.store.raw import count_raw, record_changes
from whop_pipeline.store.tables import RAW_TABLES, raw_members
from whop_pipeline.whop import assets, checks
from whop_pipeline.whop.assets import WINDOW_OVERLAP
from whop_pipeline_tests.pipeline import Pipeline, all_partitions, start_test_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster]

EXTRACT = [assets.whop_members, assets.whop_products, assets.whop_memberships, assets.whop_payments]
CHECKS = [checks.whop_member_emails_present, checks.whop_membership_members_present]


def parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def created_between(rows, after: dt.datetime, before: dt.datetime) -> list[dict]:
    """Rows the emulator returns for (after, before): both bounds exclusive."""
    return [r for r in rows if after < parse(r["created_at"]) < before]


def calls(stats: dict, path: str) -> int:
    return stats["requests"].get(f"GET /api/v1/{path}", 0)


def mirror(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """Every mirror table as id → payload hash."""
    with pipeline.engine.connect() as conn:
        return {
            name: dict(conn.execute(sa.select(t.c.id, t.c.payload_hash)).all())
            for name, t in RAW_TABLES.items()
        }


def test_full_range_mirrors_everything_in_the_fewest_calls(pipeline):
    data = pipeline.sandbox.whop.dataset
    result = pipeline.materialize([*EXTRACT, *CHECKS], partitions=all_partitions())
    assert result.success
    with pipeline.engine.connect() as conn:
        for name in ("members", "products", "plans", "memberships", "payments"):
            assert count_raw(conn, name, "default") == len(data.rendered(name)), name
    stats = pipeline.whop_stats()
    # One call per page of 100; the emulator's last page says has_next_page: false. Plus the
    # run's one preflight call (the first product), made once for the whole run.
    preflight = [r for r in stats["recent"] if re.search(r"(^|&)first=1(&|$)", r["query"])]
    assert len(preflight) == 1 and "/products" in preflight[0]["path"]
    for path, kind in [
        ("members", "members"),
        ("products", "products"),
        ("variants", "plans"),
        ("memberships", "memberships"),
        ("payments", "payments"),
    ]:
        expected = math.ceil(len(data.rendered(kind)) / 100) + (path == "products")
        assert calls(stats, path) == expected, path
    assert stats["total"] == 6

    metadata = result.asset_materializations_for_node("whop_payments")[0].metadata
    assert metadata["fetched"].value == len(data.rendered("payments"))
    assert metadata["inserted"].value == len(data.rendered("payments"))
    assert metadata["api_calls"].value == 1
    checks_passed = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks_passed == {
        "whop_member_emails_present": True,
        "whop_membership_members_present": True,
    }
    assert metadata["connection"].value == "default"


def test_a_second_run_changes_nothing(sqlite_pipeline):
    sqlite_pipeline.materialize(EXTRACT, partitions=all_partitions())
    before = mirror(sqlite_pipeline)
    result = sqlite_pipeline.materialize(EXTRACT, partitions=all_partitions())
    metadata = result.asset_materializations_for_node("whop_memberships")[0].metadata
    assert metadata["inserted"].value == 0 and metadata["updated"].value == 0
    assert metadata["unchanged"].value == metadata["fetched"].value
    assert mirror(sqlite_pipeline) == before


def test_backfill_of_a_partition_range_reads_that_window(pipeline):
    data = pipeline.sandbox.whop.dataset
    keys = sorted({r["created_at"][:10] for r in data.rendered("payments")})
    first, last = keys[len(keys) // 3], keys[2 * len(keys) // 3]
    result = pipeline.materialize(
        [assets.whop_memberships, assets.whop_payments], partitions=(first, last)
    )
    start = dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC) - WINDOW_OVERLAP
    end = (
        dt.datetime.fromisoformat(last).replace(tzinfo=dt.UTC)
        + dt.timedelta(days=1)
        + WINDOW_OVERLAP
    )
    expected = {
        kind: created_between(data.rendered(kind), start, end)
        for kind in ("memberships", "payments")
    }
    with pipeline.engine.connect() as conn:
        for kind, rows in expected.items():
            assert count_raw(conn, kind, "default") == len(rows), kind
    stats = pipeline.whop_stats()
    for kind, rows in expected.items():
        assert calls(stats, kind) == max(1, math.ceil(len(rows) / 100)), kind
    materialized = {
        (m.asset_key.to_user_string(), m.partition)
        for m in result.get_asset_materialization_events()
        for m in [m.step_materialization_data.materialization]
    }
    days = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
    assert len(materialized) == 2 * days


def test_one_partition(sqlite_pipeline):
    data = sqlite_pipeline.sandbox.whop.dataset
    day = data.rendered("payments")[0]["created_at"][:10]
    sqlite_pipeline.materialize([assets.whop_payments], partition_key=day)
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    expected = created_between(
        data.rendered("payments"),
        start - WINDOW_OVERLAP,
        start + dt.timedelta(days=1) + WINDOW_OVERLAP,
    )
    with sqlite_pipeline.engine.connect() as conn:
        assert count_raw(conn, "payments", "default") == len(expected) > 0


def test_faults_leave_the_mirror_identical_to_a_clean_run(sqlite_pipeline, tmp_path):
    clean = sqlite_pipeline
    clean.materialize(EXTRACT, partitions=all_partitions(), whop=clean.whop(page_size=5))
    faulty_sandbox = start_test_sandbox(whop_fault_rate=0.10, fault_seed=7)
    try:
        faulty = Pipeline(faulty_sandbox, f"sqlite:///{tmp_path / 'faulty.db'}")
        result = faulty.materialize(
            EXTRACT, partitions=all_partitions(), whop=faulty.whop(page_size=5)
        )
        assert result.success
        stats = faulty.whop_stats()
        assert stats["faults"] > 0, "the fault injector did inject faults"
        assert stats["total"] > 40  # small pages: many calls, so several faults
        assert mirror(faulty) == mirror(clean)
        retries = sum(
            m.metadata["retries"].value
            for node in ("whop_members", "whop_memberships", "whop_payments", "whop_products")
            for m in result.asset_materializations_for_node(node)[:1]
        )
        assert retries == stats["faults"]
    finally:
        faulty_sandbox.stop()


def test_the_email_check_fails_loudly_when_every_email_is_null(sqlite_pipeline):
    sqlite_pipeline.materialize([assets.whop_members])
    with sqlite_pipeline.engine.begin() as conn:
        conn.execute(sa.update(raw_members).values(email=None))
    result = sqlite_pipeline.materialize(
        [assets.whop_members, checks.whop_member_emails_present],
        selection=dg.AssetSelection.checks(checks.whop_member_emails_present),
        raise_on_error=False,
    )
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert "member:email:read" in evaluation.description


def test_a_wrong_key_fails_the_asset_with_a_clear_message(sqlite_pipeline):
    result = sqlite_pipeline.materialize(
        [assets.whop_members],
        whop=sqlite_pipeline.whop(api_key="sk-not-the-right-key-7f3a"),
        raise_on_error=False,
    )
    assert not result.success
    # The run's one preflight call fails the resource before any step starts.
    [failure] = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE
    ]
    error = failure.event_specific_data.error
    assert "connection 'default': Whop refused the key: HTTP 401" in error.message
    assert "WHOP_API_KEY" in error.message and "member:email:read" in error.message
    assert "sk-not-the-right-key-7f3a" not in error.to_string()
    assert sqlite_pipeline.whop_stats()["total"] == 1


def incremental(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    keys = all_partitions()
    return pipeline.materialize(
        EXTRACT, partitions=(keys[1], keys[1]), tags={SYNC_MODE_TAG: SyncMode.INCREMENTAL}
    )


def test_incremental_members_read_only_new_members_and_those_new_rows_need(sqlite_pipeline):
    """An incremental run lists members created after the newest one in the mirror (one page),
    plus a GET for each member a new membership or payment names that the mirror lacks; it never
    scans every member (docs/whop-api.md#date-filters)."""
    pipeline = sqlite_pipeline
    pipeline.materialize(EXTRACT, partitions=all_partitions(), tags={SYNC_MODE_TAG: "full"})
    pipeline.reset_stats()
    assert incremental(pipeline).success
    stats = pipeline.whop_stats()
    assert calls(stats, "members") == 1  # created_after the newest: one (empty) page
    assert not any(path.startswith("GET /api/v1/members/") for path in stats["requests"])

    # A new buyer (a new member) and an existing member the mirror somehow lost.
    created = pipeline.sandbox.whop.create_membership(name="Nova Buyer")
    memberships = pipeline.sandbox.whop.dataset.rendered("memberships")
    lost = next(m["member_id"] for m in memberships if m["member_id"])
    lost_memberships = [m["id"] for m in memberships if m["member_id"] == lost]
    with pipeline.engine.begin() as conn:
        conn.execute(sa.delete(raw_members).where(raw_members.c.id == lost))
        record_changes(conn, "memberships", "default", lost_memberships)
    pipeline.reset_stats()
    assert incremental(pipeline).success
    stats = pipeline.whop_stats()
    assert calls(stats, "members") == 1
    fetched = [p for p in stats["requests"] if p.startswith("GET /api/v1/members/")]
    assert fetched == [f"GET /api/v1/members/{lost}"]
    with pipeline.engine.connect() as conn:
        ids = set(conn.execute(sa.select(raw_members.c.id)).scalars())
    assert created["member_id"] in ids and lost in ids

"""Process a batch of inbox rows: claim them, apply them to the raw mirror, push the affected people,
opportunities and notes through the sync's own load code, and record each row's outcome.

Used by the ``whop_webhook_inbox`` asset (runs the sensor launches) and by ``whop-pipeline inbox
process`` (the same job, in-process, for users without a daemon).
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from whop_pipeline.crm import from_mirror
from whop_pipeline.inbox import store
from whop_pipeline.inbox.apply import Affected, apply_events
from whop_pipeline.lib.instance import local_instance
from whop_pipeline.settings import load_settings
from whop_pipeline.store.database import get_engine
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.twenty.upserter import LoadCounts
from whop_pipeline.whop.resource import WhopResource

# A row left `processing` this long belonged to a run that died: it is handed back for a retry.
STALE_AFTER = dt.timedelta(minutes=15)


@dataclass
class BatchReport:
    claimed: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    ignored: int = 0
    affected: Affected | None = None
    counts: dict[str, LoadCounts] = field(default_factory=dict)


def push_affected(
    affected: Affected,
    engine: sa.Engine,
    connection: str,
    twenty: TwentyResource,
    run_id: str,
    log: Callable[[str], None],
) -> dict[str, LoadCounts]:
    """Build frames for just what the events touched and load them in dependency order."""
    with engine.connect() as conn:
        people = from_mirror.people(conn, connection, keys=affected.person_keys)
        products = from_mirror.products(conn, connection) if affected.products else None
        opportunities = (
            from_mirror.opportunities(conn, connection, ids=affected.memberships)
            if affected.memberships
            else None
        )
        notes = (
            (
                from_mirror.notes(conn, connection, ids=affected.payments),
                from_mirror.note_targets(conn, connection, ids=affected.payments),
            )
            if affected.payments
            else None
        )
    # Webhook runs stay small and fast: the sync retries its own failed rows.
    with twenty.load_session(
        run_id=run_id, engine=engine, connection=connection, log=log, retry_failed=False
    ) as session:
        if len(people):
            session.people(people)
        if products is not None:
            session.products(products)
        if opportunities is not None:
            session.opportunities(opportunities)
        if notes is not None:
            session.notes(*notes)
    return session.outcome.counts


def process_batch(
    ids: Sequence[int],
    *,
    run_key: str,
    run_id: str,
    engine: sa.Engine,
    connection: str,
    whop: WhopResource,
    twenty: TwentyResource,
    log: Callable[[str], None] = print,
) -> BatchReport:
    report = BatchReport()
    with engine.begin() as conn:
        released = store.release_stale(conn, STALE_AFTER)
        if released:
            log(f"released {len(released)} rows whose run died: {released[:10]}")
        report.claimed = store.claim(conn, ids, run_key, run_id)
    if not report.claimed:
        log(f"none of {len(ids)} rows were left to claim (another run took them)")
        return report
    with engine.connect() as conn:
        rows = store.get_events(conn, report.claimed)
    try:
        with whop.client(on_retry=log) as client:
            affected = apply_events(rows, engine, connection, client)
        report.counts = push_affected(affected, engine, connection, twenty, run_id, log)
    except Exception as exc:
        # Nothing is lost: the rows go back as failed and a later batch retries them.
        with engine.begin() as conn:
            store.mark_failed(conn, report.claimed, exc, run_key=run_key)
        raise
    report.affected = affected
    report.failed = affected.failed
    report.ignored = len(affected.ignored)
    with engine.begin() as conn:
        for row_id, error in affected.failed.items():
            store.mark_failed(conn, [row_id], error, run_key=run_key)
        report.done = store.mark_done(
            conn, [i for i in report.claimed if i not in affected.failed], run_key=run_key
        )
    return report


# --- whop-pipeline inbox process | status ------------------------------------------------------


def process_pending(
    batch_size: int = 500,
    *,
    instance: dg.DagsterInstance | None = None,
    printer: Callable[[str], None] = print,
) -> int:
    """Run ``whop_inbox_job`` in-process until no row is due; returns the rows marked done."""
    settings = load_settings()
    from whop_pipeline.definitions import defs

    job = defs().resolve_job_def("whop_inbox_job")
    engine = get_engine(settings.db_url)
    done = 0
    with local_instance(instance) as instance:
        while True:
            with engine.connect() as conn:
                due = store.due_rows(conn, batch_size, connection=settings.connection.name)
            if not due:
                break
            ids = [row.id for row in due]
            key = f"inbox-cli-{uuid.uuid4().hex[:12]}"
            result = job.execute_in_process(
                instance=instance,
                run_config={
                    "ops": {"whop_webhook_inbox": {"config": {"inbox_ids": ids}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                },
                tags={"whop/inbox_batch": key},
                raise_on_error=False,
            )
            materializations = result.asset_materializations_for_node("whop_webhook_inbox")
            marked = materializations[0].metadata["done"].value if materializations else 0
            done += int(marked)
            printer(f"batch of {len(ids)}: {'ok' if result.success else 'FAILED'}, {marked} done")
            if not result.success:
                break  # the rows are back as failed, with a back-off before their next attempt
    return done


def main(args: argparse.Namespace) -> int:
    done = process_pending(args.batch_size)
    print(f"{done} webhook events applied")
    return status_main(args)


def status_main(_args: argparse.Namespace) -> int:
    settings = load_settings()
    with get_engine(settings.db_url).connect() as conn:
        counts = store.status_counts(conn, settings.connection.name)
    print("  ".join(f"{status}={count}" for status, count in counts.items()))
    return 1 if counts.get("dead") else 0

"""``whop-pipeline inbox process | status``: apply pending webhook events in-process (the same
job the sensor launches, for users without a daemon), and count the inbox by status."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable

import dagster as dg

from whop_pipeline.execution import preflight
from whop_pipeline.execution.local import local_instance
from whop_pipeline.inbox import store
from whop_pipeline.orchestration.tags import CONNECTION_TAG, INBOX_BATCH_TAG
from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store.database import get_engine


def process_pending(
    batch_size: int = 500,
    *,
    instance: dg.DagsterInstance | None = None,
    printer: Callable[[str], None] = print,
    connection: str | None = None,
) -> int:
    """Run ``whop_inbox_job`` for one connection in-process until none of its rows is due;
    returns the rows marked done."""
    name = connection or preflight.default_connection_name()
    preflight.check_connection(preflight.resolve(name))
    from whop_pipeline.definitions import build_defs

    job = build_defs().resolve_job_def("whop_inbox_job")
    engine = get_engine(db_url_from_env())
    done = 0
    with local_instance(instance) as instance:
        while True:
            with engine.connect() as conn:
                due = store.due_rows(conn, batch_size, connection=name)
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
                tags={INBOX_BATCH_TAG: key, CONNECTION_TAG: name},
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
    done = process_pending(args.batch_size, connection=args.connection)
    print(f"{done} webhook events applied")
    return status_main(args)


def status_main(args: argparse.Namespace) -> int:
    name = args.connection or preflight.default_connection_name()
    with get_engine(db_url_from_env()).connect() as conn:
        counts = store.status_counts(conn, name)
    print("  ".join(f"{status}={count}" for status, count in counts.items()))
    return 1 if counts.get("dead") else 0

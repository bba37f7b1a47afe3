"""``whop_webhook_sensor``: turns due inbox rows into runs of ``whop_inbox_job``.

A tick is one bounded read of the inbox (ids, attempts, status times: no payloads, no API calls).
Each batch gets a deterministic ``run_key`` built from its rows and their attempt counts, so a tick
that sees the same batch again launches nothing, and a retried row (its attempts changed) comes back
under a new key. Claiming in the run is atomic, so two runs never apply the same row.

Up to ``MAX_RUNS_IN_FLIGHT`` inbox runs go at once: while one applies its batch, the next one's
process starts (most of a webhook's latency is a run's start-up, not its work). A tick that finds
runs in flight dispatches only rows no earlier tick dispatched (newer than the cursor) and rows
coming back for a retry; with none in flight it dispatches every due row, so a batch whose run
never started is launched again. Claiming in the run is atomic, so two runs never apply one row.
"""

import datetime as dt
import hashlib
from collections.abc import Sequence

import dagster as dg

from whop_pipeline.inbox import store
from whop_pipeline.inbox.processing import STALE_AFTER
from whop_pipeline.orchestration.jobs import whop_inbox_job
from whop_pipeline.orchestration.schedules import ACTIVE_RUN_STATUSES
from whop_pipeline.orchestration.tags import INBOX_ROWS_TAG
from whop_pipeline.store.resource import PipelineDatabase

BATCH_SIZE = 500
MAX_RUNS_PER_TICK = 4
MAX_RUNS_IN_FLIGHT = 2
# A batch still unclaimed this long after its rows last changed had a run that never started
# (a crash at launch): the key changes with each such period, so the batch is launched again.
RELAUNCH_AFTER = dt.timedelta(minutes=10)


def _inbox_runs_in_flight(context: dg.SensorEvaluationContext, now: dt.datetime) -> int:
    """Inbox runs created recently and not finished (a run stuck longer does not count)."""
    runs = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=whop_inbox_job.name, statuses=ACTIVE_RUN_STATUSES),
        limit=MAX_RUNS_IN_FLIGHT + 1,
    )
    in_flight = 0
    for record in runs:
        created = record.create_timestamp
        if created.tzinfo is None:  # storages differ: some return naive UTC
            created = created.replace(tzinfo=dt.UTC)
        in_flight += now - created < STALE_AFTER
    return in_flight


def batch_run_key(rows: Sequence[Sequence], now: dt.datetime) -> str:
    """From the rows' (id, attempts, status_changed_at)."""
    digest = hashlib.sha256(",".join(f"{i}:{a}" for i, a, _ in rows).encode()).hexdigest()[:16]
    newest = max(changed for _, _, changed in rows)
    generation = int((now - newest) / RELAUNCH_AFTER)
    return f"inbox-{rows[0][0]}-{rows[-1][0]}-{digest}-g{generation}"


@dg.sensor(
    job=whop_inbox_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 s: due webhook events → one run per batch of up to 500.",
)
def whop_webhook_sensor(
    context: dg.SensorEvaluationContext, pipeline_db: PipelineDatabase
) -> dg.SensorResult | dg.SkipReason:
    now = dt.datetime.now(dt.UTC)
    in_flight = _inbox_runs_in_flight(context, now)
    if in_flight >= MAX_RUNS_IN_FLIGHT:
        return dg.SkipReason(
            f"{in_flight} inbox runs are in progress; new events go in the next batch"
        )
    previous = int(context.cursor) if context.cursor else 0
    with pipeline_db.engine().connect() as conn:
        due = store.due_rows(
            conn, BATCH_SIZE * MAX_RUNS_PER_TICK, connection=pipeline_db.connection_name, now=now
        )
    if in_flight:  # rows an earlier tick dispatched belong to the run in flight
        due = [row for row in due if row[0] > previous or row[1] > 0]
    if not due:
        return dg.SkipReason("no webhook events are due")
    requests = []
    for start in range(0, len(due), BATCH_SIZE):
        rows = due[start : start + BATCH_SIZE]
        requests.append(
            dg.RunRequest(
                run_key=batch_run_key(rows, now),
                run_config={
                    "ops": {"whop_webhook_inbox": {"config": {"inbox_ids": [r[0] for r in rows]}}}
                },
                tags={INBOX_ROWS_TAG: str(len(rows))},
            )
        )
    # The cursor records the newest row dispatched so far; correctness rests on the inbox's own
    # status columns and the atomic claim, not on it.
    return dg.SensorResult(run_requests=requests, cursor=str(max(previous, due[-1][0])))

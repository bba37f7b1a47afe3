"""``whop_webhook_sensor``: turns due inbox rows into runs of ``whop_inbox_job``.

A tick is one bounded read of the inbox (ids, attempts, status times: no payloads, no API calls).
Each batch gets a deterministic ``run_key`` built from its rows and their attempt counts, so a tick
that sees the same batch again launches nothing, and a retried row (its attempts changed) comes back
under a new key. Claiming in the run is atomic, so two runs never apply the same row.

Each tick works through every connection the schedules would sync (the connections table, read
at every tick, and the environment connection): its due rows become runs tagged with it. Up to
``MAX_RUNS_IN_FLIGHT`` inbox runs per connection exist at once: one applying its batch and one
queued behind it (dagster.yaml runs one run per connection at a time). A tick that finds a
connection's runs in flight dispatches only its rows no earlier tick dispatched (newer than that
connection's cursor) and rows coming back for a retry; with none in flight it dispatches every
due row, so a batch whose run never started is launched again. Claiming in the run is atomic, so
two runs never apply one row. A paused connection's events wait in the inbox until it resumes.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import dagster as dg

from whop_pipeline.inbox import store
from whop_pipeline.inbox.processing import STALE_AFTER
from whop_pipeline.orchestration.jobs import whop_inbox_job
from whop_pipeline.orchestration.schedules import connection_runs_in_flight, due_connections
from whop_pipeline.orchestration.tags import CONNECTION_TAG, INBOX_ROWS_TAG
from whop_pipeline.store.resource import PipelineDatabase

BATCH_SIZE = 500
MAX_RUNS_PER_TICK = 4
MAX_RUNS_IN_FLIGHT = 2
# A batch still unclaimed this long after its rows last changed had a run that never started
# (a crash at launch): the key changes with each such period, so the batch is launched again.
RELAUNCH_AFTER = dt.timedelta(minutes=10)


def _inbox_runs_in_flight(
    context: dg.SensorEvaluationContext, connection: str, now: dt.datetime
) -> int:
    """The connection's inbox runs created recently and not finished (a run stuck longer does not
    count)."""
    runs = connection_runs_in_flight(
        context.instance, connection, whop_inbox_job.name, limit=MAX_RUNS_IN_FLIGHT + 1
    )
    in_flight = 0
    for record in runs:
        created = record.create_timestamp
        if created.tzinfo is None:  # storages differ: some return naive UTC
            created = created.replace(tzinfo=dt.UTC)
        in_flight += now - created < STALE_AFTER
    return in_flight


def batch_run_key(connection: str, rows: Sequence[Sequence], now: dt.datetime) -> str:
    """From the connection and the rows' (id, attempts, status_changed_at)."""
    digest = hashlib.sha256(",".join(f"{i}:{a}" for i, a, _ in rows).encode()).hexdigest()[:16]
    newest = max(changed for _, _, changed in rows)
    generation = int((now - newest) / RELAUNCH_AFTER)
    return f"inbox-{connection}-{rows[0][0]}-{rows[-1][0]}-{digest}-g{generation}"


def read_cursor(raw: str | None) -> dict[str, int]:
    """Newest dispatched inbox id per connection (an older cursor was one id, of ``default``)."""
    if not raw:
        return {}
    if raw.isdigit():
        return {"default": int(raw)}
    return {str(k): int(v) for k, v in json.loads(raw).items()}


@dg.sensor(
    job=whop_inbox_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 s, per active connection: due webhook events → one run per batch of up "
    "to 500, tagged with the connection.",
)
def whop_webhook_sensor(
    context: dg.SensorEvaluationContext, pipeline_db: PipelineDatabase
) -> dg.SensorResult | dg.SkipReason:
    now = dt.datetime.now(dt.UTC)
    cursor = read_cursor(context.cursor)
    requests: list[dg.RunRequest] = []
    waiting: list[str] = []
    for connection in due_connections(pipeline_db):
        in_flight = _inbox_runs_in_flight(context, connection, now)
        if in_flight >= MAX_RUNS_IN_FLIGHT:
            waiting.append(connection)
            continue
        previous = cursor.get(connection, 0)
        with pipeline_db.engine().connect() as conn:
            due = store.due_rows(
                conn, BATCH_SIZE * MAX_RUNS_PER_TICK, connection=connection, now=now
            )
        if in_flight:  # rows an earlier tick dispatched belong to the run in flight
            due = [row for row in due if row[0] > previous or row[1] > 0]
        if not due:
            continue
        for start in range(0, len(due), BATCH_SIZE):
            rows = due[start : start + BATCH_SIZE]
            requests.append(
                dg.RunRequest(
                    run_key=batch_run_key(connection, rows, now),
                    run_config={
                        "ops": {
                            "whop_webhook_inbox": {"config": {"inbox_ids": [r[0] for r in rows]}}
                        }
                    },
                    tags={INBOX_ROWS_TAG: str(len(rows)), CONNECTION_TAG: connection},
                )
            )
        # The cursor records the newest row dispatched so far; correctness rests on the inbox's
        # own status columns and the atomic claim, not on it.
        cursor[connection] = max(previous, due[-1][0])
    if not requests:
        return dg.SkipReason(
            f"inbox runs are in progress for {', '.join(waiting)}; their new events go next"
            if waiting
            else "no webhook events are due"
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

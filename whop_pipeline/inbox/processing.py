"""Process a batch of inbox rows: claim them, apply them to the raw mirror, rebuild the CRM records
those changes reach, push them through the sync's own load call, and record each row's outcome.

Used by the ``whop_webhook_inbox`` asset (the runs the sensor launches, and
``whop-pipeline inbox process``, which runs the same job in-process).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.crm.build import BuildReport, ChangeSet, build_for
from whop_pipeline.health import reading, scoring
from whop_pipeline.inbox import store
from whop_pipeline.inbox.apply import Affected, apply_events
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
    built: BuildReport | None = None
    counts: dict[str, LoadCounts] = field(default_factory=dict)


def push_affected(
    affected: Affected,
    engine: sa.Engine,
    connection: str,
    twenty: TwentyResource,
    run_id: str,
    log: Callable[[str], None],
) -> tuple[BuildReport, dict[str, LoadCounts]]:
    """Rebuild the CRM records the events reach, then load just those that differ from what
    Twenty has, in load order (a record rebuilt unchanged by a retry is still sent if an earlier
    attempt did not land it)."""
    built = build_for(engine, connection, ChangeSet(affected.ids))
    with twenty.load_session(run_id=run_id, engine=engine, connection=connection, log=log) as s:
        counts = s.load_all(keys=built.rebuilt)
        health = rescore_people(affected, engine, connection, log)
        for object_name, keys in health.items():
            if keys:
                counts[object_name] = s.load(object_name, keys=keys)
    return built, counts


def rescore_people(
    affected: Affected, engine: sa.Engine, connection: str, log: Callable[[str], None]
) -> dict[str, list[str]]:
    """Re-score the people the events touched with the stored models; their health records, by
    object. Until the first model is trained (the health jobs) nothing is scored, and a
    scoring failure never fails the batch: the records have landed and the daily score repairs it."""
    with engine.connect() as conn:
        people = reading.people_of(conn, connection, affected.ids)
    if not people:
        return {}
    try:
        report = scoring.score(
            engine,
            connection,
            dt.datetime.now(dt.UTC),
            person_keys=people,
            train_missing=False,
            log=log,
        )
    except scoring.NoModel as exc:
        log(f"health not scored: {exc} (the health_models_job trains it)")
        return {}
    except Exception as exc:  # health is secondary to landing the batch
        log(f"health not scored for {len(people)} people: {type(exc).__name__}: {exc}")
        return {}
    return report.scored


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
        released = store.release_stale(conn, STALE_AFTER, connection=connection)
        if released:
            log(f"released {len(released)} rows whose run died: {released[:10]}")
        report.claimed = store.claim(conn, ids, run_key, run_id, connection=connection)
    if not report.claimed:
        log(f"none of {len(ids)} rows were left to claim (another run took them)")
        return report
    with engine.connect() as conn:
        rows = store.get_events(conn, report.claimed, connection=connection)
    try:
        with whop.client(on_retry=log) as client:
            affected = apply_events(rows, engine, connection, client)
        report.built, report.counts = push_affected(
            affected, engine, connection, twenty, run_id, log
        )
    except Exception as exc:
        # Nothing is lost: the rows go back as failed and a later batch retries them.
        with engine.begin() as conn:
            store.mark_failed(conn, report.claimed, exc, run_key=run_key, connection=connection)
        raise
    report.affected = affected
    report.failed = affected.failed
    report.ignored = len(affected.ignored)
    with engine.begin() as conn:
        for row_id, error in affected.failed.items():
            store.mark_failed(conn, [row_id], error, run_key=run_key, connection=connection)
        report.done = store.mark_done(
            conn,
            [i for i in report.claimed if i not in affected.failed],
            run_key=run_key,
            connection=connection,
        )
    return report

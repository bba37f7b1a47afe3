"""A connection's sync history on its ``connections`` row: the last sync's run, start, end,
outcome, records written and error, as `whop-pipeline connections list` and the freshness check
read them. Written by the CLI's in-process syncs, the load assets and the daemon's run status
sensors."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from whop_pipeline.store.tables import connections


def record_sync_start(conn: sa.Connection, name: str, run_id: str, now: dt.datetime) -> None:
    conn.execute(
        sa.update(connections)
        .where(connections.c.name == name, connections.c.last_sync_run_id.is_distinct_from(run_id))
        .values(
            last_sync_run_id=run_id,
            last_sync_started_at=now,
            last_sync_finished_at=None,
            last_sync_outcome="running",
            last_sync_written=0,
        )
    )


def record_written(conn: sa.Connection, name: str, run_id: str, written: int) -> None:
    if written:
        conn.execute(
            sa.update(connections)
            .where(connections.c.name == name, connections.c.last_sync_run_id == run_id)
            .values(
                last_sync_written=sa.func.coalesce(connections.c.last_sync_written, 0) + written
            )
        )


def record_sync_end(
    conn: sa.Connection,
    name: str,
    run_id: str,
    *,
    succeeded: bool,
    error: str | None,
    now: dt.datetime,
    started_at: dt.datetime | None = None,
) -> None:
    """The run's outcome; a success clears the last error and revives a connection that needed
    re-authentication."""
    values: dict[str, object] = {
        "last_sync_run_id": run_id,
        "last_sync_finished_at": now,
        "last_sync_outcome": "success" if succeeded else "failure",
    }
    if started_at is not None:
        values["last_sync_started_at"] = started_at
    if succeeded:
        values |= {"last_success_at": now, "last_error": None}
    elif error:
        values["last_error"] = error[:2000]
    conn.execute(sa.update(connections).where(connections.c.name == name).values(values))
    if succeeded:
        conn.execute(
            sa.update(connections)
            .where(connections.c.name == name, connections.c.status == "needs_reauth")
            .values(status="active")
        )

"""``sync_state`` (what was last written to Twenty, by source key) and ``sync_errors`` (rows that
were rejected or could not be sent yet, with the reason; retried on the next run)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store.database import in_chunks, upsert_statement
from whop_pipeline.store.tables import sync_errors, sync_state


@dataclass(frozen=True)
class SyncedRecord:
    source_key: str
    twenty_id: str
    content_hash: str


def read_state(
    conn: sa.Connection, connection: str, object_name: str, keys: Iterable[str] | None = None
) -> dict[str, SyncedRecord]:
    """State rows of one object, for ``keys`` (or all)."""
    query = sa.select(
        sync_state.c.source_key, sync_state.c.twenty_id, sync_state.c.content_hash
    ).where(sync_state.c.connection == connection, sync_state.c.object_name == object_name)
    if keys is None:
        rows = conn.execute(query).all()
    else:
        wanted = sorted(set(keys))
        rows = [
            row
            for chunk in in_chunks(wanted)
            for row in conn.execute(query.where(sync_state.c.source_key.in_(chunk)))
        ]
    return {row.source_key: SyncedRecord(*row) for row in rows}


def write_state(
    conn: sa.Connection, connection: str, object_name: str, records: Sequence[SyncedRecord]
) -> None:
    if not records:
        return
    now = dt.datetime.now(dt.UTC)
    statement = upsert_statement(conn, sync_state)
    statement = statement.on_conflict_do_update(
        index_elements=["connection", "object_name", "source_key"],
        set_={
            "twenty_id": statement.excluded.twenty_id,
            "content_hash": statement.excluded.content_hash,
            "synced_at": statement.excluded.synced_at,
        },
    )
    conn.execute(
        statement,
        [
            {
                "connection": connection,
                "object_name": object_name,
                "source_key": r.source_key,
                "twenty_id": r.twenty_id,
                "content_hash": r.content_hash,
                "synced_at": now,
            }
            for r in records
        ],
    )


def record_error(
    conn: sa.Connection,
    connection: str,
    object_name: str,
    source_key: str,
    error: str,
    payload: dict[str, Any] | None,
) -> None:
    """Open (or re-open) the error of one row; ``attempts`` counts consecutive failures."""
    now = dt.datetime.now(dt.UTC)
    statement = upsert_statement(conn, sync_errors).values(
        connection=connection,
        object_name=object_name,
        source_key=source_key,
        error=error[:4000],
        payload=payload,
        attempts=1,
        first_failed_at=now,
        last_failed_at=now,
        resolved_at=None,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["connection", "object_name", "source_key"],
            set_={
                "error": statement.excluded.error,
                "payload": statement.excluded.payload,
                "last_failed_at": statement.excluded.last_failed_at,
                "resolved_at": None,
                # A failure after a success starts a new count.
                "attempts": sa.case(
                    (sync_errors.c.resolved_at.is_(None), sync_errors.c.attempts + 1), else_=1
                ),
                "first_failed_at": sa.case(
                    (sync_errors.c.resolved_at.is_(None), sync_errors.c.first_failed_at),
                    else_=statement.excluded.first_failed_at,
                ),
            },
        )
    )


def resolve_errors(
    conn: sa.Connection, connection: str, object_name: str, keys: Sequence[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    for chunk in in_chunks(list(keys)):
        conn.execute(
            sa.update(sync_errors)
            .where(
                sync_errors.c.connection == connection,
                sync_errors.c.object_name == object_name,
                sync_errors.c.source_key.in_(chunk),
                sync_errors.c.resolved_at.is_(None),
            )
            .values(resolved_at=now)
        )

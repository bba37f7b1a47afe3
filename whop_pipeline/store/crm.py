"""CRM records: what the transform built for Twenty, per connection, object and source key, with the
digest the loader compares against ``sync_state``. "What would be sent to Twenty" is a query:

    SELECT record FROM crm_records c LEFT JOIN sync_state s
      ON s.connection = c.connection AND s.object_name = c.object_name
     AND s.source_key = c.record_key
     WHERE c.connection = 'default' AND c.object_name = 'people'
       AND (s.content_hash IS NULL OR s.content_hash <> c.digest);
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store.database import in_chunks, upsert_statement
from whop_pipeline.store.raw import content_hash
from whop_pipeline.store.tables import crm_builds, crm_records, mirror_changes, sync_state


def record_digest(record: dict[str, Any], links: dict[str, Any] | None = None) -> str:
    """What the loader compares with ``sync_state``: the record, and its relations by source key
    (a record with no relations digests exactly as the record Twenty receives)."""
    return content_hash(record if not links else {"record": record, "links": links})


@dataclass(frozen=True)
class CrmRecord:
    """One record as the transform built it. ``links`` name related records by source key."""

    key: str
    record: dict[str, Any]
    digest: str
    person_key: str | None = None
    email: str | None = None
    day: str | None = None
    links: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadCandidate:
    """A CRM record whose digest differs from what was last written to Twenty."""

    key: str
    record: dict[str, Any]
    links: dict[str, Any] | None
    digest: str
    synced_hash: str | None  # None: never written


def _scope(connection: str, object_name: str):
    return sa.and_(crm_records.c.connection == connection, crm_records.c.object_name == object_name)


def stored_digests(
    conn: sa.Connection, connection: str, object_name: str, keys: Collection[str]
) -> dict[str, tuple[str, str | None]]:
    """Key → (digest, email) of stored records among ``keys``."""
    found: dict[str, tuple[str, str | None]] = {}
    query = sa.select(crm_records.c.record_key, crm_records.c.digest, crm_records.c.email).where(
        _scope(connection, object_name)
    )
    for chunk in in_chunks(sorted(set(keys))):
        for row in conn.execute(query.where(crm_records.c.record_key.in_(chunk))):
            found[row.record_key] = (row.digest, row.email)
    return found


def write_records(
    conn: sa.Connection, connection: str, object_name: str, records: Sequence[CrmRecord]
) -> list[str]:
    """Store ``records``; a record whose digest changed (or that is new) becomes load-pending.
    Returns the keys of those records; an unchanged record is not written at all."""
    stored = stored_digests(conn, connection, object_name, [r.key for r in records])
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "connection": connection,
            "object_name": object_name,
            "record_key": r.key,
            "person_key": r.person_key,
            "email": r.email,
            "day": r.day,
            "record": r.record,
            "links": r.links,
            "digest": r.digest,
            "load_pending": True,
            "built_at": now,
        }
        for r in records
        if r.key not in stored or stored[r.key][0] != r.digest
    ]
    for chunk in in_chunks(rows):
        statement = upsert_statement(conn, crm_records)
        excluded = statement.excluded
        keep = ("connection", "object_name", "record_key")
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=list(keep),
                set_={c.name: excluded[c.name] for c in crm_records.columns if c.name not in keep},
            ),
            list(chunk),
        )
    return [row["record_key"] for row in rows]


def keys_where(
    conn: sa.Connection,
    connection: str,
    object_name: str,
    column: str,
    values: Collection[str],
) -> set[str]:
    """Record keys of ``object_name`` whose ``column`` (``person_key`` or ``email``) is in
    ``values``: the records a change to those people or emails reaches."""
    found: set[str] = set()
    query = sa.select(crm_records.c.record_key).where(_scope(connection, object_name))
    for chunk in in_chunks(sorted({v for v in values if v})):
        found.update(conn.execute(query.where(crm_records.c[column].in_(chunk))).scalars())
    return found


def iter_records(
    conn: sa.Connection, connection: str, object_name: str, chunk: int = 1_000
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every stored (key, record) of ``object_name``, ``chunk`` rows per query (keyset on key)."""
    last = ""
    query = sa.select(crm_records.c.record_key, crm_records.c.record).where(
        _scope(connection, object_name)
    )
    while True:
        rows = conn.execute(
            query.where(crm_records.c.record_key > last)
            .order_by(crm_records.c.record_key)
            .limit(chunk)
        ).all()
        yield from ((row.record_key, row.record) for row in rows)
        if len(rows) < chunk:
            return
        last = rows[-1].record_key


def count_records(conn: sa.Connection, connection: str, object_name: str) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(crm_records).where(_scope(connection, object_name))
    ).scalar_one()


def _candidates_query(connection: str, object_name: str, *, full: bool):
    state = sync_state.alias("state")
    joined = crm_records.outerjoin(
        state,
        sa.and_(
            state.c.connection == crm_records.c.connection,
            state.c.object_name == crm_records.c.object_name,
            state.c.source_key == crm_records.c.record_key,
        ),
    )
    query = (
        sa.select(
            crm_records.c.record_key,
            crm_records.c.record,
            crm_records.c.links,
            crm_records.c.digest,
            state.c.content_hash,
        )
        .select_from(joined)
        .where(
            _scope(connection, object_name),
            sa.or_(state.c.content_hash.is_(None), state.c.content_hash != crm_records.c.digest),
        )
        .order_by(crm_records.c.record_key)
    )
    # An incremental load reads only the records rebuilt since they were last loaded (an index
    # range); a full load compares every record with sync_state (catches a reset state, too).
    return query if full else query.where(crm_records.c.load_pending.is_(True))


def iter_candidates(
    engine: sa.Engine,
    connection: str,
    object_name: str,
    *,
    full: bool = False,
    keys: Collection[str] | None = None,
    chunk: int = 10_000,
) -> Iterator[list[LoadCandidate]]:
    """The records to send, in key order, a page of at most ``chunk`` records of the object at a
    time (keyset pages: the loader writes ``sync_state`` between pages, and memory holds one page).
    Each page is a key range first, then the diff inside it, so every query joins at most
    ``chunk`` records whatever the planner thinks of the tables' sizes. ``keys`` narrows to those
    records."""
    query = _candidates_query(connection, object_name, full=full)
    if keys is not None:
        for key_chunk in in_chunks(sorted(set(keys)), size=min(chunk, 500)):
            with engine.connect() as conn:
                rows = conn.execute(query.where(crm_records.c.record_key.in_(key_chunk))).all()
            if rows:
                yield [LoadCandidate(*row) for row in rows]
        return
    page_keys = sa.select(crm_records.c.record_key).where(_scope(connection, object_name))
    if not full:
        page_keys = page_keys.where(crm_records.c.load_pending.is_(True))
    page_keys = page_keys.order_by(crm_records.c.record_key).limit(chunk)
    after: str | None = None
    while True:
        with engine.connect() as conn:
            bounded = (
                page_keys if after is None else page_keys.where(crm_records.c.record_key > after)
            )
            range_keys = conn.execute(bounded).scalars().all()
            if not range_keys:
                return
            in_range = query.where(crm_records.c.record_key <= range_keys[-1])
            if after is not None:
                in_range = in_range.where(crm_records.c.record_key > after)
            rows = conn.execute(in_range).all()
        if rows:
            yield [LoadCandidate(*row) for row in rows]
        after = range_keys[-1]
        if len(range_keys) < chunk:
            return


def mark_loaded(
    conn: sa.Connection, connection: str, object_name: str, loaded: Sequence[tuple[str, str]]
) -> None:
    """Clear ``load_pending`` of records sent as (key, digest), unless rebuilt since."""
    if loaded:
        conn.execute(
            sa.update(crm_records)
            .where(
                _scope(connection, object_name),
                crm_records.c.record_key == sa.bindparam("k"),
                crm_records.c.digest == sa.bindparam("d"),
            )
            .values(load_pending=False),
            [{"k": key, "d": digest} for key, digest in loaded],
        )


def settle_pending(conn: sa.Connection, connection: str, object_name: str) -> int:
    """Clear ``load_pending`` of records whose digest Twenty already has (rebuilt to the same
    content, or written by a run that stopped before it could clear the flag)."""
    state = sync_state
    already = (
        sa.select(state.c.source_key)
        .where(
            state.c.connection == connection,
            state.c.object_name == object_name,
            state.c.source_key == crm_records.c.record_key,
            state.c.content_hash == crm_records.c.digest,
        )
        .exists()
    )
    return conn.execute(
        sa.update(crm_records)
        .where(_scope(connection, object_name), crm_records.c.load_pending.is_(True), already)
        .values(load_pending=False)
    ).rowcount


# --- the change queue and the mapping version ----------------------------------------------------


def next_changes(conn: sa.Connection, connection: str, limit: int) -> list[sa.Row]:
    """The oldest ``limit`` queued mirror changes: (id, object_name, object_id)."""
    return conn.execute(
        sa.select(mirror_changes.c.id, mirror_changes.c.object_name, mirror_changes.c.object_id)
        .where(mirror_changes.c.connection == connection)
        .order_by(mirror_changes.c.id)
        .limit(limit)
    ).all()


def changes_for(
    conn: sa.Connection, connection: str, object_name: str, ids: Collection[str]
) -> list[int]:
    """Queue ids of the changes to these mirror rows (a webhook run consumes its own)."""
    found: list[int] = []
    query = sa.select(mirror_changes.c.id).where(
        mirror_changes.c.connection == connection, mirror_changes.c.object_name == object_name
    )
    for chunk in in_chunks(sorted(set(ids))):
        found.extend(conn.execute(query.where(mirror_changes.c.object_id.in_(chunk))).scalars())
    return found


def consume_changes(conn: sa.Connection, connection: str, change_ids: Sequence[int]) -> None:
    for chunk in in_chunks(list(change_ids)):
        conn.execute(
            sa.delete(mirror_changes).where(
                mirror_changes.c.connection == connection, mirror_changes.c.id.in_(chunk)
            )
        )


def queued_changes(conn: sa.Connection, connection: str) -> int:
    return conn.execute(
        sa.select(sa.func.count())
        .select_from(mirror_changes)
        .where(mirror_changes.c.connection == connection)
    ).scalar_one()


def built_version(conn: sa.Connection, connection: str) -> str | None:
    return conn.execute(
        sa.select(crm_builds.c.mapping_version).where(crm_builds.c.connection == connection)
    ).scalar_one_or_none()


def set_built_version(conn: sa.Connection, connection: str, version: str) -> None:
    statement = upsert_statement(conn, crm_builds).values(
        connection=connection, mapping_version=version, built_at=dt.datetime.now(dt.UTC)
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["connection"],
            set_={"mapping_version": version, "built_at": statement.excluded.built_at},
        )
    )

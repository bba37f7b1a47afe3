"""The raw mirror: the latest JSON of each Whop object, upserted page by page, last-write-wins on
``updated_at`` (so a list read never overwrites a newer webhook copy, and vice versa).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store.database import in_chunks, upsert_statement
from whop_pipeline.store.tables import RAW_TABLES, mirror_changes


def content_hash(payload: Any) -> str:
    """Stable SHA-256 of a JSON value (key order and whitespace do not matter)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RawRecord:
    id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    payload: dict[str, Any]
    links: dict[str, str | None] = field(default_factory=dict)


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # an older copy than the one stored: ignored

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.stale += other.stale

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def upsert_raw(
    conn: sa.Connection,
    object_name: str,
    connection_name: str,
    records: Sequence[RawRecord],
    *,
    extracted_at: dt.datetime | None = None,
) -> UpsertCounts:
    """Upsert one page of objects. Counts are exact for this call; the write itself is guarded in
    SQL too (``WHERE stored.updated_at <= new.updated_at``), so a concurrent newer write wins."""
    table = RAW_TABLES[object_name]
    counts = UpsertCounts()
    if not records:
        return counts
    extracted_at = extracted_at or dt.datetime.now(dt.UTC)
    # A page can repeat an id (overlapping windows): keep the newest copy.
    newest: dict[str, RawRecord] = {}
    for record in records:
        current = newest.get(record.id)
        if current is None or record.updated_at >= current.updated_at:
            newest[record.id] = record
        else:
            counts.stale += 1
    stored = {
        row.id: row
        for row in conn.execute(
            sa.select(table.c.id, table.c.updated_at, table.c.payload_hash).where(
                table.c.connection == connection_name, table.c.id.in_(list(newest))
            )
        )
    }
    rows = []
    for record in newest.values():
        digest = content_hash(record.payload)
        previous = stored.get(record.id)
        if previous is None:
            counts.inserted += 1
        elif previous.payload_hash == digest:
            counts.unchanged += 1
            continue
        elif previous.updated_at > record.updated_at:
            counts.stale += 1
            continue
        else:
            counts.updated += 1
        rows.append(
            {
                "connection": connection_name,
                "id": record.id,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "payload": record.payload,
                "payload_hash": digest,
                "extracted_at": extracted_at,
                **record.links,
            }
        )
    if rows:
        statement = upsert_statement(conn, table)
        excluded = statement.excluded
        update_columns = {
            c.name: excluded[c.name] for c in table.columns if c.name not in ("connection", "id")
        }
        statement = statement.on_conflict_do_update(
            index_elements=["connection", "id"],
            set_=update_columns,
            where=table.c.updated_at <= excluded.updated_at,
        )
        conn.execute(statement, rows)
        # Same transaction: a written row is never without its change, so the transform sees it.
        record_changes(conn, object_name, connection_name, [row["id"] for row in rows])
    return counts


def record_changes(
    conn: sa.Connection, object_name: str, connection_name: str, ids: Sequence[str]
) -> None:
    """Queue mirror rows for the transform (``mirror_changes``)."""
    if ids:
        conn.execute(
            sa.insert(mirror_changes),
            [
                {"connection": connection_name, "object_name": object_name, "object_id": i}
                for i in ids
            ],
        )


def queue_everything(conn: sa.Connection, connection_name: str) -> int:
    """Queue every mirror row of the connection (a rebuild of all CRM records), in SQL, replacing
    what was queued: each row once. A write committed after this replaces the queue keeps its own
    change row, so nothing is lost."""
    conn.execute(sa.delete(mirror_changes).where(mirror_changes.c.connection == connection_name))
    queued = 0
    for object_name, table in RAW_TABLES.items():
        queued += conn.execute(
            sa.insert(mirror_changes).from_select(
                ["connection", "object_name", "object_id"],
                sa.select(table.c.connection, sa.literal(object_name), table.c.id).where(
                    table.c.connection == connection_name
                ),
            )
        ).rowcount
    return queued


def ids_where(
    conn: sa.Connection,
    connection_name: str,
    object_name: str,
    columns: Sequence[str],
    values: Iterable[str],
) -> set[str]:
    """Ids of the mirror rows of ``object_name`` whose ``columns`` (any of them) hold one of
    ``values``: e.g. the memberships of some people, by ``user_id`` and ``member_id``."""
    table = RAW_TABLES[object_name]
    wanted = sorted(set(values))
    ids: set[str] = set()
    for column in columns:
        query = sa.select(table.c.id).where(table.c.connection == connection_name)
        for chunk in in_chunks(wanted):
            ids.update(conn.execute(query.where(table.c[column].in_(chunk))).scalars())
    return ids


def person_keys_of(
    conn: sa.Connection, connection_name: str, object_name: str, ids: Iterable[str]
) -> set[str]:
    """The CRM person keys (the user id, else the member id) of mirror members, memberships or
    payments ``ids``."""
    table = RAW_TABLES[object_name]
    member = table.c.id if object_name == "members" else table.c.member_id
    query = sa.select(table.c.user_id, member).where(table.c.connection == connection_name)
    keys: set[str] = set()
    for chunk in in_chunks(sorted(ids)):
        for user_id, member_id in conn.execute(query.where(table.c.id.in_(chunk))):
            if user_id or member_id:
                keys.add(user_id or member_id)
    return keys


def read_raw(
    conn: sa.Connection,
    object_name: str,
    connection_name: str,
    *,
    created_from: dt.datetime | None = None,
    created_to: dt.datetime | None = None,
    ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Payloads of one object type, optionally within ``[created_from, created_to)`` or by id."""
    table = RAW_TABLES[object_name]
    query = sa.select(table.c.payload).where(table.c.connection == connection_name)
    if created_from is not None:
        query = query.where(table.c.created_at >= created_from)
    if created_to is not None:
        query = query.where(table.c.created_at < created_to)
    if ids is not None:
        id_list = list(ids)
        if not id_list:
            return []
        payloads: list[dict[str, Any]] = []
        for chunk in in_chunks(id_list):
            payloads.extend(conn.execute(query.where(table.c.id.in_(chunk))).scalars())
        return payloads
    return list(conn.execute(query.order_by(table.c.created_at, table.c.id)).scalars())


def count_raw(conn: sa.Connection, object_name: str, connection_name: str) -> int:
    table = RAW_TABLES[object_name]
    return conn.execute(
        sa.select(sa.func.count()).select_from(table).where(table.c.connection == connection_name)
    ).scalar_one()


def newest_member(conn: sa.Connection, connection_name: str) -> dt.datetime | None:
    """``created_at`` of the newest member in the mirror: new members are those created after."""
    table = RAW_TABLES["members"]
    return conn.execute(
        sa.select(sa.func.max(table.c.created_at)).where(table.c.connection == connection_name)
    ).scalar_one()

"""Reading a connection's mirror for customer health a group of people at a time.

Every fact, score and training row of a person reads only that person's memberships and payments
(and the plans), so the work splits by person: ``frames_by_people`` yields the frames of
``PEOPLE_CHUNK`` people at a time, and memory holds one group's history, not the account's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.health.facts import Frames, memberships_frame, payments_frame, plans_frame
from whop_pipeline.store.raw import ids_where, person_keys_of, read_raw
from whop_pipeline.store.tables import raw_memberships, raw_payments

PEOPLE_CHUNK = 2_000
PERSON_TABLES = {"members", "memberships", "payments"}


def _key(user_id: str | None, member_id: str | None) -> str | None:
    return user_id or member_id


def people_of(conn: sa.Connection, connection: str, ids: dict[str, set[str]]) -> set[str]:
    """Person keys of mirror members, memberships and payments (``ids`` by mirror table)."""
    keys: set[str] = set()
    for object_name in PERSON_TABLES:
        if ids.get(object_name):
            keys |= person_keys_of(conn, connection, object_name, ids[object_name])
    return keys


def all_people(conn: sa.Connection, connection: str, created_to: dt.datetime) -> list[str]:
    """Every person with a membership or payment created by ``created_to``, sorted."""
    keys: set[str] = set()
    for table in (raw_memberships, raw_payments):
        query = sa.select(table.c.user_id, table.c.member_id).where(
            table.c.connection == connection, table.c.created_at <= created_to
        )
        keys.update(
            k for user_id, member_id in conn.execute(query) if (k := _key(user_id, member_id))
        )
    return sorted(keys)


def first_created(conn: sa.Connection, connection: str) -> dt.datetime | None:
    """When the connection's history starts: its first membership or payment."""
    firsts = [
        conn.execute(
            sa.select(sa.func.min(table.c.created_at)).where(table.c.connection == connection)
        ).scalar()
        for table in (raw_memberships, raw_payments)
    ]
    found = [moment for moment in firsts if moment is not None]
    return min(found) if found else None


def frames_of_people(
    conn: sa.Connection,
    connection: str,
    keys: Collection[str],
    *,
    plans: pd.DataFrame | None = None,
    created_to: dt.datetime | None = None,
) -> Frames:
    """The memberships and payments of the people ``keys`` (created by ``created_to``) and every
    plan: what their facts read, and nothing else."""
    wanted = sorted(set(keys))

    def frame(object_name: str, to_frame) -> pd.DataFrame:
        ids = sorted(ids_where(conn, connection, object_name, ["user_id", "member_id"], wanted))
        framed = to_frame(read_raw(conn, object_name, connection, ids=ids) if ids else [])
        framed = framed[framed["person_key"].isin(set(wanted))]
        if created_to is not None:
            framed = framed[framed["created_at"] <= pd.Timestamp(created_to)]
        return framed.reset_index(drop=True)

    return Frames(
        memberships=frame("memberships", memberships_frame),
        payments=frame("payments", payments_frame),
        plans=plans if plans is not None else plans_frame(read_raw(conn, "plans", connection)),
    )


def frames_by_people(
    engine: sa.Engine,
    connection: str,
    created_to: dt.datetime,
    *,
    keys: Collection[str] | None = None,
    chunk: int | None = None,
) -> Iterator[Frames]:
    """The frames of ``chunk`` people at a time: every person with history by ``created_to``, or
    those of ``keys``. A group's rows are read in one transaction; memory holds one group."""
    with engine.connect() as conn:
        people = sorted(set(keys)) if keys is not None else all_people(conn, connection, created_to)
        plans = plans_frame(read_raw(conn, "plans", connection))
    chunk = chunk or PEOPLE_CHUNK
    for start in range(0, len(people), chunk):
        with engine.connect() as conn:
            yield frames_of_people(
                conn, connection, people[start : start + chunk], plans=plans, created_to=created_to
            )

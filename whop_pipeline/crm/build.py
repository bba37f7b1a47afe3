"""Build CRM records from the mirror rows that changed: the transform's work follows the change queue
(``mirror_changes``), so an incremental run rebuilds a few records, not the account.

A change reaches every record that reads it:

| mirror row changed | records rebuilt |
|---|---|
| member | its person, the people sharing its email (old or new), the opportunities naming it |
| product | its whopProduct; when that changed, the notes of its payments (titles name it) |
| membership | its opportunity |
| payment | its note and targets, its person (its email and user stand in for a missing member's) |

The frames come from the pure functions in ``frames``, a chunk of at most ``CHANGE_CHUNK`` changes
at a time; each chunk's records and the consumption of its changes commit together, so a crash
rebuilds that chunk again and nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.crm import frames
from whop_pipeline.crm import records as crm_rows
from whop_pipeline.crm.mapping import member_person_key
from whop_pipeline.store import crm as store
from whop_pipeline.store.database import ANALYZE_AFTER_ROWS, analyze, in_chunks
from whop_pipeline.store.raw import ids_where, person_keys_of, queue_everything, read_raw
from whop_pipeline.store.tables import crm_records, raw_members, raw_payments

# Bump when a mapping rule changes what a record holds: every connection's records are rebuilt once.
MAPPING_VERSION = "2026-12-06"
# The Twenty objects in load order: a record's relations are loaded before it.
OBJECTS = ("people", "whopProducts", "opportunities", "notes", "noteTargets")
# Changes built per transaction. A payment's JSON is several kilobytes once parsed, so a chunk of
# payments is the transform's peak memory (and Python keeps its high-water mark): 2,500 keeps the
# whole sync's peak flat and far below 300 MB on an account of any size.
CHANGE_CHUNK = 2_500


@dataclass
class ChangeSet:
    """Mirror ids that changed, by mirror table."""

    ids: dict[str, set[str]] = field(default_factory=dict)

    def add(self, object_name: str, object_id: str) -> None:
        self.ids.setdefault(object_name, set()).add(object_id)

    def __getitem__(self, object_name: str) -> set[str]:
        return self.ids.get(object_name, set())

    def __len__(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


@dataclass
class BuildReport:
    """Records rebuilt and records whose content changed (now load-pending), per object. Keys are
    kept only with ``keep_keys`` (a webhook batch loads exactly those); a long build counts."""

    keep_keys: bool = False
    rebuilt: dict[str, set[str]] = field(default_factory=lambda: {o: set() for o in OBJECTS})
    rebuilt_count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OBJECTS, 0))
    changed_count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OBJECTS, 0))
    changes_consumed: int = 0
    full_rebuild: bool = False

    def add(self, object_name: str, rebuilt: list[str], changed: list[str]) -> None:
        self.rebuilt_count[object_name] += len(rebuilt)
        self.changed_count[object_name] += len(changed)
        if self.keep_keys:
            self.rebuilt[object_name].update(rebuilt)


def _people_with_member_email(conn: sa.Connection, connection: str, keys: set[str]) -> set[str]:
    found: set[str] = set()
    query = sa.select(raw_members.c.user_id, raw_members.c.id).where(
        raw_members.c.connection == connection, raw_members.c.email.is_not(None)
    )
    for column in (raw_members.c.user_id, raw_members.c.id):
        for chunk in in_chunks(sorted(keys)):
            for user_id, member_id in conn.execute(query.where(column.in_(chunk))):
                found.add(user_id or member_id)
    return found


def _built_notes_of_products(conn: sa.Connection, connection: str, products: set[str]) -> set[str]:
    """Payments of ``products`` whose notes are built (a note not built yet gets the title then)."""
    notes = crm_records
    query = (
        sa.select(raw_payments.c.id)
        .join(
            notes,
            sa.and_(
                notes.c.connection == raw_payments.c.connection,
                notes.c.object_name == "notes",
                notes.c.record_key == raw_payments.c.id,
            ),
        )
        .where(raw_payments.c.connection == connection)
    )
    found: set[str] = set()
    for chunk in in_chunks(sorted(products)):
        found.update(conn.execute(query.where(raw_payments.c.product_id.in_(chunk))).scalars())
    return found


def _members_of(conn: sa.Connection, connection: str, person_keys: set[str]) -> list[dict]:
    ids = ids_where(conn, connection, "members", ["user_id", "id"], person_keys)
    return read_raw(conn, "members", connection, ids=sorted(ids))


def _people_frame(conn: sa.Connection, connection: str, keys: set[str]) -> pd.DataFrame:
    """The people of ``keys``, computed from their members and payments. Payments are read only
    for people whose member has no email, or who have no member yet."""
    members = _members_of(conn, connection, keys)
    with_email = {member_person_key(m) for m in members if m.get("email")}
    payer_ids = ids_where(conn, connection, "payments", ["user_id", "member_id"], keys - with_email)
    frame = frames.people_frame(
        members, read_raw(conn, "payments", connection, ids=sorted(payer_ids))
    )
    return frame[frame["_key"].isin(keys)].reset_index(drop=True)


def build_people(
    conn: sa.Connection, connection: str, keys: set[str]
) -> tuple[list[str], list[str]]:
    """Rebuild ``keys`` and every person sharing an email with them, before or after the change:
    who keeps a shared email as primary depends on all of its holders."""
    if not keys:
        return [], []
    frame = _people_frame(conn, connection, keys)
    emails = {r.email for r in crm_rows.people_records(frame)}
    emails |= {
        email for _digest, email in store.stored_digests(conn, connection, "people", keys).values()
    }
    neighbours = store.keys_where(conn, connection, "people", "email", emails) - keys
    if neighbours:
        frame = _people_frame(conn, connection, keys | neighbours)
    records = crm_rows.people_records(frame)
    return [r.key for r in records], store.write_records(conn, connection, "people", records)


def build_products(
    conn: sa.Connection, connection: str, ids: set[str]
) -> tuple[list[str], list[str]]:
    records = crm_rows.product_records(
        frames.products_frame(read_raw(conn, "products", connection, ids=sorted(ids)))
    )
    return [r.key for r in records], store.write_records(conn, connection, "whopProducts", records)


def build_opportunities(
    conn: sa.Connection, connection: str, ids: set[str]
) -> tuple[list[str], list[str]]:
    memberships = read_raw(conn, "memberships", connection, ids=sorted(ids))
    person_keys = {k for m in memberships if (k := frames.membership_person_key(m))}
    names = frames.person_names(_members_of(conn, connection, person_keys))
    records = crm_rows.opportunity_records(
        frames.opportunities_frame(memberships, names, connection)
    )
    return [r.key for r in records], store.write_records(conn, connection, "opportunities", records)


def build_payments(
    conn: sa.Connection, connection: str, ids: set[str]
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """Notes and note targets of payments ``ids``."""
    payments = read_raw(conn, "payments", connection, ids=sorted(ids))
    titles = {p["id"]: p.get("title") or p["id"] for p in read_raw(conn, "products", connection)}
    notes = crm_rows.note_records(frames.notes_frame(payments, titles, connection))
    targets = crm_rows.note_target_records(frames.note_targets_frame(payments, connection))
    return (
        ([r.key for r in notes], store.write_records(conn, connection, "notes", notes)),
        ([r.key for r in targets], store.write_records(conn, connection, "noteTargets", targets)),
    )


def build_changes(conn: sa.Connection, connection: str, changes: ChangeSet, report: BuildReport):
    """Rebuild every record the changed mirror rows reach (see the module's table)."""
    member_people = person_keys_of(conn, connection, "members", changes["members"])
    payer_people = person_keys_of(conn, connection, "payments", changes["payments"])
    # A payment shapes its person only without a member email (its customer_email stands in)
    # or without a member at all (its user does).
    payer_people -= _people_with_member_email(conn, connection, payer_people)
    report.add("people", *build_people(conn, connection, member_people | payer_people))
    retitled: list[str] = []
    if changes["products"]:
        rebuilt, retitled = build_products(conn, connection, changes["products"])
        report.add("whopProducts", rebuilt, retitled)
    memberships = set(changes["memberships"])
    memberships |= store.keys_where(conn, connection, "opportunities", "person_key", member_people)
    if memberships:
        report.add("opportunities", *build_opportunities(conn, connection, memberships))
    payments = set(changes["payments"])
    if retitled:  # a product whose record changed (its title) reaches its payments' built notes
        payments |= _built_notes_of_products(conn, connection, set(retitled))
    ordered = sorted(payments)
    for start in range(0, len(ordered), CHANGE_CHUNK):
        notes, targets = build_payments(
            conn, connection, set(ordered[start : start + CHANGE_CHUNK])
        )
        report.add("notes", *notes)
        report.add("noteTargets", *targets)


def build_queued(
    engine: sa.Engine,
    connection: str,
    *,
    rebuild: bool = False,
    progress: Callable[[str], None] = lambda _message: None,
) -> BuildReport:
    """Consume the connection's change queue a chunk at a time. With ``rebuild``, or when the
    records were built by another mapping version, every mirror row is queued first."""
    report = BuildReport()
    with engine.begin() as conn:
        if rebuild or store.built_version(conn, connection) != MAPPING_VERSION:
            queued = queue_everything(conn, connection)
            store.set_built_version(conn, connection, MAPPING_VERSION)
            report.full_rebuild = True
            progress(f"rebuilding every CRM record: {queued} mirror rows queued")
    while True:
        with engine.begin() as conn:
            rows = store.next_changes(conn, connection, CHANGE_CHUNK)
            if not rows:
                if report.changes_consumed >= ANALYZE_AFTER_ROWS:
                    analyze(conn, "crm_records", "mirror_changes")
                return report
            changes = ChangeSet()
            for _id, object_name, object_id in rows:
                changes.add(object_name, object_id)
            build_changes(conn, connection, changes, report)
            store.consume_changes(conn, connection, [row.id for row in rows])
        report.changes_consumed += len(rows)
        progress(f"{report.changes_consumed} mirror changes built into CRM records")


def build_for(engine: sa.Engine, connection: str, changes: ChangeSet) -> BuildReport:
    """Rebuild what ``changes`` reach and consume their queued changes (a webhook batch): reads
    only the rows those changes touch. The queue rows are picked before the mirror is read, so a
    change committed meanwhile stays queued for the next build."""
    report = BuildReport(keep_keys=True)
    with engine.begin() as conn:
        consumed: list[int] = []
        for object_name, ids in changes.ids.items():
            consumed.extend(store.changes_for(conn, connection, object_name, ids))
        build_changes(conn, connection, changes, report)
        store.consume_changes(conn, connection, consumed)
    report.changes_consumed = len(consumed)
    return report

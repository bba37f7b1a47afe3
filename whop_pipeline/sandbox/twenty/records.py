"""The record store and the create/upsert engine (docs/twenty-api.md#batch-upsert).

Every table keeps a dict of records by id plus one dict per unique constraint (value tuple → id),
soft-deleted records included, so a batch upsert costs O(batch), not a scan. A write is staged in
full (matching, merging, foreign keys, uniqueness) before anything is committed: any 400 leaves the
store untouched, as Twenty's single SQL transaction does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from whop_pipeline.sandbox.twenty.errors import bad_request, not_found
from whop_pipeline.sandbox.twenty.schema import COMPOSITE_TYPES, FieldMeta, ObjectMeta, copy_value
from whop_pipeline.sandbox.twenty.values import is_valid_uuid, now_iso, validate

DUPLICATE_ENTRY = "A duplicate entry was detected"
# Written by the server, never taken from input (docs/twenty-api.md#standard-objects).
SERVER_MANAGED = frozenset({"createdBy", "updatedBy", "updatedAt"})


def clone(record: dict[str, Any]) -> dict[str, Any]:
    return {key: copy_value(value) for key, value in record.items()}


def defined(value: Any) -> bool:
    """Empty strings never take part in uniqueness (Twenty's unique indexes skip '')."""
    return value is not None and value != ""


@dataclass
class Table:
    obj: ObjectMeta
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    # group name → value tuple → record id; the "id" group is ``rows`` itself.
    unique: dict[str, dict[tuple, str]] = field(default_factory=dict)
    max_position: float = 0
    min_position: float = 0

    def group_key(self, record: dict[str, Any], paths: list[str]) -> tuple | None:
        values = []
        for path in paths:
            head, _, sub = path.partition(".")
            value = record.get(head)
            if sub:
                value = value.get(sub) if isinstance(value, dict) else None
            if not defined(value):
                return None
            values.append(value)
        return tuple(values)

    def index(self, record_id: str, record: dict[str, Any], add: bool) -> None:
        for name, paths in self.obj.unique_groups[1:]:
            key = self.group_key(record, paths)
            if key is None:
                continue
            if add:
                self.unique.setdefault(name, {})[key] = record_id
            elif self.unique.get(name, {}).get(key) == record_id:
                del self.unique[name][key]

    def unique_index(self, paths: list[str]) -> dict[tuple, str]:
        """The index of one unique constraint over every stored record; 400 when the stored
        data already holds a duplicate (Postgres refuses to build such an index)."""
        index: dict[tuple, str] = {}
        for record_id, record in self.rows.items():
            key = self.group_key(record, paths)
            if key is None:
                continue
            if key in index:
                raise bad_request(
                    f"could not create unique index: key ({', '.join(paths)})="
                    f"({', '.join(map(str, key))}) is duplicated"
                )
            index[key] = record_id
        return index

    def rebuild_indexes(self) -> None:
        """After a metadata change to the object's unique fields."""
        self.unique = {name: self.unique_index(paths) for name, paths in self.obj.unique_groups[1:]}

    def position_for(self, value: Any) -> float:
        """Positions as Twenty assigns them: explicit numbers kept, "first" before every record,
        "last" (and no position) after every record."""
        if value == "first":
            self.min_position -= 1
            return self.min_position
        if value is None or value == "last":
            self.max_position += 1
            return self.max_position
        self.max_position = max(self.max_position, value)
        self.min_position = min(self.min_position, value)
        return value


class RecordStore:
    def __init__(self, objects: dict[str, ObjectMeta], actor_name: str) -> None:
        self.objects = objects
        self.tables: dict[str, Table] = {name: Table(obj) for name, obj in objects.items()}
        self.actor = {"source": "API", "workspaceMemberId": None, "name": actor_name, "context": {}}

    # ---- lookups ------------------------------------------------------------------------------

    def table(self, plural: str) -> Table:
        for table in self.tables.values():
            if table.obj.name_plural == plural:
                return table
        raise bad_request(f"object '{plural}' not found")

    def iter_records(self, table: Table, include_deleted: bool) -> Iterator[dict[str, Any]]:
        if include_deleted:
            return iter(table.rows.values())
        return (record for record in table.rows.values() if record["deletedAt"] is None)

    def get(self, table: Table, record_id: str, *, include_deleted: bool = False) -> dict[str, Any]:
        record = table.rows.get(record_id.lower()) if is_valid_uuid(record_id) else None
        if record is None or (record["deletedAt"] is not None and not include_deleted):
            raise not_found()
        return record

    # ---- input --------------------------------------------------------------------------------

    def prepare(self, table: Table, raw: Any) -> dict[str, Any]:
        """One input row → validated, normalized partial record keyed like stored records."""
        obj = table.obj
        if not isinstance(raw, dict):
            raise bad_request(f"Invalid record input for object {obj.name_singular}")
        if raw.get("id") is not None and not is_valid_uuid(raw["id"]):
            raise bad_request(f'Value "{raw["id"]}" is not a valid UUID')
        partial: dict[str, Any] = {}
        for key, value in raw.items():
            meta = obj.by_input_key.get(key)
            if meta is None:
                raise bad_request(f'Object {obj.name_singular} doesn\'t have any "{key}" field.')
            if key in SERVER_MANAGED or (key == "id" and value is None):
                continue
            if meta.relation is not None and key != meta.join_column:
                self._relation_name_input(meta, key, value, partial)
                continue
            if value is None and not meta.is_nullable:
                if meta.default_value is None:
                    raise bad_request(f"Field {key} is not nullable and has no default value.")
                raise bad_request(
                    f'null value in column "{key}" of relation "{obj.name_singular}" violates '
                    "not-null constraint"
                )
            partial[key] = validate(meta, value, key)
        return partial

    @staticmethod
    def _relation_name_input(meta: FieldMeta, key: str, value: Any, partial: dict) -> None:
        assert meta.relation is not None
        if meta.relation.kind == "ONE_TO_MANY":
            raise bad_request(
                f"One-to-many relation {key} field does not support write operations."
            )
        if value is None or value == {"disconnect": True}:
            partial[meta.join_column] = None  # a null relation means "disconnect"
            return
        if isinstance(value, dict) and "connect" in value:
            raise bad_request(
                f'Relation "{key}" connect is not supported by the Twenty sandbox; send '
                f'"{meta.join_column}" with the related record id'
            )
        raise bad_request(f'Relation "{key}" requires connect or disconnect operation')

    def check_foreign_keys(self, table: Table, partial: dict[str, Any]) -> None:
        """Join columns must name an existing record, soft-deleted ones included (a real FK)."""
        for meta in table.obj.many_to_one():
            column = meta.join_column
            value = partial.get(column) if column else None
            if value is None:
                continue
            assert meta.relation is not None
            if value not in self.tables[meta.relation.target_object].rows:
                name = table.obj.name_singular
                raise bad_request(
                    f'insert or update on table "{name}" violates foreign key constraint '
                    f'"FK_{name}_{column}"'
                )

    # ---- writes -------------------------------------------------------------------------------

    def create_many(
        self, table: Table, rows: list[Any], *, upsert: bool, max_records: int
    ) -> list[dict[str, Any]]:
        """Create or upsert a batch atomically; results in input order
        (docs/twenty-api.md#batch-upsert)."""
        if len(rows) > max_records:
            raise bad_request(f"Maximum number of records to upsert is {max_records}.")
        prepared = [self.prepare(table, row) for row in rows]
        for partial in prepared:
            self.check_foreign_keys(table, partial)
        now = now_iso()
        staged: dict[str, dict[str, Any]] = {}
        result_ids: list[str] = []
        positions = (table.max_position, table.min_position)
        try:
            for partial in prepared:
                target = self._match(table, partial) if upsert else None
                if target is None:
                    record_id = partial.get("id") or str(uuid.uuid4())
                    if record_id in table.rows or record_id in staged:
                        raise bad_request(DUPLICATE_ENTRY)
                    staged[record_id] = self._new_record(table, record_id, partial, now)
                else:
                    base = staged.get(target) or table.rows[target]
                    staged[target] = self._merged(table, base, {**partial, "id": target}, now)
                    staged[target]["deletedAt"] = None  # upsert restores soft-deleted matches
                    record_id = target
                result_ids.append(record_id)
            self._check_unique(table, staged)
        except Exception:
            table.max_position, table.min_position = positions
            raise
        self._commit(table, staged)
        return [table.rows[record_id] for record_id in result_ids]

    def update_one(self, table: Table, record_id: str, raw: Any) -> dict[str, Any]:
        current = self.get(table, record_id)
        partial = self.prepare(table, raw)
        if partial.get("id", current["id"]) != current["id"]:
            raise bad_request("The id of a record cannot be updated")
        self.check_foreign_keys(table, partial)
        staged = {current["id"]: self._merged(table, current, partial, now_iso())}
        self._check_unique(table, staged)
        self._commit(table, staged)
        return table.rows[current["id"]]

    def delete_one(self, table: Table, record_id: str, *, soft: bool) -> dict[str, Any]:
        if soft:
            record = self.get(table, record_id)
            deleted = {**record, "deletedAt": now_iso()}
            table.rows[record["id"]] = deleted
            return deleted
        record = self.get(table, record_id, include_deleted=True)
        self._destroy(table, record["id"])
        return record

    # ---- internals ----------------------------------------------------------------------------

    def _match(self, table: Table, partial: dict[str, Any]) -> str | None:
        """The existing record a row matches through ``id`` or any unique field; a row matching
        two different records is a 400 and fails the whole call
        (docs/twenty-api.md#unique-fields)."""
        matches: list[str] = []
        described: list[str] = []
        for name, paths in table.obj.unique_groups:
            key = table.group_key(partial, paths)
            if key is None:
                continue
            described.append(
                f"{name} ({', '.join(f'{path}: {value}' for path, value in zip(paths, key, strict=True))})"
            )
            owner = key[0] if name == "id" and key[0] in table.rows else None
            owner = owner or table.unique.get(name, {}).get(key)
            if owner is not None and owner not in matches:
                matches.append(owner)
        if len(matches) > 1:
            raise bad_request(
                "Multiple records found with the same unique field values for "
                f"{'; '.join(described)}. Cannot determine which record to update."
            )
        return matches[0] if matches else None

    def _new_record(
        self, table: Table, record_id: str, partial: dict[str, Any], now: str
    ) -> dict[str, Any]:
        record = clone(table.obj.defaults)
        for key in table.obj.now_default_keys:
            record[key] = now
        record.update(id=record_id, deletedAt=None)
        record["createdBy"] = dict(self.actor)
        merged = self._merged(table, record, partial, now)
        if "position" not in partial:
            merged["position"] = table.position_for(None)
        return merged

    def _merged(
        self, table: Table, base: dict[str, Any], partial: dict[str, Any], now: str
    ) -> dict[str, Any]:
        """Partial update: omitted fields kept, null clears, composites merge by subfield."""
        record = dict(base)
        for key, value in partial.items():
            meta = table.obj.by_input_key[key]
            if meta.type in COMPOSITE_TYPES and meta.relation is None:
                if value is None:
                    record[key] = {sub.name: None for sub in COMPOSITE_TYPES[meta.type]}
                else:
                    record[key] = {**(base.get(key) or meta.storage_default()), **value}
            elif key == "position":
                record[key] = table.position_for(value)
            else:
                record[key] = value
        record["updatedAt"] = now
        record["updatedBy"] = dict(self.actor)
        return record

    def _check_unique(self, table: Table, staged: dict[str, dict[str, Any]]) -> None:
        """The unique indexes after the write: inside the batch and against stored records."""
        for name, paths in table.obj.unique_groups[1:]:
            index = table.unique.get(name, {})
            seen: dict[tuple, str] = {}
            for record_id, record in staged.items():
                key = table.group_key(record, paths)
                if key is None:
                    continue
                if seen.setdefault(key, record_id) != record_id:
                    raise bad_request(DUPLICATE_ENTRY)
                owner = index.get(key)
                if owner is not None and owner != record_id and owner not in staged:
                    raise bad_request(DUPLICATE_ENTRY)

    def _commit(self, table: Table, staged: dict[str, dict[str, Any]]) -> None:
        for record_id in staged:
            old = table.rows.get(record_id)
            if old is not None:
                table.index(record_id, old, add=False)
        for record_id, record in staged.items():
            table.rows[record_id] = record
            table.index(record_id, record, add=True)

    def _destroy(self, table: Table, record_id: str) -> None:
        """Hard delete with the relations' ON DELETE rules: CASCADE removes dependent rows (a
        note's targets), SET_NULL clears the join column (an opportunity's point of contact)."""
        record = table.rows.pop(record_id, None)
        if record is None:
            return
        table.index(record_id, record, add=False)
        for other in self.tables.values():
            for meta in other.obj.many_to_one():
                assert meta.relation is not None and meta.join_column is not None
                if meta.relation.target_object != table.obj.name_singular:
                    continue
                column = meta.join_column
                dependents = [
                    rid for rid, row in other.rows.items() if row.get(column) == record_id
                ]
                for dependent in dependents:
                    if meta.relation.on_delete == "CASCADE":
                        self._destroy(other, dependent)
                    else:
                        other.rows[dependent] = {**other.rows[dependent], column: None}

"""The workspace's metadata model: field types, composite types, objects, fields and relations
(docs/twenty-api.md#composite-fields, docs/twenty-api.md#metadata-api).

Metadata ids are uuid5 values of the object and field names, so a reset workspace, or a custom field
created again after a reset, keeps the same ids: tests and benchmarks stay deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = uuid.UUID("5f0c7b8e-6a0e-4c1e-9a53-7d2b1e0f2a10")

# FieldMetadataType in the 2.x client (docs/twenty-api.md#metadata-api); RICH_TEXT_V2 was renamed
# RICH_TEXT in v1.20 (docs/twenty-api.md#note-body).
FIELD_TYPES = frozenset(
    [
        "ACTOR",
        "ADDRESS",
        "ARRAY",
        "BOOLEAN",
        "CURRENCY",
        "DATE",
        "DATE_TIME",
        "EMAILS",
        "FILES",
        "FULL_NAME",
        "LINKS",
        "MORPH_RELATION",
        "MULTI_SELECT",
        "NUMBER",
        "NUMERIC",
        "PHONES",
        "POSITION",
        "RATING",
        "RAW_JSON",
        "RELATION",
        "RICH_TEXT",
        "SELECT",
        "TEXT",
        "TS_VECTOR",
        "UUID",
    ]
)
RELATION_TYPES = frozenset({"RELATION", "MORPH_RELATION"})
ENUM_TYPES = frozenset({"SELECT", "MULTI_SELECT", "RATING"})


@dataclass(frozen=True)
class SubField:
    name: str
    type: str
    default: Any
    in_unique: bool = False  # isIncludedInUniqueConstraint (docs/twenty-api.md#unique-fields)


# Composite types (docs/twenty-api.md#composite-fields). Text subfields default to '' as in
# Twenty's column defaults; JSON ones to null.
COMPOSITE_TYPES: dict[str, tuple[SubField, ...]] = {
    "EMAILS": (
        SubField("primaryEmail", "TEXT", "", True),
        SubField("additionalEmails", "RAW_JSON", None),
    ),
    "LINKS": (
        SubField("primaryLinkLabel", "TEXT", ""),
        SubField("primaryLinkUrl", "TEXT", "", True),
        SubField("secondaryLinks", "RAW_JSON", None),
    ),
    "PHONES": (
        SubField("primaryPhoneNumber", "TEXT", "", True),
        SubField("primaryPhoneCountryCode", "TEXT", "", True),
        SubField("primaryPhoneCallingCode", "TEXT", "", True),
        SubField("additionalPhones", "RAW_JSON", None),
    ),
    "FULL_NAME": (SubField("firstName", "TEXT", ""), SubField("lastName", "TEXT", "")),
    "CURRENCY": (SubField("amountMicros", "NUMERIC", None), SubField("currencyCode", "TEXT", "")),
    "ADDRESS": (
        *(
            SubField(name, "TEXT", "")
            for name in (
                "addressStreet1",
                "addressStreet2",
                "addressCity",
                "addressPostcode",
                "addressState",
                "addressCountry",
            )
        ),
        SubField("addressLat", "NUMERIC", None),
        SubField("addressLng", "NUMERIC", None),
    ),
    "ACTOR": (
        SubField("source", "SELECT", "MANUAL"),
        SubField("workspaceMemberId", "UUID", None),
        SubField("name", "TEXT", ""),
        SubField("context", "RAW_JSON", None),
    ),
    "RICH_TEXT": (SubField("blocknote", "TEXT", None), SubField("markdown", "TEXT", None)),
}
# The same subfields by name, for validating input and filter paths.
COMPOSITE_SUBFIELDS: dict[str, dict[str, SubField]] = {
    type_: {sub.name: sub for sub in subs} for type_, subs in COMPOSITE_TYPES.items()
}


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


def sql_literal(value: str) -> str:
    """SELECT/TEXT defaults are exposed as SQL-quoted strings, e.g. ``"'NEW'"``
    (docs/twenty-api.md#select-options)."""
    return "'" + value + "'"


def copy_value(value: Any) -> Any:
    """Copy deep enough for record values: composites are one level of dicts, arrays lists."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def parse_default(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value


@dataclass
class Relation:
    """One side of a relation. MANY_TO_ONE sides own a join column (``<name>Id``)."""

    kind: str  # MANY_TO_ONE | ONE_TO_MANY
    target_object: str  # nameSingular
    target_field: str  # the inverse field's name
    on_delete: str | None = None  # SET_NULL | CASCADE, on the MANY_TO_ONE side


@dataclass
class FieldMeta:
    id: str
    object_id: str
    type: str
    name: str
    label: str
    created_at: str
    description: str | None = None
    icon: str | None = None
    is_custom: bool = False
    is_active: bool = True
    is_system: bool = False
    is_nullable: bool = True
    is_unique: bool = False
    default_value: Any = None
    options: list[dict[str, Any]] | None = None
    settings: dict[str, Any] | None = None
    relation: Relation | None = None
    updated_at: str = ""

    @property
    def join_column(self) -> str | None:
        if self.relation is not None and self.relation.kind == "MANY_TO_ONE":
            return f"{self.name}Id"
        return None

    @property
    def option_values(self) -> list[str]:
        return [option["value"] for option in self.options or []]

    def unique_paths(self) -> list[str]:
        """Conflict-group paths for upsert matching (docs/twenty-api.md#unique-fields): composite
        fields count only the subfields flagged ``isIncludedInUniqueConstraint``."""
        if self.type in COMPOSITE_TYPES:
            return [
                f"{self.name}.{sub.name}" for sub in COMPOSITE_TYPES[self.type] if sub.in_unique
            ]
        if self.join_column:
            return [self.join_column]
        return [self.name]

    def storage_default(self) -> Any:
        """The value a new record gets when the field is omitted."""
        if self.type in COMPOSITE_TYPES:
            custom = self.default_value if isinstance(self.default_value, dict) else {}
            return {
                sub.name: parse_default(custom.get(sub.name, sub.default))
                for sub in COMPOSITE_TYPES[self.type]
            }
        return copy_value(parse_default(self.default_value))


@dataclass
class ObjectMeta:
    id: str
    name_singular: str
    name_plural: str
    label_singular: str
    label_plural: str
    created_at: str
    description: str | None = None
    icon: str | None = None
    is_custom: bool = False
    is_active: bool = True
    is_system: bool = False
    fields: dict[str, FieldMeta] = field(default_factory=dict)
    label_identifier_field_id: str | None = None
    updated_at: str = ""
    # Derived lookups, rebuilt by refresh() after every metadata change.
    by_input_key: dict[str, FieldMeta] = field(default_factory=dict, repr=False)
    record_keys: list[tuple[str, FieldMeta]] = field(default_factory=list, repr=False)
    unique_groups: list[tuple[str, list[str]]] = field(default_factory=list, repr=False)
    defaults: dict[str, Any] = field(default_factory=dict, repr=False)
    now_default_keys: list[str] = field(default_factory=list, repr=False)

    def refresh(self) -> None:
        """Rebuilds the lookups the record engine uses on its hot path."""
        self.by_input_key = {}
        self.record_keys = []
        self.unique_groups = [("id", ["id"])]
        self.now_default_keys = []
        for meta in self.fields.values():
            self.by_input_key[meta.name] = meta
            if meta.relation is not None:
                if meta.join_column:
                    self.by_input_key[meta.join_column] = meta
                    self.record_keys.append((meta.join_column, meta))
                continue
            self.record_keys.append((meta.name, meta))
            if meta.type == "DATE_TIME" and meta.default_value == "now":
                self.now_default_keys.append(meta.name)
            if meta.is_unique and meta.name != "id":
                paths = meta.unique_paths()
                if paths:
                    self.unique_groups.append((meta.name, paths))
        self.defaults = {key: meta.storage_default() for key, meta in self.record_keys}

    def add_field(self, meta: FieldMeta) -> None:
        self.fields[meta.name] = meta
        self.refresh()

    def many_to_one(self) -> Iterable[FieldMeta]:
        return (meta for meta in self.fields.values() if meta.join_column)


def capitalize(name: str) -> str:
    return name[:1].upper() + name[1:]


def new_field(
    obj: ObjectMeta, name: str, type_: str, label: str, now: str, **extra: Any
) -> FieldMeta:
    """A field of ``obj`` created at ``now``, its id derived from the object and field names."""
    return FieldMeta(
        id=metadata_id("field", obj.name_singular, name),
        object_id=obj.id,
        type=type_,
        name=name,
        label=label,
        created_at=now,
        updated_at=now,
        **extra,
    )


def system_fields(obj: ObjectMeta, now: str) -> list[FieldMeta]:
    def make(name: str, type_: str, label: str, is_system: bool = True, **extra: Any) -> FieldMeta:
        return new_field(obj, name, type_, label, now, is_system=is_system, **extra)

    return [
        make("id", "UUID", "Id", is_nullable=False, default_value="uuid"),
        make(
            "createdAt",
            "DATE_TIME",
            "Creation date",
            is_nullable=False,
            default_value="now",
            is_system=False,
        ),
        make(
            "updatedAt",
            "DATE_TIME",
            "Last update",
            is_nullable=False,
            default_value="now",
            is_system=False,
        ),
        make("deletedAt", "DATE_TIME", "Deleted at", is_system=False),
        make("position", "POSITION", "Position", is_nullable=False, default_value=0),
        make("createdBy", "ACTOR", "Created by", is_nullable=False, is_system=False),
        make("updatedBy", "ACTOR", "Updated by", is_nullable=False, is_system=False),
    ]


def new_object(
    name_singular: str,
    name_plural: str,
    labels: tuple[str, str],
    now: str,
    *,
    is_custom: bool,
    is_system: bool = False,
    description: str | None = None,
    icon: str | None = None,
) -> ObjectMeta:
    obj = ObjectMeta(
        id=metadata_id("object", name_singular),
        name_singular=name_singular,
        name_plural=name_plural,
        label_singular=labels[0],
        label_plural=labels[1],
        created_at=now,
        updated_at=now,
        is_custom=is_custom,
        is_system=is_system,
        description=description,
        icon=icon,
    )
    for meta in system_fields(obj, now):
        obj.fields[meta.name] = meta
    obj.refresh()
    return obj


def add_relation(
    objects: dict[str, ObjectMeta], spec: tuple[str, ...], now: str, *, is_custom: bool = False
) -> None:
    """Adds both sides of a relation: the MANY_TO_ONE field and its ONE_TO_MANY inverse."""
    source, name, target, inverse, on_delete, kind = spec
    source_obj, target_obj = objects[source], objects[target]
    source_obj.add_field(
        new_field(
            source_obj,
            name,
            kind,
            capitalize(name),
            now,
            is_custom=is_custom,
            relation=Relation("MANY_TO_ONE", target, inverse, on_delete),
            settings={
                "relationType": "MANY_TO_ONE",
                "onDelete": on_delete,
                "joinColumnName": f"{name}Id",
            },
        )
    )
    if inverse not in target_obj.fields:
        target_obj.add_field(
            new_field(
                target_obj,
                inverse,
                "RELATION",
                capitalize(inverse),
                now,
                is_custom=is_custom,
                relation=Relation("ONE_TO_MANY", source, name),
                settings={"relationType": "ONE_TO_MANY"},
            )
        )

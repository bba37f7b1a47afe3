"""The metadata API's behaviour: creating custom fields and objects, and updating fields (SELECT
options as a full replacement, ``isUnique``). See docs/twenty-api.md#metadata-api,
docs/twenty-api.md#custom-fields and docs/twenty-api.md#select-options.

Errors keep the text of Twenty's metadata validators; the REST bridge replaces double quotes with
single quotes in GraphQL error messages (``RestApiException.formatMessage``), and so do we.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from whop_pipeline.sandbox.twenty.errors import TwentyError
from whop_pipeline.sandbox.twenty.records import RecordStore, Table
from whop_pipeline.sandbox.twenty.schema import (
    ENUM_TYPES,
    FIELD_TYPES,
    RELATION_TYPES,
    FieldMeta,
    ObjectMeta,
    add_relation,
    copy_value,
    new_field,
    new_object,
    parse_default,
)
from whop_pipeline.sandbox.twenty.standard import note_target_relation
from whop_pipeline.sandbox.twenty.values import now_iso

CAMEL_CASE = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)*[A-Z]?$")
OPTION_VALUE = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)*$")
FIELD_UPDATE_KEYS = frozenset(
    [
        "name",
        "label",
        "description",
        "icon",
        "isActive",
        "isNullable",
        "isUnique",
        "defaultValue",
        "options",
        "settings",
        "objectMetadataId",
        "isLabelSyncedWithName",
    ]
)
OBJECT_UPDATE_KEYS = frozenset(
    ["labelSingular", "labelPlural", "description", "icon", "isActive", "isLabelSyncedWithName"]
)


def metadata_error(message: str) -> TwentyError:
    return TwentyError(400, message.replace('"', "'"))


# ---- validation helpers -----------------------------------------------------------------------


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise metadata_error("Name is required")
    if len(name) > 63:
        raise metadata_error(f'String "{name}" exceeds 63 characters limit')
    if not CAMEL_CASE.match(name):
        raise metadata_error(f"{name} should be in camelCase")
    return name


def validate_label(label: Any) -> str:
    if not isinstance(label, str) or not label.strip():
        raise metadata_error("Label must not be empty")
    return label


def validate_options(options: Any) -> list[dict[str, Any]]:
    """Full option list: UPPER_SNAKE values, ids kept, new ones given an id
    (docs/twenty-api.md#select-options)."""
    if not isinstance(options, list) or not options:
        raise metadata_error("Options are required for enum fields")
    result = []
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            raise metadata_error("Option must be an object")
        value = option.get("value")
        if not isinstance(value, str) or not value:
            raise metadata_error("Option value is required")
        if len(value) > 63:
            raise metadata_error("Option value exceeds 63 characters")
        if not OPTION_VALUE.match(value):
            raise metadata_error(f'Value must be in UPPER_CASE and follow snake_case "{value}"')
        validate_label(option.get("label"))
        result.append(
            {
                "id": option.get("id") or str(uuid.uuid4()),
                "value": value,
                "label": option["label"],
                "position": option.get("position", index),
                "color": option.get("color"),
            }
        )
    for key in ("position", "id", "value"):
        if len({option[key] for option in result}) != len(result):
            raise metadata_error(f"Duplicated option {key}")
    return result


def find_field(objects: dict[str, ObjectMeta], field_id: str) -> tuple[ObjectMeta, FieldMeta]:
    for obj in objects.values():
        for meta in obj.fields.values():
            if meta.id == field_id:
                return obj, meta
    raise metadata_error("Field metadata not found")


def find_object(objects: dict[str, ObjectMeta], object_id: str) -> ObjectMeta:
    for obj in objects.values():
        if obj.id == object_id:
            return obj
    raise metadata_error("Object metadata not found")


def backfill(table: Table) -> None:
    """Gives existing records every key the object now has (a new column with its default)."""
    defaults = table.obj.defaults
    for record in table.rows.values():
        for key, value in defaults.items():
            if key not in record:
                record[key] = copy_value(value)


# ---- mutations --------------------------------------------------------------------------------


def create_field(store: RecordStore, body: Any) -> FieldMeta:
    if not isinstance(body, dict):
        raise metadata_error("Field input must be an object")
    obj = find_object(store.objects, str(body.get("objectMetadataId")))
    type_ = body.get("type")
    if type_ not in FIELD_TYPES:
        raise metadata_error(
            f'Invalid value "{type_}" at "input.field.type"; Value "{type_}" does not exist in '
            '"FieldMetadataType" enum.'
        )
    if type_ in RELATION_TYPES:
        raise metadata_error("Relation fields cannot be created through the Twenty sandbox")
    name = validate_name(body.get("name"))
    label = validate_label(body.get("label"))
    if name in obj.by_input_key or f"{name}Id" in obj.by_input_key:
        raise metadata_error(
            f'Name "{name}" is not available, check that it is not duplicating another '
            "field's name."
        )
    options = validate_options(body.get("options")) if type_ in ENUM_TYPES else None
    is_nullable = body.get("isNullable", True) is not False
    default_value = body.get("defaultValue")
    if not is_nullable and default_value is None:
        raise metadata_error("Default value is required for non-nullable fields")
    allowed = {option["value"] for option in options or []}
    if (
        options
        and default_value is not None
        and type_ != "MULTI_SELECT"
        and (parse_default(default_value) not in allowed)
    ):
        raise metadata_error(f"Default value {default_value} must be one of the option values")
    now = now_iso()
    meta = new_field(
        obj,
        name,
        type_,
        label,
        now,
        description=body.get("description"),
        icon=body.get("icon"),
        is_custom=True,
        is_nullable=is_nullable,
        is_unique=body.get("isUnique") is True,
        default_value=default_value,
        options=options,
        settings=body.get("settings"),
    )
    table = store.tables[obj.name_singular]
    default_key = table.group_key({name: meta.storage_default()}, meta.unique_paths())
    if meta.is_unique and default_key is not None and len(table.rows) > 1:
        # Existing records all get the default, so a unique index could not be built.
        raise metadata_error("Cannot make a field unique: existing records would share its default")
    obj.add_field(meta)
    backfill(table)
    table.rebuild_indexes()
    return meta


def update_field(store: RecordStore, field_id: str, body: Any) -> FieldMeta:
    """Validates the whole update before applying any of it, so a 400 changes nothing."""
    if not isinstance(body, dict):
        raise metadata_error("Field update must be an object")
    obj, meta = find_field(store.objects, field_id)
    for key in body:
        if key not in FIELD_UPDATE_KEYS:
            raise metadata_error(f'Field "{key}" is not defined by type "UpdateFieldInput".')
    new_name = body.get("name", meta.name)
    if new_name != meta.name:
        validate_name(new_name)
        if not meta.is_custom:
            raise metadata_error("Standard field name cannot be updated")
        if new_name in obj.by_input_key:
            raise metadata_error(
                f'Name "{new_name}" is not available, check that it is not duplicating another '
                "field's name."
            )
    label = validate_label(body["label"]) if "label" in body else meta.label
    table = store.tables[obj.name_singular]
    becomes_unique = body.get("isUnique") is True and not meta.is_unique
    if becomes_unique:  # a unique index over data that holds duplicates is refused
        table.unique_index(meta.unique_paths())
    options = meta.options
    if "options" in body:
        if meta.type not in ENUM_TYPES:
            raise metadata_error("Options can only be set on enum fields")
        options = validate_options(body["options"])
    if new_name != meta.name:
        _rename_field(obj, table, meta, new_name)
    meta.label = label
    for key, attribute in (
        ("description", "description"),
        ("icon", "icon"),
        ("settings", "settings"),
        ("defaultValue", "default_value"),
    ):
        if key in body:
            setattr(meta, attribute, body[key])
    for key, attribute in (("isActive", "is_active"), ("isNullable", "is_nullable")):
        if key in body:
            setattr(meta, attribute, body[key] is not False)
    if options is not meta.options:
        meta.options = options
        _drop_removed_option_values(table, meta)
    if "isUnique" in body:
        meta.is_unique = body["isUnique"] is True
    meta.updated_at = now_iso()
    obj.refresh()
    table.rebuild_indexes()
    return meta


def _rename_field(obj: ObjectMeta, table: Table, meta: FieldMeta, new_name: str) -> None:
    """Renames the field and its stored values; the caller refreshes ``obj`` and the indexes."""
    old_name = meta.name
    obj.fields = {
        (new_name if key == old_name else key): value for key, value in obj.fields.items()
    }
    meta.name = new_name
    for record in table.rows.values():
        record[new_name] = record.pop(old_name, None)


def _drop_removed_option_values(table: Table, meta: FieldMeta) -> None:
    """Dropping an option still in use is destructive (docs/twenty-api.md#select-options): such
    records fall back to the field's default (or null)."""
    allowed = set(meta.option_values)
    default = parse_default(meta.default_value)
    fallback = default if default in allowed else None
    for record_id, record in table.rows.items():
        value = record.get(meta.name)
        if meta.type == "MULTI_SELECT" and isinstance(value, list):
            if any(item not in allowed for item in value):
                table.rows[record_id] = {**record, meta.name: [v for v in value if v in allowed]}
        elif value is not None and value not in allowed:
            table.rows[record_id] = {**record, meta.name: fallback}


def create_object(store: RecordStore, body: Any, note_target_style: str) -> ObjectMeta:
    if not isinstance(body, dict):
        raise metadata_error("Object input must be an object")
    for key in ("nameSingular", "namePlural", "labelSingular", "labelPlural"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise metadata_error(
                f'Field "CreateObjectInput.{key}" of required type "String!" was not provided.'
            )
    singular, plural = validate_name(body["nameSingular"]), validate_name(body["namePlural"])
    if singular == plural:
        raise metadata_error("The singular and plural name cannot be the same for an object")
    taken = {
        name for obj in store.objects.values() for name in (obj.name_singular, obj.name_plural)
    }
    if singular in taken or plural in taken:
        raise metadata_error("Object already exists")
    now = now_iso()
    obj = new_object(
        singular,
        plural,
        (validate_label(body["labelSingular"]), validate_label(body["labelPlural"])),
        now,
        is_custom=True,
        description=body.get("description"),
        icon=body.get("icon"),
    )
    if body.get("skipNameField") is not True:
        name_field = new_field(obj, "name", "TEXT", "Name", now, icon="IconAbc")
        obj.add_field(name_field)
        obj.label_identifier_field_id = name_field.id
    store.objects[singular] = obj
    store.tables[singular] = Table(obj)
    # Like Twenty, a custom object can be a note target (targetWhopProduct / whopProduct).
    add_relation(
        store.objects, note_target_relation(note_target_style, singular), now, is_custom=True
    )
    backfill(store.tables["noteTarget"])
    return obj


def update_object(store: RecordStore, object_id: str, body: Any) -> ObjectMeta:
    if not isinstance(body, dict):
        raise metadata_error("Object update must be an object")
    obj = find_object(store.objects, object_id)
    for key in body:
        if key not in OBJECT_UPDATE_KEYS:
            raise metadata_error(f'Field "{key}" is not defined by type "UpdateObjectPayload".')
    if "labelSingular" in body:
        obj.label_singular = validate_label(body["labelSingular"])
    if "labelPlural" in body:
        obj.label_plural = validate_label(body["labelPlural"])
    for key in ("description", "icon"):
        if key in body:
            setattr(obj, key, body[key])
    if "isActive" in body:
        obj.is_active = body["isActive"] is not False
    obj.updated_at = now_iso()
    return obj

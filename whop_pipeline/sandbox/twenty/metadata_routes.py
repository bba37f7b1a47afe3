"""Metadata REST handlers, ``/rest/metadata/objects[/<id>]`` and ``/rest/metadata/fields[/<id>]``
(docs/twenty-api.md#metadata-api).

Shapes are those of Twenty's GraphQL-backed metadata REST controller after ``cleanGraphQLResponse``:
lists answer ``{data: {objects|fields: [...]}, pageInfo, totalCount}`` (objects carry their
``fields`` as a flat list), one item ``{data: {object|field: {...}}}``, writes
``{data: {createOneField|updateOneField|createOneObject|updateOneObject: {...}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whop_pipeline.sandbox.twenty import metadata
from whop_pipeline.sandbox.twenty.errors import bad_request
from whop_pipeline.sandbox.twenty.ordering import decode_cursor, encode_cursor
from whop_pipeline.sandbox.twenty.records import RecordStore
from whop_pipeline.sandbox.twenty.schema import FieldMeta, ObjectMeta

METADATA_MAX_LIMIT = 1000  # limit default and max (docs/twenty-api.md#metadata-api)
Result = tuple[int, dict[str, Any]]


def _object_ref(obj: ObjectMeta) -> dict[str, str]:
    return {"id": obj.id, "nameSingular": obj.name_singular, "namePlural": obj.name_plural}


def serialize_field(meta: FieldMeta, objects: dict[str, ObjectMeta]) -> dict[str, Any]:
    relation = None
    if meta.relation is not None:
        source = next(obj for obj in objects.values() if obj.id == meta.object_id)
        target = objects[meta.relation.target_object]
        inverse = target.fields.get(meta.relation.target_field)
        relation = {
            "type": meta.relation.kind,
            "sourceObjectMetadata": _object_ref(source),
            "targetObjectMetadata": _object_ref(target),
            "sourceFieldMetadata": {"id": meta.id, "name": meta.name},
            "targetFieldMetadata": {"id": inverse.id, "name": inverse.name} if inverse else None,
        }
    body = {
        "id": meta.id,
        "type": meta.type,
        "name": meta.name,
        "label": meta.label,
        "description": meta.description,
        "icon": meta.icon,
        "isCustom": meta.is_custom,
        "isActive": meta.is_active,
        "isSystem": meta.is_system,
        "isNullable": meta.is_nullable,
        "isUnique": meta.is_unique,
        "isLabelSyncedWithName": False,
        "createdAt": meta.created_at,
        "updatedAt": meta.updated_at,
        "defaultValue": meta.default_value,
        "options": [dict(option) for option in meta.options] if meta.options is not None else None,
        "settings": dict(meta.settings) if meta.settings is not None else None,
        "objectMetadataId": meta.object_id,
        "relation": relation,
    }
    if meta.type == "MORPH_RELATION":
        body["morphRelations"] = [relation]
    return body


def serialize_object(obj: ObjectMeta, objects: dict[str, ObjectMeta]) -> dict[str, Any]:
    return {
        "id": obj.id,
        "dataSourceId": None,
        "nameSingular": obj.name_singular,
        "namePlural": obj.name_plural,
        "labelSingular": obj.label_singular,
        "labelPlural": obj.label_plural,
        "description": obj.description,
        "icon": obj.icon,
        "isCustom": obj.is_custom,
        "isRemote": False,
        "isActive": obj.is_active,
        "isSystem": obj.is_system,
        "createdAt": obj.created_at,
        "updatedAt": obj.updated_at,
        "labelIdentifierFieldMetadataId": obj.label_identifier_field_id,
        "imageIdentifierFieldMetadataId": None,
        "fields": [serialize_field(meta, objects) for meta in obj.fields.values()],
    }


def paginate(items: list[dict[str, Any]], key: str, params: Mapping[str, str]) -> Result:
    raw_limit = params.get("limit")
    try:
        limit = min(int(raw_limit), METADATA_MAX_LIMIT) if raw_limit else METADATA_MAX_LIMIT
    except ValueError:
        raise bad_request(f"limit '{raw_limit}' is invalid. Should be an integer") from None
    start = 0
    if params.get("starting_after"):
        (after_id,) = decode_cursor(params["starting_after"], 1)
        ids = [item["id"] for item in items]
        start = ids.index(after_id) + 1 if after_id in ids else len(items)
    page = items[start : start + limit]
    return 200, {
        "data": {key: page},
        "pageInfo": {
            "hasNextPage": start + limit < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": encode_cursor([page[0]["id"]]) if page else None,
            "endCursor": encode_cursor([page[-1]["id"]]) if page else None,
        },
        "totalCount": len(items),
    }


def list_objects(store: RecordStore, params: Mapping[str, str]) -> Result:
    objects = [serialize_object(obj, store.objects) for obj in store.objects.values()]
    return paginate(objects, "objects", params)


def get_object(store: RecordStore, object_id: str) -> Result:
    obj = metadata.find_object(store.objects, object_id)
    return 200, {"data": {"object": serialize_object(obj, store.objects)}}


def create_object(store: RecordStore, body: Any, note_target_style: str) -> Result:
    obj = metadata.create_object(store, body, note_target_style)
    return 201, {"data": {"createOneObject": serialize_object(obj, store.objects)}}


def update_object(store: RecordStore, object_id: str, body: Any) -> Result:
    obj = metadata.update_object(store, object_id, body)
    return 200, {"data": {"updateOneObject": serialize_object(obj, store.objects)}}


def list_fields(store: RecordStore, params: Mapping[str, str]) -> Result:
    fields = [
        serialize_field(meta, store.objects)
        for obj in store.objects.values()
        for meta in obj.fields.values()
    ]
    return paginate(fields, "fields", params)


def get_field(store: RecordStore, field_id: str) -> Result:
    _, meta = metadata.find_field(store.objects, field_id)
    return 200, {"data": {"field": serialize_field(meta, store.objects)}}


def create_field(store: RecordStore, body: Any) -> Result:
    """Create a field (docs/twenty-api.md#metadata-api): flat body, ``isUnique`` honoured by later
    upserts (docs/twenty-api.md#unique-fields)."""
    meta = metadata.create_field(store, body)
    return 201, {"data": {"createOneField": serialize_field(meta, store.objects)}}


def update_field(store: RecordStore, field_id: str, body: Any) -> Result:
    """Update a field: SELECT ``options`` are a full replacement, keep the ids
    (docs/twenty-api.md#select-options)."""
    meta = metadata.update_field(store, field_id, body)
    return 200, {"data": {"updateOneField": serialize_field(meta, store.objects)}}

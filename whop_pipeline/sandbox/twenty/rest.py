"""Core REST handlers, ``/rest/<plural>[/<id>]`` and ``/rest/batch/<plural>``
(docs/twenty-api.md#rest-core-api).

Handlers are synchronous and run under the workspace lock; each returns ``(status, body)``.
Response keys follow Twenty: ``<plural>`` for lists, ``<singular>`` for one record,
``create<Singular>``, ``create<Plural>`` for batches, ``update<Singular>``, ``delete<Singular>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whop_pipeline.sandbox.twenty.errors import bad_request
from whop_pipeline.sandbox.twenty.filters import (
    compile_filter,
    get_path,
    mentions_deleted_at,
    parse_filter,
)
from whop_pipeline.sandbox.twenty.ordering import (
    bisect_rows,
    decode_cursor,
    encode_cursor,
    parse_order_by,
    sort_rows,
    validate_order,
)
from whop_pipeline.sandbox.twenty.records import RecordStore
from whop_pipeline.sandbox.twenty.schema import capitalize

DEFAULT_LIMIT = 60  # QUERY_DEFAULT_LIMIT_RECORDS (docs/twenty-api.md#ordering-and-paging)
Result = tuple[int, dict[str, Any]]


def parse_limit(raw: str | None, max_records: int) -> int:
    """Default 60, silently capped at the server's maximum (``parseLimitRestRequest``)."""
    if not raw:
        return DEFAULT_LIMIT
    try:
        limit = float(raw)
    except ValueError:
        limit = -1
    if limit < 0 or limit != limit:
        raise bad_request(f"limit '{raw}' is invalid. Should be an integer")
    return min(int(limit), max_records)


def check_depth(params: Mapping[str, str]) -> None:
    """Relations are never embedded here; the pipeline reads with depth=0
    (docs/twenty-api.md#rest-core-api)."""
    depth = params.get("depth")
    if depth not in (None, "0"):
        raise bad_request(f"depth '{depth}' is not supported by the Twenty sandbox (only depth=0)")


def is_true(params: Mapping[str, str], name: str) -> bool:
    return params.get(name) == "true"


def list_records(
    store: RecordStore, plural: str, params: Mapping[str, str], max_records: int
) -> Result:
    table = store.table(plural)
    obj = table.obj
    check_depth(params)
    limit = parse_limit(params.get("limit"), max_records)
    node = parse_filter(params["filter"]) if params.get("filter") else None
    predicate = compile_filter(node, obj) if node is not None else None
    order = parse_order_by(params.get("order_by"))
    validate_order(order, obj)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise bad_request("Cannot provide both starting_after and ending_before")
    records = store.iter_records(
        table, include_deleted=node is not None and mentions_deleted_at(node)
    )
    paths = [path for path, _ in order]
    rows = [
        ([get_path(record, path) for path in paths], record)
        for record in records
        if predicate is None or predicate(record)
    ]
    sort_rows(rows, order)
    if before:
        end = bisect_rows(rows, decode_cursor(before, len(order)), order, after=False)
        start = max(0, end - limit)
    else:
        start = (
            bisect_rows(rows, decode_cursor(after, len(order)), order, after=True) if after else 0
        )
        end = start + limit
    page = rows[start:end]
    return 200, {
        "data": {obj.name_plural: [record for _, record in page]},
        "totalCount": len(rows),
        "pageInfo": {
            "hasNextPage": end < len(rows),
            "hasPreviousPage": start > 0,
            "startCursor": encode_cursor(page[0][0]) if page else None,
            "endCursor": encode_cursor(page[-1][0]) if page else None,
        },
    }


def get_record(
    store: RecordStore, plural: str, record_id: str, params: Mapping[str, str]
) -> Result:
    table = store.table(plural)
    check_depth(params)
    return 200, {"data": {table.obj.name_singular: store.get(table, record_id)}}


def create_one(
    store: RecordStore, plural: str, body: Any, params: Mapping[str, str], max_records: int
) -> Result:
    table = store.table(plural)
    # A non-object body is refused by ``RecordStore.prepare`` with the same 400.
    record = store.create_many(
        table, [body], upsert=is_true(params, "upsert"), max_records=max_records
    )[0]
    return 201, {"data": {f"create{capitalize(table.obj.name_singular)}": record}}


def create_batch(
    store: RecordStore, plural: str, body: Any, params: Mapping[str, str], max_records: int
) -> Result:
    """Create many / upsert (docs/twenty-api.md#batch-upsert): one call, atomic, results in input
    order."""
    table = store.table(plural)
    if not isinstance(body, list):
        raise bad_request("Body must be an array")
    if not body:
        raise bad_request("Input must not be empty")
    records = store.create_many(
        table, body, upsert=is_true(params, "upsert"), max_records=max_records
    )
    return 201, {"data": {f"create{capitalize(table.obj.name_plural)}": records}}


def update_one(store: RecordStore, plural: str, record_id: str, body: Any) -> Result:
    table = store.table(plural)
    if not isinstance(body, dict):
        raise bad_request(f"Invalid record input for object {table.obj.name_singular}")
    record = store.update_one(table, record_id, body)
    return 200, {"data": {f"update{capitalize(table.obj.name_singular)}": record}}


def delete_one(
    store: RecordStore, plural: str, record_id: str, params: Mapping[str, str]
) -> Result:
    """Hard delete unless ``soft_delete=true``, as newer handlers do
    (docs/twenty-api.md#rest-core-api)."""
    table = store.table(plural)
    record = store.delete_one(table, record_id, soft=is_true(params, "soft_delete"))
    return 200, {"data": {f"delete{capitalize(table.obj.name_singular)}": record}}

"""Ordering, cursors and pages of REST list calls (docs/twenty-api.md#ordering-and-paging):
``order_by`` with ``AscNullsFirst`` as default direction and an ``id`` tie-breaker, a stable sort,
and cursors that carry the sort values of a record so paging stays correct when records change
between pages."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from whop_pipeline.sandbox.twenty.errors import bad_request
from whop_pipeline.sandbox.twenty.filters import leaf_type
from whop_pipeline.sandbox.twenty.schema import ObjectMeta

DIRECTIONS = ("AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast")
Order = list[tuple[tuple[str, ...], str]]


def parse_order_by(query: str | None) -> Order:
    order: Order = []
    for item in (query or "").split(","):
        if not item:
            continue
        direction = "AscNullsFirst"
        if "[" in item and "]" in item:
            item, _, rest = item.partition("[")
            direction = rest.replace("]", "")
            if direction not in DIRECTIONS:
                allowed = "', '".join(DIRECTIONS)
                raise bad_request(
                    f"'order_by' direction '{direction}' invalid. Allowed values are "
                    f"'{allowed}'. "
                    "eg: ?order_by=field_1[AscNullsFirst],field_2[DescNullsLast],field_3"
                )
        order.append((tuple(item.split(".")), direction))
    if not any(path == ("id",) for path, _ in order):
        order.append((("id",), "AscNullsFirst"))
    return order


def validate_order(order: Order, obj: ObjectMeta) -> None:
    for path, _ in order:
        leaf_type(obj, path)


def sort_rows(rows: list[tuple[list[Any], Any]], order: Order) -> list[tuple[list[Any], Any]]:
    """Stable multi-pass sort of ``(sort values, payload)`` rows, last order key first."""
    for index in range(len(order) - 1, -1, -1):
        direction = order[index][1]
        descending = direction.startswith("Desc")
        nulls_first = direction.endswith("NullsFirst")
        # Null rank chosen so nulls land first or last whatever the sort direction.
        null_rank = 0 if nulls_first != descending else 1

        def key(row: tuple[list[Any], Any], i: int = index, rank: int = null_rank) -> tuple:
            value = row[0][i]
            return (rank, 0) if value is None else (1 - rank, value)

        rows.sort(key=key, reverse=descending)
    return rows


def encode_cursor(values: list[Any]) -> str:
    return base64.b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        values = json.loads(base64.b64decode(cursor.encode(), validate=True))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != width:
        raise bad_request(f"Invalid cursor: {cursor}")
    return values


def compare_values(left: list[Any], right: list[Any], order: Order) -> int:
    """The ordering ``sort_rows`` produces, as a comparison (cursor positions are bisected)."""
    for index, (_, direction) in enumerate(order):
        a, b = left[index], right[index]
        if a is None and b is None:
            continue
        nulls_first = direction.endswith("NullsFirst")
        if a is None:
            return -1 if nulls_first else 1
        if b is None:
            return 1 if nulls_first else -1
        if a == b:
            continue
        result = -1 if a < b else 1
        return -result if direction.startswith("Desc") else result
    return 0


def bisect_rows(
    rows: list[tuple[list[Any], Any]],
    cursor: list[Any],
    order: Order,
    *,
    after: bool,
) -> int:
    """Index of the first row after the cursor (``after``) or at/after it (``before``)."""
    low, high = 0, len(rows)
    while low < high:
        middle = (low + high) // 2
        try:
            verdict = compare_values(rows[middle][0], cursor, order)
        except TypeError:  # a cursor whose values do not fit the current order_by
            raise bad_request("Invalid cursor") from None
        if verdict < 0 or (after and verdict == 0):
            low = middle + 1
        else:
            high = middle
    return low

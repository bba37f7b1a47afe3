"""Relay-style paging over a short in-memory list (webhooks, deliveries), the same connection shape
as the store's lists: ``first``/``after`` forward, ``last``/``before`` backward, cursors opaque."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from whop_pipeline.sandbox.whop.errors import bad_param
from whop_pipeline.sandbox.whop.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

T = TypeVar("T")


def _cursor(ident: str) -> str:
    return base64.urlsafe_b64encode(ident.encode()).decode().rstrip("=")


def _position(cursor: str, ids: list[str], param: str) -> int:
    try:
        ident = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return ids.index(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_param(param, f"`{param}` is not a valid cursor") from exc


def _size(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_param(name, f"`{name}` must be an integer") from exc
    if value < 0:
        raise bad_param(name, f"`{name}` must not be negative")
    return min(value, MAX_PAGE_SIZE)


def relay_page(
    items: Sequence[T], key: Callable[[T], str], params: Mapping[str, str]
) -> tuple[list[T], dict[str, Any]]:
    """The page of ``items`` (already in list order) that ``params`` ask for, and its page_info."""
    first, last = _size(params, "first"), _size(params, "last")
    if first is not None and last is not None:
        raise bad_param("last", "Pass either `first` or `last`, not both")
    ids = [key(item) for item in items]
    lo, hi = 0, len(items)
    if params.get("after"):
        lo = _position(params["after"], ids, "after") + 1
    if params.get("before"):
        hi = min(hi, _position(params["before"], ids, "before"))
    hi = max(lo, hi)
    if last is not None:
        start, end = max(lo, hi - last), hi
    else:
        start, end = lo, min(hi, lo + (DEFAULT_PAGE_SIZE if first is None else first))
    rows = list(items[start:end])
    page_info = {
        "start_cursor": _cursor(ids[start]) if rows else None,
        "end_cursor": _cursor(ids[end - 1]) if rows else None,
        "has_next_page": end < len(items),
        "has_previous_page": start > 0,
    }
    return rows, page_info


__all__ = ["relay_page"]

"""The emulator's live view of a dataset: sorted indexes, Relay pagination, copy-on-write changes.

Pagination is keyset-based: a cursor is the opaque base64 of ``[order, sort key, id]`` for the row
it points at, so a page starts right after that row even if rows were added or changed in between.
Each (kind, order) has an index sorted ascending by ``(key, id)``; a page walks it from the cursor
in the requested direction, applying the filters, until it has ``first + 1`` matches (the extra one
only says whether a next page exists). ``created_after``/``created_before`` narrow the walk by
bisection when the order is ``created_at``, so incremental windows stay cheap on the large dataset.

Decisions where the reference is silent:
- ``first`` defaults to 10 and is clamped to 100 (larger values return 100 rows, as Relay servers
  with a maximum page size do); a negative value, or ``first`` together with ``last``, is a 400.
- On the last page ``has_next_page`` is false and ``end_cursor`` is ``null``: the SDK pager continues
  while ``end_cursor`` is non-empty and ignores ``has_next_page`` (``core/pagination.py`` and the
  generated ``list`` methods), so a null cursor lets it stop without an extra, empty request. The
  emulator's ``end_cursor_on_last_page=True`` switches to the plain Relay behaviour (a cursor on
  every non-empty page) to exercise clients against that variant. Backward pages mirror this with
  ``start_cursor``.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whop_pipeline.sandbox.dataset import KINDS, WhopDataset
from whop_pipeline.sandbox.whop.errors import bad_param, not_found
from whop_pipeline.sandbox.whop.render import Counts, member_counts

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
Key = tuple[Any, ...]
Predicate = Callable[[Any], bool]


def _nullable(value: Any) -> tuple[int, Any]:
    # Nulls sort first ascending and last descending (the documented rule for members'
    # most_recent_action_at, applied to every nullable order field).
    return (0, 0) if value is None else (1, value)


SORT_KEYS: dict[str, dict[str, Callable[[Any], tuple[int, Any]]]] = {
    "members": {
        "created_at": lambda r: (1, r.created_at),
        "joined_at": lambda r: (1, r.created_at),
        "last_accessed_at": lambda r: _nullable(r.last_accessed_at),
        "most_recent_action_at": lambda r: _nullable(r.most_recent_action_at),
        "usd_total_spent": lambda r: (1, r.usd_spent_cents),
    },
    "memberships": {"created_at": lambda r: (1, r.created_at)},
    "payments": {
        "created_at": lambda r: (1, r.created_at),
        "paid_at": lambda r: _nullable(r.paid_at),
    },
    "products": {"created_at": lambda r: (1, r.created_at)},
    "plans": {
        "created_at": lambda r: (1, r.created_at),
        "id": lambda r: (1, r.id),
        "expiration_days": lambda r: _nullable(r.expiration_days),
        "internal_notes": lambda r: (0, 0),
        # active_members_count is filled per request (it depends on memberships).
        "active_members_count": lambda r: (1, 0),
    },
}


@dataclass
class Index:
    keys: list[Key]
    records: list[Any]
    version: Any  # compared for equality only


@dataclass
class ListRequest:
    kind: str
    order: str
    descending: bool
    predicate: Predicate | None = None
    created_after_ms: int | None = None  # exclusive: created_at > this
    created_before_ms: int | None = None  # exclusive: created_at < this
    first: int | None = None
    last: int | None = None
    after: str | None = None
    before: str | None = None


@dataclass
class Page:
    records: list[Any]
    page_info: dict[str, Any]


def encode_cursor(order: str, key: Key) -> str:
    raw = json.dumps([order, *key], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str, param: str) -> Key:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise bad_param(param, f"`{param}` is not a valid cursor") from exc
    if not isinstance(values, list) or len(values) != 4 or values[0] != order:
        raise bad_param(param, f"`{param}` is not a cursor of this list (order `{order}`)")
    return tuple(values[1:])


class WhopStore:
    """Thread-safe access to one dataset. Every read and change happens under ``lock``."""

    def __init__(self, dataset: WhopDataset, *, end_cursor_on_last_page: bool = False) -> None:
        self.ds = dataset
        self.end_cursor_on_last_page = end_cursor_on_last_page
        self.lock = threading.RLock()
        self._indexes: dict[tuple[str, str], Index] = {}
        # Indexes are rebuilt when their version moved: any change moves ``_versions``; only
        # additions and resets move ``_added`` (created_at never changes, so the default
        # created_at index survives updates, which matters on the large dataset).
        self._versions = dict.fromkeys(KINDS, 0)
        self._added = dict.fromkeys(KINDS, 0)
        self._originals: dict[tuple[str, str], Any] = {}
        self._created: list[tuple[str, Any]] = []
        self._clock_ms = 0
        self._counts: tuple[int, Counts] | None = None  # (memberships version, counts)

    # -- reads ---------------------------------------------------------------------------------

    def warm(self) -> None:
        """Build the default (created_at) indexes now rather than on the first request."""
        with self.lock:
            for kind in KINDS:
                self._index(kind, "created_at")

    def get(self, kind: str, ident: str) -> Any:
        record = self.ds.get(kind, ident)
        if record is None:
            raise not_found(kind, ident)
        return record

    def member_counts(self) -> Counts:
        """Active memberships per product and per plan, recounted only after memberships changed
        (every change goes through ``changed``/``add``/``reset_data``, which move the version)."""
        with self.lock:
            version = self._versions["memberships"]
            if self._counts is None or self._counts[0] != version:
                self._counts = (version, member_counts(self.ds))
            return self._counts[1]

    def _index(self, kind: str, order: str) -> Index:
        version: Any = self._added[kind] if order == "created_at" else self._versions[kind]
        counted = kind == "plans" and order == "active_members_count"
        if counted:
            version = (version, self._versions["memberships"])  # the count moves with memberships
        cached = self._indexes.get((kind, order))
        if cached is not None and cached.version == version:
            return cached
        key_of = SORT_KEYS[kind][order]
        if counted:
            by_plan = self.member_counts()[1]
            key_of = lambda r: (1, by_plan[r.id])  # noqa: E731
        if order == "created_at":
            # The dataset keeps every list in (created_at, id) order already.
            records = list(self.ds.records(kind))
            index = Index([(1, r.created_at, r.id) for r in records], records, version)
        else:
            pairs = sorted(((*key_of(r), r.id), r) for r in self.ds.records(kind))
            index = Index([k for k, _ in pairs], [r for _, r in pairs], version)
        self._indexes[(kind, order)] = index
        return index

    def page(self, req: ListRequest) -> Page:
        if req.first is not None and req.last is not None:
            raise bad_param("last", "Pass either `first` or `last`, not both")
        backward = req.last is not None
        size = req.last if backward else (req.first if req.first is not None else DEFAULT_PAGE_SIZE)
        size = min(size, MAX_PAGE_SIZE)
        with self.lock:
            index = self._index(req.kind, req.order)
            full_lo, full_hi = self._created_window(index, req)
            lo, hi = full_lo, full_hi
            # Narrow the window (ascending positions) to what lies between the cursors.
            for cursor, param, after in ((req.after, "after", True), (req.before, "before", False)):
                if cursor is None:
                    continue
                key = decode_cursor(cursor, req.order, param)
                try:
                    if after != req.descending:  # rows past the key in ascending position order
                        lo = max(lo, bisect.bisect_right(index.keys, key))
                    else:
                        hi = min(hi, bisect.bisect_left(index.keys, key))
                except TypeError as exc:  # a forged cursor whose values don't compare
                    raise bad_param(param, f"`{param}` is not a valid cursor") from exc
            hi = max(lo, hi)
            ascending = not req.descending
            window = range(lo, hi) if ascending else range(hi - 1, lo - 1, -1)
            # Rows outside the window in sort order, nearest first: what came before the page's
            # start (previous side) and what comes after its end (next side).
            prev_side = range(lo - 1, full_lo - 1, -1) if ascending else range(hi, full_hi)
            next_side = range(hi, full_hi) if ascending else range(lo - 1, full_lo - 1, -1)
            picked = self._take(
                index, reversed(window) if backward else window, req.predicate, size + 1
            )
            more = len(picked) > size
            picked = picked[:size]
            if backward:
                picked.reverse()
                has_previous, has_next = more, self._any(index, next_side, req.predicate)
            else:
                has_next, has_previous = more, self._any(index, prev_side, req.predicate)
            start = encode_cursor(req.order, index.keys[picked[0]]) if picked else None
            end = encode_cursor(req.order, index.keys[picked[-1]]) if picked else None
            if not self.end_cursor_on_last_page:
                if backward and not has_previous:
                    start = None
                if not backward and not has_next:
                    end = None
            page_info = {
                "end_cursor": end,
                "start_cursor": start,
                "has_next_page": has_next,
                "has_previous_page": has_previous,
            }
            return Page([index.records[i] for i in picked], page_info)

    def _created_window(self, index: Index, req: ListRequest) -> tuple[int, int]:
        lo, hi = 0, len(index.keys)
        if req.order != "created_at":
            return lo, hi
        if req.created_after_ms is not None:
            lo = bisect.bisect_left(index.keys, (1, req.created_after_ms + 1))
        if req.created_before_ms is not None:
            hi = bisect.bisect_left(index.keys, (1, req.created_before_ms))
        return lo, max(lo, hi)

    @staticmethod
    def _take(index: Index, positions: range, predicate: Predicate | None, limit: int) -> list[int]:
        out: list[int] = []
        if limit <= 0:
            return out
        records = index.records
        for position in positions:
            if predicate is None or predicate(records[position]):
                out.append(position)
                if len(out) >= limit:
                    break
        return out

    @staticmethod
    def _any(index: Index, positions: range, predicate: Predicate | None) -> bool:
        if predicate is None:
            return len(positions) > 0
        records = index.records
        return any(predicate(records[p]) for p in positions)

    # -- changes -------------------------------------------------------------------------------

    def next_updated_at(self, record: Any | None = None) -> int:
        """A fresh ``updated_at``: wall-clock ms, strictly after the record's and every one handed
        out before (two changes in the same millisecond still order)."""
        floor = record.updated_at + 1 if record is not None else 0
        value = max(int(time.time() * 1000), floor, self._clock_ms + 1)
        self._clock_ms = value
        return value

    def remember(self, kind: str, record: Any) -> None:
        """Keep the original of a generated record the first time it changes (for a data reset)."""
        key = (kind, record.id)
        if key not in self._originals and not any(r is record for _, r in self._created):
            self._originals[key] = dataclasses.replace(record)

    def changed(self, kind: str) -> None:
        """Records of ``kind`` were updated in place (not added or removed)."""
        self._versions[kind] += 1

    def add(self, kind: str, record: Any) -> None:
        self.ds.add(kind, record)
        self._created.append((kind, record))
        self._versions[kind] += 1
        self._added[kind] += 1

    def reset_data(self) -> None:
        with self.lock:
            for kind, record in self._created:
                self.ds.records(kind).remove(record)
            for (kind, ident), original in self._originals.items():
                live = self.ds.get(kind, ident)
                for field in dataclasses.fields(original):
                    setattr(live, field.name, getattr(original, field.name))
            self._created.clear()
            self._originals.clear()
            self.ds.reindex()
            self._indexes.clear()
            for kind in KINDS:
                self._versions[kind] += 1
                self._added[kind] += 1

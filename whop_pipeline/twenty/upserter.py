"""``TwentyUpserter``: sends rows in batch upserts as large as the server allows, and isolates rows
the server rejects so the rest of the batch still lands (docs/twenty-api.md#batch-upsert).

Which rows to send was decided before (``store.crm.iter_candidates``: the records whose digest
differs from ``sync_state``); every outcome is recorded in the same database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store import crm, state
from whop_pipeline.twenty.client import TwentyBadRequest, TwentyClient
from whop_pipeline.twenty.records import DeferredRow, PreparedRow


@dataclass
class LoadCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deferred: int = 0
    write_calls: int = 0

    def metadata(self) -> dict[str, int]:
        return dict(self.__dict__)

    def __add__(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(**{k: v + getattr(other, k) for k, v in self.__dict__.items()})


def _path_value(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class TwentyUpserter:
    """Upserts one object's rows for one connection, recording every outcome in the database.

    ``unique_paths`` are the fields the server matches on besides ``id`` (e.g.
    ``emails.primaryEmail``, ``whopUserId``): two rows sharing one in a single call would fail the
    whole call, so such rows wait for the next batch.

    Rows can be fed in chunks (``feed``, then ``flush``): every full batch is sent as soon as it
    fills, so memory holds a chunk at a time and batches stay full across chunk boundaries.
    """

    def __init__(
        self,
        client: TwentyClient,
        engine: sa.Engine,
        *,
        connection: str,
        plural: str,
        unique_paths: Sequence[str],
        batch_size: int = 200,
        log: Callable[[str], None] | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.connection = connection
        self.plural = plural
        # The Twenty object written: ``plural`` itself, except for the health objects, which
        # update people and opportunities but keep their own sync state.
        self.endpoint = endpoint or plural
        self.unique_paths = ["id", *unique_paths]
        self.batch_size = batch_size
        self.log = log or (lambda _message: None)
        self.counts = LoadCounts()
        self._pending: deque[PreparedRow] = deque()
        self._sent = 0

    # --- planning -------------------------------------------------------------------------------

    def preview(self, ready: Sequence[PreparedRow], waiting: Sequence[DeferredRow]) -> None:
        """Dry run: count what ``feed`` and ``defer`` would write, writing nothing."""
        self._count_written(ready)
        self.counts.deferred += len(waiting)

    def _count_written(self, rows: Sequence[PreparedRow]) -> None:
        for row in rows:
            if row.synced_before:
                self.counts.updated += 1
            else:
                self.counts.created += 1

    def defer(self, rows: Sequence[DeferredRow]) -> None:
        with self.engine.begin() as conn:
            for row in rows:
                state.record_error(
                    conn, self.connection, self.plural, row.key, row.reason, row.source
                )
        self.counts.deferred += len(rows)

    # --- sending --------------------------------------------------------------------------------

    def _unique_values(self, row: PreparedRow) -> set[tuple[str, Any]]:
        values = set()
        for path in self.unique_paths:
            value = _path_value(row.record, path)
            if value not in (None, ""):
                values.add((path, value.lower() if isinstance(value, str) else value))
        return values

    def _next_batch(self) -> list[PreparedRow]:
        """Up to ``batch_size`` pending rows, no two sharing a unique value (those wait)."""
        batch: list[PreparedRow] = []
        seen: set[tuple[str, Any]] = set()
        postponed: list[PreparedRow] = []
        while self._pending and len(batch) < self.batch_size:
            row = self._pending.popleft()
            values = self._unique_values(row)
            if values & seen:
                postponed.append(row)
                continue
            seen |= values
            batch.append(row)
        self._pending.extendleft(reversed(postponed))
        return batch

    def _drain(self, final: bool) -> None:
        while self._pending and (final or len(self._pending) >= self.batch_size):
            batch = self._next_batch()
            self._send_batch(batch)
            self._sent += len(batch)
            self.log(f"{self.plural}: {self._sent} rows sent")

    def feed(self, rows: Sequence[PreparedRow]) -> None:
        """Queue ``rows``; send every full batch now, keep the rest for later."""
        self._pending.extend(rows)
        self._drain(final=False)

    def flush(self) -> LoadCounts:
        """Send what is still pending; returns the counts of the whole load."""
        self._drain(final=True)
        return self.counts

    def send(self, rows: Sequence[PreparedRow]) -> LoadCounts:
        """Send ``rows`` and record each outcome."""
        self.feed(rows)
        return self.flush()

    def _send_batch(self, batch: list[PreparedRow]) -> None:
        if not batch:
            return
        try:
            self.counts.write_calls += 1
            results = self.client.batch_upsert(self.endpoint, [row.record for row in batch])
        except TwentyBadRequest as error:
            limit = error.max_batch
            if limit is not None and limit < len(batch):
                self.log(f"{self.plural}: the server takes at most {limit} records per call")
                self.batch_size = limit
                for start in range(0, len(batch), limit):
                    self._send_batch(batch[start : start + limit])
                return
            if len(batch) == 1:
                self._reject(batch[0], error)
                return
            # Bisect: the halves without the bad row land; the bad row ends alone and recorded.
            middle = len(batch) // 2
            self._send_batch(batch[:middle])
            self._send_batch(batch[middle:])
            return
        self._record_success(batch, results)

    def _record_success(self, batch: list[PreparedRow], results: list[dict[str, Any]]) -> None:
        synced = [
            state.SyncedRecord(row.key, result["id"], row.digest)
            for row, result in zip(batch, results, strict=True)
        ]
        with self.engine.begin() as conn:
            state.write_state(conn, self.connection, self.plural, synced)
            state.resolve_errors(conn, self.connection, self.plural, [r.key for r in batch])
            crm.mark_loaded(
                conn, self.connection, self.plural, [(r.key, r.digest) for r in batch if r.complete]
            )
        self._count_written(batch)

    def _reject(self, row: PreparedRow, error: TwentyBadRequest) -> None:
        reason = "; ".join(error.messages) or str(error)
        self.log(f"{self.plural}: {row.key} rejected: {reason}")
        with self.engine.begin() as conn:
            state.record_error(conn, self.connection, self.plural, row.key, reason, row.source)
        self.counts.rejected += 1


def synced_ids(engine: sa.Engine, connection: str, plural: str, keys) -> dict[str, str]:
    """Source key → Twenty id for rows of ``plural`` already in Twenty."""
    with engine.connect() as conn:
        return {k: r.twenty_id for k, r in state.read_state(conn, connection, plural, keys).items()}

"""Group commit for the webhook receiver: deliveries queued by concurrent requests are stored
together, in one transaction, by one writer thread.

Every delivery is still acknowledged only after a durable commit of its own row, but concurrent
deliveries share one commit (one fsync on SQLite) instead of queueing on SQLite's single write
lock, and the event loop never waits on the database. Measured in ``benchmarks/bench_receiver.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from whop_pipeline.inbox.store import NewEvent, store_events
from whop_pipeline.store.database import get_engine

log = logging.getLogger(__name__)


def _is_row_error(exc: Exception) -> bool:
    """Caused by the rows rather than by the database (a value the column refuses, a constraint):
    a batch failing so is retried row by row, so one bad delivery cannot fail the others with it.
    A ``StatementError`` that is not a driver error wraps a value that could not be bound."""
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError | ValueError | TypeError):
        return True
    return isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError)


class InboxUnavailable(RuntimeError):
    """The inbox cannot take a delivery right now (queue full or writer closed)."""


class _Pending:
    __slots__ = ("future", "item", "loop")

    def __init__(self, item: NewEvent, loop: asyncio.AbstractEventLoop) -> None:
        self.item = item
        self.loop = loop
        self.future: asyncio.Future[bool] = loop.create_future()


def _settle(outcomes: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    for future, outcome in outcomes:
        if future.done():  # the request gave up (timed out) meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class InboxWriter:
    """Stores deliveries with group commit on one thread: each transaction takes every delivery
    queued while the previous one committed (up to ``max_batch``). ``submit`` (called on the event
    loop) returns a future that resolves to True (stored) / False (duplicate) only after the
    commit, or to the error. A whole batch is settled with one wake-up of the event loop."""

    def __init__(self, db_url: str, *, max_batch: int = 500, max_pending: int = 10_000) -> None:
        self.db_url = db_url
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, item: NewEvent) -> asyncio.Future[bool]:
        pending = _Pending(item, asyncio.get_running_loop())
        with self._cond:
            if self._closed:
                raise InboxUnavailable("the receiver is shutting down")
            if len(self._queue) >= self.max_pending:
                # Requests that timed out are still queued until the writer gets to them.
                self._queue = collections.deque(p for p in self._queue if not p.future.done())
            if len(self._queue) >= self.max_pending:
                raise InboxUnavailable("too many deliveries waiting for the database")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._queue.append(pending)
            self._cond.notify()
        return pending.future

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                count = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
            # A request that already gave up (timed out, answered 503) is not written.
            live = [p for p in batch if not p.future.cancelled()]
            if live:
                self._settle(live, self._write(live))

    def _write(self, batch: Sequence[_Pending]) -> list[bool | BaseException]:
        try:
            return list(self._commit([p.item for p in batch]))
        except Exception as exc:
            if _is_row_error(exc):
                if len(batch) > 1:
                    return [outcome for p in batch for outcome in self._write([p])]
                log.error("inbox write failed for one delivery: %s", _describe_db_error(exc))
                return [exc]
            # The database is unreachable, locked, read-only, missing the table, ...
            log.error(
                "inbox write failed for %d deliveries: %s", len(batch), _describe_db_error(exc)
            )
            return [exc] * len(batch)

    def _commit(self, items: Sequence[NewEvent]) -> list[bool]:
        with get_engine(self.db_url).begin() as conn:
            return store_events(conn, items)

    @staticmethod
    def _settle(batch: Sequence[_Pending], outcomes: Sequence[bool | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, settled in by_loop.items():
            # A stopped server's loop is closed: its requests are gone, nothing to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)


def _describe_db_error(exc: BaseException) -> str:
    """The error type and the driver's first line: SQLAlchemy's full text carries the statement and
    its parameters (payloads), so it is not logged."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__

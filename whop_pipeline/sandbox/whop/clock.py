"""The Whop emulator's own clock: wall-clock time plus an offset that tests move forward.

It measures what Whop measures in days and minutes: authorization codes expiring after 10 minutes,
access tokens after their lifetime, webhook deliveries kept 30 days, an endpoint disabled after 3
days of failures, and the ``sent_at`` of webhook deliveries. It never drives the retry timers of
webhook deliveries (seconds, real time) nor the ``webhook-timestamp`` header, which receivers check
against their own clock.

Advance it with ``clock.advance(seconds)`` or ``POST /_sandbox/clock {"advance_seconds": N}``;
``GET /_sandbox/clock`` reads it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from whop_pipeline.sandbox.dataset import iso


class SandboxClock:
    """``base()`` (default ``time.time``) plus an offset; thread-safe."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self._base = base
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def now(self) -> float:
        """Epoch seconds."""
        with self._lock:
            return self._base() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (never backward); returns the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def snapshot(self) -> dict[str, object]:
        return {"now": iso(self.now_ms()), "offset_seconds": self.offset}


def parse_time(value: str) -> int:
    """An ISO 8601 timestamp (``Z`` or an offset; naive means UTC) to epoch milliseconds."""
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


__all__ = ["SandboxClock", "parse_time"]

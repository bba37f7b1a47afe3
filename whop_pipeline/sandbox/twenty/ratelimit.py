"""Workspace rate limiting as Twenty's throttler does it (docs/twenty-api.md#rate-limit): two
token buckets per workspace, short (100 per 1000 ms) and long (100 per 60000 ms by default),
refilled continuously; each API call costs one token, whatever it carries (a 200-row batch is one
call).

A call is admitted only when both buckets hold a token, and a refused call consumes nothing, as in
the atomic ``try-consume-token-buckets`` script. The 429 names the narrowest exhausted bucket and
``Retry-After`` covers the slowest one to refill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from whop_pipeline.sandbox.twenty.errors import throttled

SHORT_LIMIT = 100
SHORT_WINDOW_MS = 1000
LONG_WINDOW_MS = 60000


@dataclass
class TokenBucket:
    capacity: float
    window_ms: int
    tokens: float
    updated_at: float

    def refill(self, now: float) -> None:
        elapsed_ms = max(0.0, (now - self.updated_at) * 1000)
        self.tokens = min(self.capacity, self.tokens + elapsed_ms * self.capacity / self.window_ms)
        self.updated_at = now

    def seconds_until_token(self) -> float:
        missing = 1 - self.tokens
        return max(0.0, missing * self.window_ms / self.capacity / 1000)

    def describe(self) -> str:
        capacity = int(self.capacity) if float(self.capacity).is_integer() else self.capacity
        return f"Limit reached ({capacity} tokens per {self.window_ms} ms)"


class WorkspaceThrottle:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self.short = TokenBucket(SHORT_LIMIT, SHORT_WINDOW_MS, SHORT_LIMIT, now)
        self.long = TokenBucket(per_minute, LONG_WINDOW_MS, per_minute, now)
        self._check(per_minute)

    @staticmethod
    def _check(per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("rate_limit_per_minute must be positive")

    def acquire(self) -> None:
        """Takes one token from each bucket, or raises the 429 ``TwentyError``."""
        with self._lock:
            now = self._clock()
            buckets = (self.short, self.long)
            for bucket in buckets:
                bucket.refill(now)
            exhausted = [bucket for bucket in buckets if bucket.tokens < 1]
            if exhausted:
                retry_after = max(bucket.seconds_until_token() for bucket in exhausted)
                raise throttled(exhausted[0].describe(), retry_after)
            for bucket in buckets:
                bucket.tokens -= 1

    def set_per_minute(self, per_minute: float) -> None:
        self._check(per_minute)
        with self._lock:
            self.long.refill(self._clock())
            self.long.capacity = per_minute
            self.long.tokens = min(self.long.tokens, per_minute)

    def reset(self) -> None:
        with self._lock:
            now = self._clock()
            for bucket in (self.short, self.long):
                bucket.tokens, bucket.updated_at = bucket.capacity, now

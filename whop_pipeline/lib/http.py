"""HTTP plumbing shared by the Whop and Twenty clients: a token-bucket rate limiter, ``Retry-After``
parsing, and a retry loop for idempotent calls with capped exponential backoff.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


class RateLimiter:
    """Token bucket: at most ``rate`` acquisitions per ``per`` seconds, bursts up to ``burst``.

    Thread-safe; ``acquire`` sleeps outside the lock so waiting callers do not serialise each other's
    bookkeeping.
    """

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.fill_rate = rate / per
        # Default burst: one second's worth of calls (at least one).
        self.capacity = burst if burst is not None else max(1.0, self.fill_rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(
                    self.capacity, self._tokens + (now - self._updated) * self.fill_rate
                )
                self._updated = now
                # The tolerance absorbs float rounding: without it a bucket left a hair under one
                # token would keep sleeping for ever-smaller, eventually zero, intervals.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1)
                    self.waited_seconds += waited
                    return waited
                delay = (1 - self._tokens) / self.fill_rate
            self._sleep(delay)
            waited += delay

    def penalize(self, seconds: float) -> None:
        """The server said to wait: empty the bucket so every caller waits too."""
        with self._lock:
            self._tokens = min(self._tokens, 1 - seconds * self.fill_rate)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass
class CallStats:
    """Counts every request sent (retries included) and the waits they cost."""

    calls: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    backoff_seconds: float = 0.0
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def count(self, endpoint: str) -> None:
        self.calls += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    jitter: float = 0.1

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay * (1 + random.uniform(-self.jitter, self.jitter))


class RetriesExhausted(RuntimeError):
    pass


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    endpoint: str,
    limiter: RateLimiter | None,
    policy: RetryPolicy,
    stats: CallStats,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> httpx.Response:
    """Send an idempotent request, retrying 408/409/429/5xx, connection errors and timeouts.

    Returns the first non-retryable response (2xx or a 4xx the caller must interpret). Raises
    ``RetriesExhausted`` (without the request's headers: they hold the API key) when every attempt
    failed.
    """
    last_problem = ""
    for attempt in range(1, policy.max_attempts + 1):
        if limiter is not None:
            limiter.acquire()
        stats.count(endpoint)
        retry_after: float | None = None
        try:
            response = send()
        except RETRYABLE_ERRORS as exc:
            stats.connection_errors += 1
            last_problem = f"{type(exc).__name__}"
        else:
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if response.status_code == 429:
                stats.throttled += 1
                if limiter is not None and retry_after:
                    limiter.penalize(retry_after)
            else:
                stats.server_errors += 1
            last_problem = f"HTTP {response.status_code}"
        if attempt == policy.max_attempts:
            break
        delay = policy.backoff(attempt, retry_after)
        stats.retries += 1
        stats.backoff_seconds += delay
        if on_retry is not None:
            on_retry(f"{endpoint}: {last_problem}, retry {attempt} in {delay:.1f}s")
        sleep(delay)
    raise RetriesExhausted(
        f"{endpoint} failed after {policy.max_attempts} attempts ({last_problem})"
    )

"""Plumbing shared by the Whop and Twenty emulators: request stats, fault injection, control routes,
and serving an ASGI app on a background thread (so tests and the demo run everything in-process).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_sandbox"
RECENT_LIMIT = 1000


@dataclass
class SlidingPeak:
    """The most events seen in any window of ``seconds``, O(1) amortized per event: the deque
    holds the times inside the window ending at the latest event, and the maximum over all
    windows is reached by one that ends at an event. Calls are timed on arrival but recorded when
    they finish, so a time that arrives late is inserted in order (it is near the end)."""

    seconds: float
    times: collections.deque = field(default_factory=collections.deque)
    peak: int = 0

    def add(self, at: float) -> None:
        if not self.times or at >= self.times[-1]:
            self.times.append(at)
        else:
            bisect.insort(self.times, at)
        latest = self.times[-1]
        while self.times[0] <= latest - self.seconds:
            self.times.popleft()
        self.peak = max(self.peak, len(self.times))

    def reset(self) -> None:
        self.times.clear()
        self.peak = 0


@dataclass
class RequestStats:
    """What the emulator served. ``/_sandbox`` calls are never counted.

    With ``window_seconds`` the snapshot also holds the most calls, and the most calls not
    answered 429, seen in any sliding window of that length (so a client's rate can be checked
    from outside). Calls are timed on arrival with ``clock``."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    recent: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_LIMIT)
    )
    total: int = 0
    throttled: int = 0
    faults: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    window_seconds: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        seconds = self.window_seconds
        self._calls = SlidingPeak(seconds) if seconds else None
        self._admitted = SlidingPeak(seconds) if seconds else None

    def now(self) -> float:
        return self.clock()

    def record(
        self, method: str, path: str, query: str, status: int, at: float | None = None
    ) -> None:
        with self.lock:
            self.total += 1
            self.requests[f"{method} {path}"] += 1
            self.recent.append({"method": method, "path": path, "query": query, "status": status})
            if status == 429:
                self.throttled += 1
            if self._calls is not None and self._admitted is not None:
                at = self.clock() if at is None else at
                self._calls.add(at)
                if status != 429:
                    self._admitted.add(at)

    def record_fault(self) -> None:
        with self.lock:
            self.faults += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            snapshot = {
                "requests": dict(self.requests),
                "recent": list(self.recent),
                "total": self.total,
                "throttled": self.throttled,
                "faults": self.faults,
            }
            if self._calls is not None and self._admitted is not None:
                snapshot["window_seconds"] = self.window_seconds
                snapshot["max_calls_in_window"] = self._calls.peak
                snapshot["max_admitted_in_window"] = self._admitted.peak
            return snapshot

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.recent.clear()
            self.total = self.throttled = self.faults = 0
            for peak in (self._calls, self._admitted):
                if peak is not None:
                    peak.reset()


@dataclass
class FaultPlan:
    """Latency and random faults: 500s, 429s and dropped connections, in equal shares of ``rate``.

    Latency is awaited through ``sleep`` (``asyncio.sleep``); tests replace it to see the requested
    delays without a clock."""

    latency_ms: float = 0.0
    rate: float = 0.0
    seed: int | None = None
    retry_after_seconds: float = 1.0
    sleep: Callable[[float], Awaitable[Any]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self) -> str | None:
        """``None`` (serve normally), ``"500"``, ``"429"`` or ``"drop"``."""
        if self.rate <= 0:
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            return self._random.choice(("500", "429", "drop"))


class DroppedConnection(Exception):
    """Raised after the response has started, so uvicorn closes the socket mid-response."""


async def send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


ErrorBody = Callable[[int], tuple[dict[str, Any], dict[str, str]]]


class SandboxMiddleware:
    """Wraps an emulator app: counts API calls, injects latency and faults, serves the shared
    ``/_sandbox/stats`` route. ``/_sandbox`` requests pass straight to the app, uncounted and unfaulted.

    ``error_body(status)`` returns the emulated API's own error body and headers for an injected 500 or
    429, so a fault looks exactly like one from the real server.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        stats: RequestStats,
        faults: FaultPlan,
        error_body: ErrorBody,
    ) -> None:
        self.app = app
        self.stats = stats
        self.faults = faults
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(CONTROL_PREFIX):
            if path == f"{CONTROL_PREFIX}/stats" and method == "GET":
                await send_json(send, 200, self.stats.snapshot())
                return
            await self.app(scope, receive, send)
            return

        query = scope.get("query_string", b"").decode()
        arrived = self.stats.now()
        if self.faults.latency_ms:
            await self.faults.sleep(self.faults.latency_ms / 1000)
        fault = self.faults.pick()
        if fault is not None:
            self.stats.record_fault()
            if fault == "drop":
                self.stats.record(method, path, query, 0, arrived)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                raise DroppedConnection(f"sandbox dropped {method} {path}")
            status = int(fault)
            body, headers = self.error_body(status)
            self.stats.record(method, path, query, status, arrived)
            await send_json(send, status, body, headers)
            return

        status_holder = {"status": 0}

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.stats.record(method, path, query, status_holder["status"], arrived)


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header (scheme in any case), else ``None``.
    Only picks the account to dispatch to: each emulator still checks the header its own way."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def query_value(scope: Scope, name: str) -> str | None:
    """The last value of query parameter ``name``, else ``None``."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[-1] if values else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """Runs an ASGI app under uvicorn on a daemon thread; ``start()`` returns once it accepts."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, daemon=True, name=f"sandbox:{port}"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

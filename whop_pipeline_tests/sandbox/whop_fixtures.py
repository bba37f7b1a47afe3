"""Fixtures and helpers shared by the Whop emulator tests (imported by each ``test_whop_*`` module;
names start with ``whop_`` so they never clash with the Twenty emulator's)."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from whop_sdk import Whop
from whop_sdk.environment import WhopEnvironment

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.dataset import WhopDataset, generate_dataset
from whop_pipeline.sandbox.whop import WhopEmulator, create_whop_app

WHOP_NOW = datetime(2026, 6, 1, tzinfo=UTC)
WHOP_KEY = "whop-sandbox-test-key"
WHOP_API_VERSION = "2026-10-15-1"
# One TLS context for every test client: building one per httpx.Client costs ~0.15 s here.
WHOP_TLS = httpx.create_ssl_context()


@dataclass
class WhopEnv:
    """A served emulator plus an authenticated HTTP client for it."""

    emulator: WhopEmulator
    server: BackgroundServer
    http: httpx.Client

    @property
    def dataset(self) -> WhopDataset:
        return self.emulator.dataset

    @property
    def base(self) -> str:
        return f"{self.server.url}/api/v1"

    def get(self, path: str, params: Any = None, **headers: str) -> httpx.Response:
        return self.http.get(f"{self.base}{path}", params=params, headers=headers or None)

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"{self.server.url}/_sandbox{path}", **kwargs)

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.server.url}/_sandbox/stats").json()

    def sdk(self, token: str = WHOP_KEY, **options: Any) -> Whop:
        """The official client pointed at the emulator (``environment`` carries the base URL)."""
        environment = WhopEnvironment(api=self.base, vault=self.base)
        return Whop(
            token=token, environment=environment, api_version_date=WHOP_API_VERSION, **options
        )

    def list_all(self, resource: str, first: int = 100, **params: Any) -> list[dict[str, Any]]:
        """Every row of a list, following ``has_next_page``."""
        rows: list[dict[str, Any]] = []
        after = None
        while True:
            query = {"account_id": self.dataset.account.id, "first": first, **params}
            if after:
                query["after"] = after
            response = self.get(f"/{resource}", query)
            assert response.status_code == 200, response.text
            body = response.json()
            rows += body["data"]
            if not body["page_info"]["has_next_page"]:
                return rows
            after = body["page_info"]["end_cursor"]


def whop_tiny_dataset(seed: int = 0) -> WhopDataset:
    return generate_dataset("tiny", seed=seed, now=WHOP_NOW)


def start_whop(dataset: WhopDataset | None = None, **options: Any) -> WhopEnv:
    emulator = create_whop_app(dataset or whop_tiny_dataset(), api_key=WHOP_KEY, **options)
    server = BackgroundServer(emulator.app).start()
    headers = {"Authorization": f"Bearer {WHOP_KEY}", "Api-Version-Date": WHOP_API_VERSION}
    http = httpx.Client(headers=headers, verify=WHOP_TLS, timeout=30)
    return WhopEnv(emulator, server, http)


def stop_whop(env: WhopEnv) -> None:
    env.http.close()
    env.server.stop()
    env.emulator.close()


@pytest.fixture(scope="module")
def whop_env() -> Iterator[WhopEnv]:
    """One read-only emulator per module (tests that change data use ``whop_fresh``)."""
    env = start_whop()
    yield env
    stop_whop(env)


@pytest.fixture
def whop_fresh() -> Iterator[WhopEnv]:
    env = start_whop()
    yield env
    stop_whop(env)


@dataclass
class WhopReceiver:
    """A local webhook endpoint recording raw bodies and headers. The n-th attempt of each message
    (by ``webhook-id``) is answered with ``statuses[n]``, then 200."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[tuple[bytes, dict[str, str], float]] = field(default_factory=list)
    server: BackgroundServer | None = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hooks/whop"

    def start(self) -> WhopReceiver:
        import asyncio
        import time

        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            if self.delay:
                await asyncio.sleep(self.delay)
            with self.arrived:
                self.received.append((body, dict(request.headers), time.monotonic()))
                attempt = sum(
                    1 for r in self.received if r[1]["webhook-id"] == request.headers["webhook-id"]
                )
                status = self.statuses[attempt - 1] if attempt <= len(self.statuses) else 200
                self.arrived.notify_all()
            return JSONResponse({"ok": status < 300}, status_code=status)

        self.server = BackgroundServer(
            Starlette(routes=[Route("/hooks/whop", hook, methods=["POST"])])
        ).start()
        return self

    def wait_for(
        self, count: int, timeout: float = 5.0
    ) -> list[tuple[bytes, dict[str, str], float]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def whop_receiver() -> Iterator[WhopReceiver]:
    receiver = WhopReceiver().start()
    yield receiver
    receiver.stop()


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    found, pending = [], [annotation]
    while pending:
        candidate = pending.pop()
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            found.append(candidate)
        else:
            pending.extend(typing.get_args(candidate))
    return found


def whop_shape_problems(
    model: type[pydantic.BaseModel],
    obj: Any,
    path: str = "$",
    may_omit: frozenset[str] = frozenset(),
) -> list[str]:
    """Keys ``obj`` has that ``model`` does not declare, and declared keys it lacks (except the
    top-level ``may_omit``), recursively. The SDK models allow extra keys, so ``model_validate``
    alone would let a typo through."""
    if not isinstance(obj, dict):
        return [f"{path}: expected an object, got {type(obj).__name__}"]
    declared = {(f.alias or name): f for name, f in model.model_fields.items()}
    problems = [
        f"{path}.{key}: not declared by {model.__name__}"
        for key in sorted(set(obj) - set(declared))
    ]
    missing = set(declared) - set(obj) - may_omit
    problems += [f"{path}.{key}: missing ({model.__name__})" for key in sorted(missing)]
    for key, info in declared.items():
        value, nested = obj.get(key), _models_in(info.annotation)
        if value is None or not nested:
            continue
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            problems += whop_shape_problems(nested[0], item, f"{path}.{key}[{index}]")
    return problems

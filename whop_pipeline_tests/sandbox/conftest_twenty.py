"""Fixtures for the Twenty emulator's contract tests, loaded explicitly by each ``test_twenty_*``
module through ``pytest_plugins``.

One emulator and server serve the whole session; every test starts from a reset workspace. Tests
that need another configuration (a low rate limit, a small batch maximum, legacy NoteTargets) start
their own through ``twenty_factory``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.twenty import TwentyEmulator, create_twenty_app

TWENTY_API_KEY = "twenty-test-key"
# High enough that ordinary tests never meet the long bucket; the limit tests set their own.
TWENTY_TEST_RATE_LIMIT = 100_000


class TwentyTestClient(httpx.Client):
    """An httpx client with the few metadata look-ups and error checks the tests repeat."""

    def object_id(self, object_singular: str) -> str:
        objects = self.get("/rest/metadata/objects").json()["data"]["objects"]
        return next(item["id"] for item in objects if item["nameSingular"] == object_singular)

    def field_id(self, object_singular: str, field_name: str) -> str:
        """Looks a field up through the metadata API, as the pipeline does
        (docs/twenty-api.md#metadata-api)."""
        objects = self.get("/rest/metadata/objects").json()["data"]["objects"]
        obj = next(item for item in objects if item["nameSingular"] == object_singular)
        return next(field["id"] for field in obj["fields"] if field["name"] == field_name)

    def create_field(self, object_singular: str, name: str, **extra: Any) -> dict[str, Any]:
        body = {
            "objectMetadataId": self.object_id(object_singular),
            "type": "TEXT",
            "name": name,
            "label": name,
            **extra,
        }
        response = self.post("/rest/metadata/fields", json=body)
        assert response.status_code == 201, response.text
        return response.json()["data"]["createOneField"]

    @staticmethod
    def messages(response: httpx.Response) -> list[str]:
        """The ``messages`` of a Twenty error body, after checking the body's shape
        (docs/twenty-api.md#error-bodies)."""
        body = response.json()
        assert set(body) == {"statusCode", "error", "messages"}, body
        assert body["statusCode"] == response.status_code
        return body["messages"]


def twenty_http_client(server: BackgroundServer, api_key: str = TWENTY_API_KEY) -> TwentyTestClient:
    return TwentyTestClient(
        base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    )


@pytest.fixture(scope="session")
def twenty_session() -> Iterator[tuple[TwentyEmulator, BackgroundServer]]:
    emulator = create_twenty_app(
        api_key=TWENTY_API_KEY, rate_limit_per_minute=TWENTY_TEST_RATE_LIMIT
    )
    with BackgroundServer(emulator.app) as server:
        yield emulator, server


@pytest.fixture
def twenty(twenty_session: tuple[TwentyEmulator, BackgroundServer]) -> TwentyEmulator:
    emulator, _ = twenty_session
    emulator.reset(data=True)
    return emulator


@pytest.fixture
def twenty_client(
    twenty: TwentyEmulator, twenty_session: tuple[TwentyEmulator, BackgroundServer]
) -> Iterator[TwentyTestClient]:
    with twenty_http_client(twenty_session[1]) as client:
        yield client


@pytest.fixture
def twenty_factory() -> Iterator[Callable[..., tuple[TwentyEmulator, TwentyTestClient]]]:
    """Starts an emulator with custom options; every server started is stopped afterwards."""
    started: list[tuple[BackgroundServer, TwentyTestClient]] = []

    def start(**options: Any) -> tuple[TwentyEmulator, TwentyTestClient]:
        options.setdefault("api_key", TWENTY_API_KEY)
        emulator = create_twenty_app(**options)
        server = BackgroundServer(emulator.app).start()
        client = twenty_http_client(server, options["api_key"])
        started.append((server, client))
        return emulator, client

    yield start
    for server, client in started:
        client.close()
        server.stop()

"""The receiver verifies each delivery with its connection's secret from the ``connections`` table:
per request, through a short per-name cache, with every refusal storing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from starlette.applications import Starlette

from whop_pipeline.inbox.receiver import (
    ConnectionSecretsResolver,
    connection_secrets_from_env,
    create_receiver_app,
)
from whop_pipeline.inbox.webhook_secrets import (
    CACHE_SECONDS_VAR,
    DEFAULT_SECRET_CACHE_SECONDS,
    secret_cache_seconds_from_env,
)
from whop_pipeline.lib.secrets import KEYS_VAR, SecretBox
from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.settings import ConnectionSettings, SettingsError
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import webhook_inbox
from whop_pipeline_tests.inbox.webhook_helpers import signed_headers

pytestmark = pytest.mark.sandbox

SECRET_ACME = "ws_acme_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"
SECRET_GLOBEX = "ws_globex_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRET_ROTATED = "ws_acme_rotated_11223344556677889900aabb"
SECRET_ENV = "ws_env_99887766554433221100ffeeddccbbaa"
ALL_SECRETS = (SECRET_ACME, SECRET_GLOBEX, SECRET_ROTATED, SECRET_ENV)
TTL = 5.0
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def delivery(n: int) -> tuple[bytes, str]:
    webhook_id = f"msg_{n:05d}"
    body = {
        "id": webhook_id,
        "type": "payment.succeeded",
        "api_version": "v1",
        "account_id": "biz_acme",
        "timestamp": "2026-12-06T12:00:00.000Z",
        "data": {"id": f"pay_{n}", "status": "paid", "updated_at": "2026-12-06T11:59:00.000Z"},
    }
    return json.dumps(body).encode(), webhook_id


def add(db_url: str, name: str, webhook_secret: str | None, *, account: str = "biz_acme") -> None:
    """Store a connection with its own credentials (reconnecting it if it was disconnected)."""
    with get_engine(db_url).begin() as conn:
        connections.save(
            conn,
            SecretBox.from_env(),
            name=name,
            whop_account_id=account,
            twenty_api_url="http://twenty.test",
            whop_api_key=f"whop-key-{name}",
            twenty_api_key=f"twenty-key-{name}",
            webhook_secret=webhook_secret,
            now=NOW,
        )


def disconnect(db_url: str, name: str) -> None:
    with get_engine(db_url).begin() as conn:
        connections.disconnect(conn, name, now=NOW)


def inbox_rows(db_url: str) -> list[tuple[str, str]]:
    """Every inbox row of every connection."""
    with get_engine(db_url).connect() as conn:
        query = sa.select(webhook_inbox.c.connection, webhook_inbox.c.webhook_id)
        return sorted(tuple(row) for row in conn.execute(query))


@dataclass
class Receiver:
    db_url: str
    client: httpx.Client
    resolver: ConnectionSecretsResolver
    clock: FakeClock
    lookups: list[str] = field(default_factory=list)
    sent: int = 0

    def post(self, connection: str, secret: str) -> httpx.Response:
        self.sent += 1
        body, webhook_id = delivery(self.sent)
        headers = signed_headers(body, secret, webhook_id)
        return self.client.post(f"/webhooks/whop/{connection}", content=body, headers=headers)

    def rows(self) -> list[tuple[str, str]]:
        return inbox_rows(self.db_url)


@pytest.fixture
def fernet_key(monkeypatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEYS_VAR, key)
    return key


@contextlib.contextmanager
def serve(db_url: str, static: Mapping[str, str] | None = None) -> Iterator[Receiver]:
    clock = FakeClock()
    lookups: list[str] = []
    resolver = ConnectionSecretsResolver(
        lambda: get_engine(db_url),
        static=static,
        ttl_seconds=TTL,
        clock=clock,
        on_lookup=lookups.append,
    )
    app = create_receiver_app(db_url=db_url, resolver=resolver)
    with http_client(app) as client:
        yield Receiver(db_url, client, resolver, clock, lookups)


@contextlib.contextmanager
def http_client(app: Starlette) -> Iterator[httpx.Client]:
    """The app served over HTTP, as Whop reaches it; its writer is flushed and closed after."""
    server = BackgroundServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.stop()
        app.state.writer.close()


@pytest.fixture
def receiver(sqlite_url: str, fernet_key: str) -> Iterator[Receiver]:
    get_engine(sqlite_url)
    with serve(sqlite_url) as running:
        yield running


def assert_answer(response: httpx.Response, status: int, body: dict[str, str]) -> None:
    assert (response.status_code, response.json()) == (status, body), response.text
    for secret in ALL_SECRETS:
        assert secret not in response.text


def assert_retry_later(response: httpx.Response, error: str) -> None:
    assert_answer(response, 503, {"error": error})
    assert int(response.headers["retry-after"]) > 0


def test_a_table_connection_is_verified_with_its_stored_secret(receiver: Receiver):
    add(receiver.db_url, "acme", SECRET_ACME)
    assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
    assert receiver.rows() == [("acme", "msg_00001")]
    assert receiver.lookups == ["acme"]


def test_a_secret_of_one_connection_cannot_write_into_another(receiver: Receiver):
    add(receiver.db_url, "acme", SECRET_ACME)
    add(receiver.db_url, "globex", SECRET_GLOBEX, account="biz_globex")
    assert_answer(receiver.post("globex", SECRET_ACME), 401, {"error": "invalid signature"})
    assert_answer(receiver.post("acme", SECRET_GLOBEX), 401, {"error": "invalid signature"})
    assert receiver.rows() == []  # not in globex's inbox, nor in acme's, nor anywhere
    assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
    assert_answer(receiver.post("globex", SECRET_GLOBEX), 200, {"status": "stored"})
    assert receiver.rows() == [("acme", "msg_00003"), ("globex", "msg_00004")]


def test_unknown_connections_get_404_and_store_nothing(receiver: Receiver):
    add(receiver.db_url, "acme", SECRET_ACME)
    for name in ("initech", "Acme", "-acme", "acme.corp", "a" * 64):
        assert_answer(receiver.post(name, SECRET_ACME), 404, {"error": "unknown connection"})
    assert receiver.rows() == []
    # Names that cannot be connections are refused without touching the database.
    assert receiver.lookups == ["initech"]


def test_a_disconnected_connection_gets_410_and_stores_nothing(sqlite_url: str, fernet_key: str):
    add(sqlite_url, "acme", SECRET_ACME)
    add(sqlite_url, "globex", SECRET_GLOBEX, account="biz_globex")
    disconnect(sqlite_url, "globex")
    # The table wins over a static secret for the same name: a disconnect cannot be bypassed.
    with serve(sqlite_url, static={"globex": SECRET_GLOBEX}) as receiver:
        gone = {"error": "connection disconnected"}
        assert_answer(receiver.post("globex", SECRET_GLOBEX), 410, gone)
        assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
        disconnect(sqlite_url, "acme")
        receiver.clock.advance(TTL)
        assert_answer(receiver.post("acme", SECRET_ACME), 410, gone)
        assert receiver.rows() == [("acme", "msg_00002")]


def test_paused_and_needs_reauth_connections_still_store(receiver: Receiver):
    add(receiver.db_url, "acme", SECRET_ACME)
    add(receiver.db_url, "globex", SECRET_GLOBEX, account="biz_globex")
    with get_engine(receiver.db_url).begin() as conn:
        connections.set_status(conn, "acme", "paused")
        connections.set_status(conn, "globex", "needs_reauth")
    assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
    assert_answer(receiver.post("globex", SECRET_GLOBEX), 200, {"status": "stored"})
    assert receiver.rows() == [("acme", "msg_00001"), ("globex", "msg_00002")]


def test_a_rotated_secret_takes_effect_after_the_ttl(receiver: Receiver):
    add(receiver.db_url, "acme", SECRET_ACME)
    assert receiver.post("acme", SECRET_ACME).status_code == 200  # msg_00001
    disconnect(receiver.db_url, "acme")
    add(receiver.db_url, "acme", SECRET_ROTATED)
    # Within the TTL the cached secret still verifies.
    assert receiver.post("acme", SECRET_ROTATED).status_code == 401  # msg_00002
    receiver.clock.advance(TTL - 0.001)
    assert receiver.post("acme", SECRET_ACME).status_code == 200  # msg_00003
    receiver.clock.advance(0.001)
    assert_answer(receiver.post("acme", SECRET_ROTATED), 200, {"status": "stored"})  # msg_00004
    assert receiver.post("acme", SECRET_ACME).status_code == 401  # msg_00005
    assert receiver.rows() == [("acme", "msg_00001"), ("acme", "msg_00003"), ("acme", "msg_00004")]
    assert receiver.lookups == ["acme", "acme"]


def test_a_flood_to_an_unknown_name_costs_one_lookup_per_ttl(sqlite_url: str, fernet_key: str):
    get_engine(sqlite_url)
    clock = FakeClock()
    lookups: list[str] = []
    resolver = ConnectionSecretsResolver(
        lambda: get_engine(sqlite_url), ttl_seconds=TTL, clock=clock, on_lookup=lookups.append
    )
    app = create_receiver_app(db_url=sqlite_url, resolver=resolver)
    body, webhook_id = delivery(1)
    headers = signed_headers(body, SECRET_ACME, webhook_id)

    async def flood(name: str, count: int) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:
            answers = await asyncio.gather(
                *(
                    http.post(f"/webhooks/whop/{name}", content=body, headers=headers)
                    for _ in range(count)
                )
            )
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(flood("initech", 50)) == [404] * 50  # concurrent: they share one lookup
        assert lookups == ["initech"]
        clock.advance(TTL - 0.001)
        assert asyncio.run(flood("initech", 50)) == [404] * 50
        assert lookups == ["initech"]
        clock.advance(0.001)
        assert asyncio.run(flood("initech", 50)) == [404] * 50
        assert lookups == ["initech", "initech"]
        assert asyncio.run(flood("Not-A-Name", 50)) == [404] * 50
        assert lookups == ["initech", "initech"]
        assert resolver.lookups == 2
    finally:
        app.state.writer.close()
    assert inbox_rows(sqlite_url) == []


def test_a_connection_without_a_webhook_secret_yet_gets_503(receiver: Receiver):
    add(receiver.db_url, "acme", None)
    assert_retry_later(receiver.post("acme", SECRET_ACME), "no webhook secret for this connection")
    assert receiver.rows() == []
    # Whop retries; once the operator stores the secret the retried delivery is taken.
    disconnect(receiver.db_url, "acme")
    add(receiver.db_url, "acme", SECRET_ACME)
    receiver.clock.advance(TTL)
    assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
    assert receiver.rows() == [("acme", "msg_00002")]


def test_an_undecryptable_secret_gets_503_and_one_log_line_naming_the_variable(
    receiver: Receiver, fernet_key: str, monkeypatch, caplog
):
    add(receiver.db_url, "acme", SECRET_ACME)
    wrong_key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEYS_VAR, wrong_key)
    caplog.set_level(logging.INFO, logger="whop_pipeline.inbox")
    for _ in range(3):
        assert_retry_later(
            receiver.post("acme", SECRET_ACME), "connection secret unavailable, retry later"
        )
        receiver.clock.advance(TTL)  # each attempt looks the secret up again
    assert receiver.lookups == ["acme"] * 3
    naming = [r for r in caplog.records if KEYS_VAR in r.getMessage()]
    assert len(naming) == 1 and naming[0].levelno == logging.ERROR
    monkeypatch.delenv(KEYS_VAR)
    assert_retry_later(
        receiver.post("acme", SECRET_ACME), "connection secret unavailable, retry later"
    )
    assert len([r for r in caplog.records if KEYS_VAR in r.getMessage()]) == 2  # a new problem
    assert receiver.rows() == []
    monkeypatch.setenv(KEYS_VAR, f"{wrong_key},{fernet_key}")
    receiver.clock.advance(TTL)
    assert_answer(receiver.post("acme", SECRET_ACME), 200, {"status": "stored"})
    assert receiver.rows() == [("acme", "msg_00005")]
    for secret_or_key in (*ALL_SECRETS, fernet_key, wrong_key):
        assert secret_or_key not in caplog.text


def test_the_environment_connection_keeps_working_from_its_variables(
    sqlite_url: str, fernet_key: str
):
    get_engine(sqlite_url)
    with serve(sqlite_url, static={"default": SECRET_ENV}) as receiver:
        assert receiver.post("default", SECRET_ENV).status_code == 200  # no row yet
        with get_engine(sqlite_url).begin() as conn:
            connections.ensure_environment_row(
                conn,
                ConnectionSettings(
                    whop_api_key="k",
                    whop_account_id="biz_env",
                    twenty_api_url="http://twenty.test",
                    twenty_api_key="t",
                ),
                NOW,
            )
        receiver.clock.advance(TTL)
        assert receiver.post("default", SECRET_ENV).status_code == 200  # a row from_environment
        # Once the name has its own credentials in the table, its stored secret is the one.
        add(sqlite_url, "default", SECRET_ACME, account="biz_env")
        receiver.clock.advance(TTL)
        assert receiver.post("default", SECRET_ENV).status_code == 401
        assert receiver.post("default", SECRET_ACME).status_code == 200
        assert receiver.rows() == [
            ("default", "msg_00001"),
            ("default", "msg_00002"),
            ("default", "msg_00004"),
        ]


def test_the_deprecated_connections_file_still_works_and_warns_once(
    sqlite_url: str, fernet_key: str, tmp_path, caplog
):
    path = tmp_path / "connections.json"
    path.write_text(
        json.dumps(
            {
                "acme": {"webhook_secret_env": "ACME_SECRET"},
                "globex": {"webhook_secret_env": "GLOBEX_SECRET"},
            }
        )
    )
    env = {
        "WHOP_PIPELINE_CONNECTIONS_FILE": str(path),
        "ACME_SECRET": SECRET_ACME,
        "GLOBEX_SECRET": SECRET_GLOBEX,
    }
    add(sqlite_url, "globex", SECRET_ROTATED, account="biz_globex")
    caplog.set_level(logging.WARNING, logger="whop_pipeline.inbox")
    # The signature the callers have always used: static secrets plus the database.
    app = create_receiver_app(db_url=sqlite_url, secrets=connection_secrets_from_env(env))
    with http_client(app) as client:

        def post(n: int, connection: str, secret: str) -> int:
            body, webhook_id = delivery(n)
            headers = signed_headers(body, secret, webhook_id)
            return client.post(
                f"/webhooks/whop/{connection}", content=body, headers=headers
            ).status_code

        assert post(1, "acme", SECRET_ACME) == 200  # from the file
        assert post(2, "globex", SECRET_GLOBEX) == 401  # the table wins over the file
        assert post(3, "globex", SECRET_ROTATED) == 200
        assert post(4, "acme", SECRET_ACME) == 200
    assert inbox_rows(sqlite_url) == [
        ("acme", "msg_00001"),
        ("acme", "msg_00004"),
        ("globex", "msg_00003"),
    ]
    deprecations = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(deprecations) == 1
    assert deprecations[0].levelno == logging.WARNING
    assert "WHOP_PIPELINE_CONNECTIONS_FILE" in deprecations[0].getMessage()
    assert "whop-pipeline connections add" in deprecations[0].getMessage()
    for secret in ALL_SECRETS:
        assert secret not in caplog.text


def test_an_unreadable_table_falls_back_to_static_secrets_else_503(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    db_url = f"sqlite:///{blocker / 'pipeline.db'}"
    with serve(db_url, static={"acme": SECRET_ACME}) as receiver:
        # A static connection is still verified (the inbox write then answers), as before.
        assert receiver.post("acme", SECRET_GLOBEX).status_code == 401
        assert_retry_later(receiver.post("acme", SECRET_ACME), "inbox unavailable, retry later")
        assert_retry_later(
            receiver.post("globex", SECRET_GLOBEX), "connection lookup unavailable, retry later"
        )


@pytest.mark.unit
def test_the_cache_seconds_come_from_the_environment():
    assert secret_cache_seconds_from_env({}) == DEFAULT_SECRET_CACHE_SECONDS == 5.0
    assert secret_cache_seconds_from_env({CACHE_SECONDS_VAR: "0"}) == 0.0
    assert secret_cache_seconds_from_env({CACHE_SECONDS_VAR: " 2.5 "}) == 2.5
    for bad in ("-1", "soon", "7200", "nan"):
        with pytest.raises(SettingsError, match=CACHE_SECONDS_VAR):
            secret_cache_seconds_from_env({CACHE_SECONDS_VAR: bad})


def test_without_a_cache_every_delivery_reads_the_table(sqlite_url: str, fernet_key: str):
    add(sqlite_url, "acme", SECRET_ACME)
    lookups: list[str] = []
    resolver = ConnectionSecretsResolver(
        get_engine(sqlite_url), ttl_seconds=0, on_lookup=lookups.append
    )
    with http_client(create_receiver_app(db_url=sqlite_url, resolver=resolver)) as client:
        for n in (1, 2, 3):
            body, webhook_id = delivery(n)
            headers = signed_headers(body, SECRET_ACME, webhook_id)
            assert (
                client.post("/webhooks/whop/acme", content=body, headers=headers).status_code == 200
            )
    assert lookups == ["acme"] * 3
    assert inbox_rows(sqlite_url) == [("acme", f"msg_{n:05d}") for n in (1, 2, 3)]


def test_the_cache_holds_at_most_max_cached_names(sqlite_url: str, fernet_key: str):
    """Negative answers are cached too, so a flood of made-up names must not grow it unbounded."""
    get_engine(sqlite_url)
    clock = FakeClock()
    lookups: list[str] = []
    resolver = ConnectionSecretsResolver(
        get_engine(sqlite_url), clock=clock, on_lookup=lookups.append, max_cached=2
    )

    async def resolve(*names: str) -> list[int]:
        return [(await resolver.resolve(name)).status for name in names]

    assert asyncio.run(resolve("a1", "a2", "a1", "a3", "a2", "a1")) == [404] * 6
    # a1 and a2 fill the cache; a3 evicts a1 (the oldest), a2 is still cached, a1 is read again.
    assert lookups == ["a1", "a2", "a3", "a1"]

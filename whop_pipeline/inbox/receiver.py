"""The signed-webhook receiver: verify each Whop delivery, store it in the inbox, then acknowledge.

``POST /webhooks/whop/{connection}`` answers, in the order checked:

- 404 ``{"error": "unknown connection"}``: the name is not a valid connection name, or no such
  connection is known (no row in the ``connections`` table and no static secret).
- 410 ``{"error": "connection disconnected"}``: the connection was disconnected.
- 503 with ``Retry-After`` when the connection exists but its secret cannot be used yet: no webhook
  secret stored for it (``{"error": "no webhook secret for this connection"}``), or
  ``WHOP_PIPELINE_ENCRYPTION_KEYS`` cannot decrypt it. Whop retries, so nothing is lost while the
  operator fixes it (``webhook_secrets.py`` explains each answer).
- 413 the body is over ``max_body_bytes`` (by Content-Length, or counted while streaming).
- 401 a Standard Webhooks header is missing, the signature does not match the raw body under that
  connection's secret, or ``webhook-timestamp`` is more than five minutes off.
- 400 correctly signed, but not a JSON envelope (or its ``id`` is not the ``webhook-id`` header).
- 200 ``{"status": "stored"}`` once the row is committed, or ``{"status": "duplicate"}`` when that
  ``webhook-id`` was already stored for the connection (still exactly one row). ``paused`` and
  ``needs_reauth`` connections store too: their events are applied when they resume.
- 503 with ``Retry-After`` when the inbox cannot be written, so Whop delivers again later.

Nothing is stored unless the answer is 200, and a row always carries the connection of the path.

``GET /healthz`` answers 200 ``{"status": "ok"}`` when the inbox table can be read, else 503.

Whop signs with the raw UTF-8 bytes of the whole ``ws_...`` secret, so each connection's verifier is
``standardwebhooks.Webhook(base64(secret))`` (docs/whop-api.md#signatures). Secrets and signatures
are never logged or echoed.

Each delivery's secret comes from ``ConnectionSecretsResolver`` (``webhook_secrets.py``): the
``connections`` table, read per request with a short per-name cache, then the static secrets.
Writes go through ``InboxWriter`` (group commit, ``writer.py``): one thread stores everything
queued since its last commit in one transaction, then answers each waiting request.

Configuration of ``whop-pipeline webhooks serve``:

- ``WHOP_PIPELINE_DB_URL``: the pipeline database (default: the SQLite file in ``data/``), whose
  ``connections`` table lists the connections (``whop-pipeline connections add``).
- ``WHOP_PIPELINE_ENCRYPTION_KEYS``: the Fernet keys that decrypt the table's webhook secrets.
- ``WHOP_PIPELINE_SECRET_CACHE_SECONDS``: how long a looked-up secret (or the absence of one) is
  reused, default 5; a rotated secret or a disconnect takes effect within that time.
- The environment connection: ``WHOP_PIPELINE_CONNECTION`` (default ``default``) and
  ``WHOP_WEBHOOK_SECRET``, used while the table has no row with its own credentials for that name.
- Deprecated, read for one more release: ``WHOP_PIPELINE_CONNECTIONS_FILE`` names a JSON file
  mapping each connection to the environment variable holding its secret::

      {"acme": {"webhook_secret_env": "ACME_WHOP_WEBHOOK_SECRET"},
       "globex": {"webhook_secret_env": "GLOBEX_WHOP_WEBHOOK_SECRET"}}

  Other keys in each entry are ignored. With the file set, ``WHOP_WEBHOOK_SECRET`` is ignored; a
  table row with its own credentials wins over the file for the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping

import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from whop_pipeline.inbox.events import MalformedEvent, decode_envelope
from whop_pipeline.inbox.store import NewEvent, inbox
from whop_pipeline.inbox.webhook_secrets import (
    CONNECTION_NAME,
    DEFAULT_SECRET_CACHE_SECONDS,
    ConnectionSecretsResolver,
    connection_secrets_from_env,
    whop_verifier,
)
from whop_pipeline.inbox.writer import InboxUnavailable, InboxWriter
from whop_pipeline.store.database import get_engine

# Re-exported: the receiver's callers configure it from here.
__all__ = [
    "CONNECTION_NAME",
    "ConnectionSecretsResolver",
    "connection_secrets_from_env",
    "create_receiver_app",
    "whop_verifier",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
RETRY_AFTER_SECONDS = 30
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Bodies above this are verified and parsed on a worker thread, off the event loop.
_INLINE_BODY_BYTES = 64 * 1024


class _Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def _unavailable(message: str) -> JSONResponse:
    return _error(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _verify(verifier: Webhook, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None if the delivery is authentic, else the reason (never the signature itself)."""
    try:
        verifier.verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        text = str(exc)
        if "too old" in text or "too new" in text:
            return "timestamp outside the five-minute tolerance"
        return "missing signature headers" if "Missing" in text else "invalid signature"
    except Exception:
        # A malformed signature header (bad base64, no comma) or a body that is not UTF-8 escapes
        # the library as ValueError/binascii.Error/UnicodeDecodeError: it is still unverifiable.
        return "invalid signature"
    return None


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``limit`` (never buffers more than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_receiver_app(
    *,
    db_url: str,
    secrets: Mapping[str, str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    write_timeout: float = 20.0,
    secret_cache_seconds: float = DEFAULT_SECRET_CACHE_SECONDS,
    resolver: ConnectionSecretsResolver | None = None,
) -> Starlette:
    """The receiver storing into ``db_url``, verifying each delivery with its connection's secret
    from the ``connections`` table of ``db_url``, else from ``secrets`` (connection name → webhook
    secret: the environment connection and the deprecated file).

    ``resolver`` replaces the default one (built from ``db_url``, ``secrets`` and
    ``secret_cache_seconds``); give either it or ``secrets``. The database is opened (and migrated)
    on first use, so the app starts even while it is down and answers 503 until it is back.
    ``app.state.writer.close()`` flushes and stops the writer thread (the lifespan does it when
    served with one).
    """
    if resolver is None:
        resolver = ConnectionSecretsResolver(
            lambda: get_engine(db_url), static=secrets, ttl_seconds=secret_cache_seconds
        )
    elif secrets:
        raise ValueError("give the static secrets to the resolver, not to create_receiver_app")
    writer = InboxWriter(db_url)

    async def receive(request: Request) -> JSONResponse:
        connection = request.path_params["connection"]
        found = await resolver.resolve(connection)
        verifier = found.verifier
        if verifier is None:
            # Logged by the resolver (once per state), not per request: a refused connection
            # is retried by Whop, and unknown names are probes.
            if found.retry_after:
                return _unavailable(found.error or "retry later")
            return _error(found.status, found.error or "unknown connection")
        received_at = dt.datetime.now(dt.UTC)
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _error(400, "invalid Content-Length")
            if int(declared) > max_body_bytes:
                return _reject(413, connection, request, f"body over {max_body_bytes} bytes")
        if not all(request.headers.get(h) for h in SIGNATURE_HEADERS):
            return _reject(401, connection, request, "missing signature headers")
        body = await _read_capped(request, max_body_bytes)
        if body is None:
            return _reject(413, connection, request, f"body over {max_body_bytes} bytes")

        def check() -> NewEvent:
            reason = _verify(verifier, body, request.headers)
            if reason is not None:
                raise _Rejected(401, reason)
            try:
                envelope, event = decode_envelope(body)
            except MalformedEvent as exc:
                raise _Rejected(400, f"malformed envelope: {exc}") from exc
            if event.webhook_id != request.headers["webhook-id"]:
                raise _Rejected(400, "malformed envelope: id does not match the webhook-id header")
            return NewEvent(connection, event, envelope, received_at)

        try:
            item = check() if len(body) <= _INLINE_BODY_BYTES else await run_in_threadpool(check)
        except _Rejected as rejected:
            return _reject(rejected.status, connection, request, rejected.reason)
        try:
            future = writer.submit(item)
            async with asyncio.timeout(write_timeout):
                inserted = await future
        except InboxUnavailable as exc:
            log.warning("webhook %s for %s not stored: %s", item.event.webhook_id, connection, exc)
            return _unavailable("inbox unavailable, retry later")
        except TimeoutError:
            log.warning(
                "webhook %s for %s: inbox write timed out", item.event.webhook_id, connection
            )
            return _unavailable("inbox write timed out, retry later")
        except Exception:
            return _unavailable("inbox unavailable, retry later")
        return JSONResponse({"status": "stored" if inserted else "duplicate"})

    def database_ok() -> bool:
        with get_engine(db_url).connect() as conn:
            conn.execute(sa.select(inbox.c.id).limit(1)).all()
        return True

    async def healthz(_: Request) -> JSONResponse:
        try:
            await asyncio.wait_for(run_in_threadpool(database_ok), 5.0)
        except Exception as exc:
            log.warning("health check: database unavailable (%s)", type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "error": "database unavailable"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(writer.close)

    app = Starlette(
        routes=[
            Route("/webhooks/whop/{connection}", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.writer = writer
    app.state.resolver = resolver
    return app


def _reject(status: int, connection: str, request: Request, reason: str) -> JSONResponse:
    client = request.client.host if request.client else "?"
    # The webhook-id is Whop's message id, safe to log; the signature header never is.
    webhook_id = request.headers.get("webhook-id", "-")[:128]
    log.warning(
        "rejected webhook %r for %s from %s: %d %s", webhook_id, connection, client, status, reason
    )
    return _error(status, reason)

"""The signed-webhook receiver: verify each Whop delivery, store it in the inbox, then acknowledge.

``POST /webhooks/whop/{connection}`` answers, in the order checked:

- 404 ``{"error": "unknown connection"}``: no secret is configured for that path.
- 413 the body is over ``max_body_bytes`` (by Content-Length, or counted while streaming).
- 401 a Standard Webhooks header is missing, the signature does not match the raw body under that
  connection's secret, or ``webhook-timestamp`` is more than five minutes off.
- 400 correctly signed, but not a JSON envelope (or its ``id`` is not the ``webhook-id`` header).
- 200 ``{"status": "stored"}`` once the row is committed, or ``{"status": "duplicate"}`` when that
  ``webhook-id`` was already stored for the connection (still exactly one row).
- 503 with ``Retry-After`` when the inbox cannot be written, so Whop delivers again later.

``GET /healthz`` answers 200 ``{"status": "ok"}`` when the inbox table can be read, else 503.

Whop signs with the raw UTF-8 bytes of the whole ``ws_...`` secret, so each connection's verifier is
``standardwebhooks.Webhook(base64(secret))`` (docs/whop-api.md#signatures). Secrets and signatures
are never logged or echoed.

Writes go through ``InboxWriter`` (group commit, ``writer.py``): one thread stores everything
queued since its last commit in one transaction, then answers each waiting request.

Configuration of ``whop-pipeline webhooks serve``:

- ``WHOP_PIPELINE_DB_URL``: the pipeline database (default: the SQLite file in ``data/``).
- One connection: ``WHOP_PIPELINE_CONNECTION`` (default ``default``) and ``WHOP_WEBHOOK_SECRET``.
- Several: ``WHOP_PIPELINE_CONNECTIONS_FILE`` names a JSON file mapping each connection to the
  environment variable holding its secret, so the file itself holds no secret::

      {"acme": {"webhook_secret_env": "ACME_WHOP_WEBHOOK_SECRET"},
       "globex": {"webhook_secret_env": "GLOBEX_WHOP_WEBHOOK_SECRET"}}

  Other keys in each entry are ignored. With the file set, only its connections are served.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from whop_pipeline.inbox.events import MalformedEvent, decode_envelope
from whop_pipeline.inbox.store import NewEvent, inbox
from whop_pipeline.inbox.writer import InboxUnavailable, InboxWriter
from whop_pipeline.settings import DEFAULT_CONNECTION, SettingsError
from whop_pipeline.store.database import get_engine

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
RETRY_AFTER_SECONDS = 30
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
CONNECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
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


def whop_verifier(secret: str) -> Webhook:
    """Whop HMACs with the secret's raw bytes; ``Webhook`` base64-decodes its key, so encode it."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return Webhook(base64.b64encode(secret.encode("utf-8")).decode("ascii"))


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
    secrets: Mapping[str, str],
    max_body_bytes: int = MAX_BODY_BYTES,
    write_timeout: float = 20.0,
) -> Starlette:
    """The receiver for ``secrets`` (connection name → webhook secret), storing into ``db_url``.

    The database is opened (and migrated) on first use, so the app starts even while it is down and
    answers 503 until it is back. ``app.state.writer.close()`` flushes and stops the writer thread
    (the lifespan does it when served with one).
    """
    for name in secrets:
        if not CONNECTION_NAME.match(name):
            raise ValueError(f"connection name {name!r} must match {CONNECTION_NAME.pattern}")
    verifiers = {name: whop_verifier(secret) for name, secret in secrets.items()}
    writer = InboxWriter(db_url)

    async def receive(request: Request) -> JSONResponse:
        connection = request.path_params["connection"]
        verifier = verifiers.get(connection)
        if verifier is None:
            return _error(404, "unknown connection")
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
    return app


def _reject(status: int, connection: str, request: Request, reason: str) -> JSONResponse:
    client = request.client.host if request.client else "?"
    # The webhook-id is Whop's message id, safe to log; the signature header never is.
    webhook_id = request.headers.get("webhook-id", "-")[:128]
    log.warning(
        "rejected webhook %r for %s from %s: %d %s", webhook_id, connection, client, status, reason
    )
    return _error(status, reason)


def connection_secrets_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Connection name → webhook secret, from ``WHOP_PIPELINE_CONNECTIONS_FILE`` if set, else from
    ``WHOP_PIPELINE_CONNECTION`` + ``WHOP_WEBHOOK_SECRET``. ``SettingsError`` names what is wrong."""
    env = os.environ if environ is None else environ
    path = env.get("WHOP_PIPELINE_CONNECTIONS_FILE")
    if not path:
        name = env.get("WHOP_PIPELINE_CONNECTION") or DEFAULT_CONNECTION
        if not CONNECTION_NAME.match(name):
            raise SettingsError(
                f"WHOP_PIPELINE_CONNECTION is invalid (must match {CONNECTION_NAME.pattern})"
            )
        secret = env.get("WHOP_WEBHOOK_SECRET")
        if not secret:
            raise SettingsError(
                "WHOP_WEBHOOK_SECRET is not set (the receiver verifies deliveries with it)"
            )
        return {name: secret}
    where = f"WHOP_PIPELINE_CONNECTIONS_FILE {path!r}"
    try:
        config = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"{where} cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{where} is not valid JSON ({exc.msg})") from exc
    if not isinstance(config, dict) or not config:
        raise SettingsError(f"{where} must be a non-empty JSON object")
    secrets: dict[str, str] = {}
    problems: list[str] = []
    for name, entry in config.items():
        if not CONNECTION_NAME.match(name):
            problems.append(f"connection {name!r}: the name must match {CONNECTION_NAME.pattern}")
            continue
        variable = entry.get("webhook_secret_env") if isinstance(entry, dict) else None
        if not isinstance(variable, str) or not variable:
            problems.append(f"connection {name!r}: webhook_secret_env is missing")
        elif not env.get(variable):
            problems.append(f"connection {name!r}: {variable} is not set")
        else:
            secrets[name] = env[variable]
    if problems:
        raise SettingsError(f"{where}: " + "; ".join(problems))
    return secrets

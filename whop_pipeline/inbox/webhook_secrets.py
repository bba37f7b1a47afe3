"""Which secret verifies a delivery to ``/webhooks/whop/{connection}``, decided per request.

The ``connections`` table is the source of truth: connections are added, their secrets rotated and
they are disconnected while the receiver runs, so it reads the table rather than a list fixed at
start. ``ConnectionSecretsResolver`` looks a name up on a worker thread (never on the event loop) and
remembers the answer for ``ttl_seconds`` (``WHOP_PIPELINE_SECRET_CACHE_SECONDS``, default 5, 0 turns
the cache off): a rotated secret or a disconnect takes effect within that time, and a flood of
deliveries to one name (known or not) costs at most one database read per name per ``ttl_seconds``.
Concurrent requests for a name that is not cached share one lookup.

What a name resolves to, in this order:

- not a valid connection name (``CONNECTION_NAME``), or neither a row nor a static secret: 404
  ``unknown connection``. Only a URL that is really gone makes Whop give up, so 404 is kept for that.
- a ``disconnected`` row (whatever its secret source): 410 ``connection disconnected``; the operator
  stopped it on purpose, and 410 tells Whop the URL is gone for good.
- a row with its own credentials: its encrypted webhook secret, decrypted in memory with
  ``WHOP_PIPELINE_ENCRYPTION_KEYS``. ``active``, ``paused`` and ``needs_reauth`` all verify and
  store: a paused connection's events wait in the inbox and are applied when it resumes.
- a row with its own credentials but no webhook secret yet (or an environment row whose
  ``WHOP_WEBHOOK_SECRET`` is not set here): 503 ``no webhook secret for this connection`` with
  ``Retry-After``. The connection exists and its operator is part-way through configuring it, so the
  deliveries are retried until the secret is there instead of being dropped, as a 404 would make Whop
  do.
- the secret cannot be decrypted (``WHOP_PIPELINE_ENCRYPTION_KEYS`` missing, invalid or without the
  key that encrypted it): 503 with ``Retry-After``, and one log line naming the variable (never a key
  or a secret) until it is fixed.
- no row, or a row whose credentials come from the environment: the static secret (from
  ``WHOP_WEBHOOK_SECRET``, or from the deprecated ``WHOP_PIPELINE_CONNECTIONS_FILE``). The table
  wins over a static secret for a name that has its own row.
- the table cannot be read: the static secret when there is one (the inbox write then decides, as
  before the table existed), else 503 with ``Retry-After``.

Decrypted secrets live only inside the verifiers held by the cache; they are never logged or echoed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from standardwebhooks import Webhook
from starlette.concurrency import run_in_threadpool

from whop_pipeline.lib.secrets import SecretBox, SecretsError
from whop_pipeline.settings import DEFAULT_CONNECTION, SettingsError
from whop_pipeline.store import connections
from whop_pipeline.store.tables import connections as connections_table

log = logging.getLogger(__name__)

CONNECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CACHE_SECONDS_VAR = "WHOP_PIPELINE_SECRET_CACHE_SECONDS"
DEFAULT_SECRET_CACHE_SECONDS = 5.0
MAX_SECRET_CACHE_SECONDS = 3600.0
# Negative answers are cached too, so a flood of random names must not grow the cache without bound.
MAX_CACHED_NAMES = 10_000
CONNECTIONS_FILE_VAR = "WHOP_PIPELINE_CONNECTIONS_FILE"


def whop_verifier(secret: str) -> Webhook:
    """Whop HMACs with the secret's raw bytes; ``Webhook`` base64-decodes its key, so encode it."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return Webhook(base64.b64encode(secret.encode("utf-8")).decode("ascii"))


@dataclass(frozen=True)
class SecretLookup:
    """What a connection name resolved to: a verifier, or the answer to give instead."""

    verifier: Webhook | None = field(default=None, repr=False)
    status: int = 200
    error: str | None = None
    retry_after: bool = False


UNKNOWN = SecretLookup(status=404, error="unknown connection")
DISCONNECTED = SecretLookup(status=410, error="connection disconnected")
NO_SECRET = SecretLookup(
    status=503, error="no webhook secret for this connection", retry_after=True
)
SECRET_UNAVAILABLE = SecretLookup(
    status=503, error="connection secret unavailable, retry later", retry_after=True
)
LOOKUP_FAILED = SecretLookup(
    status=503, error="connection lookup unavailable, retry later", retry_after=True
)


class ConnectionSecretsResolver:
    """Connection name → ``SecretLookup``, from the ``connections`` table and ``static`` secrets.

    ``engine`` is an engine or a callable returning one (called per lookup, so a receiver starts
    while the database is down). ``box_factory`` gives the ``SecretBox`` that decrypts table
    secrets. ``clock`` (monotonic seconds) and ``on_lookup`` (called with the name before each
    database lookup) are there for tests and metrics.
    """

    def __init__(
        self,
        engine: sa.Engine | Callable[[], sa.Engine],
        box_factory: Callable[[], SecretBox] = SecretBox.from_env,
        static: Mapping[str, str] | None = None,
        *,
        ttl_seconds: float = DEFAULT_SECRET_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[str], None] | None = None,
        max_cached: int = MAX_CACHED_NAMES,
    ) -> None:
        static = dict(static or {})
        for name in static:
            if not CONNECTION_NAME.match(name):
                raise ValueError(f"connection name {name!r} must match {CONNECTION_NAME.pattern}")
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        self._engine = engine if isinstance(engine, sa.Engine) else None
        self._engine_factory = None if isinstance(engine, sa.Engine) else engine
        self._box_factory = box_factory
        self._static = {
            name: SecretLookup(verifier=whop_verifier(secret)) for name, secret in static.items()
        }
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._on_lookup = on_lookup
        self._max_cached = max(1, max_cached)
        # name → (expires at, answer). Only touched on the event loop; insertion order is expiry
        # order (the TTL is constant and a refreshed name is re-inserted), so eviction pops the front.
        self._cache: dict[str, tuple[float, SecretLookup]] = {}
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task] = {}
        self._lock = threading.Lock()
        self._reported: dict[str, str] = {}
        self.lookups = 0

    @property
    def static_names(self) -> list[str]:
        return sorted(self._static)

    async def resolve(self, name: str) -> SecretLookup:
        """The answer for ``name``: from the cache while fresh, else one lookup off the loop."""
        if not CONNECTION_NAME.match(name):
            return UNKNOWN
        cached = self._cache.get(name)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        loop = asyncio.get_running_loop()
        key = (loop, name)
        task = self._inflight.get(key)
        if task is None:
            task = loop.create_task(self._lookup_and_remember(name))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shielded: a client that hangs up must not cancel the lookup others are waiting for.
        return await asyncio.shield(task)

    async def _lookup_and_remember(self, name: str) -> SecretLookup:
        found = await run_in_threadpool(self.lookup, name)
        if self.ttl_seconds > 0:
            self._remember(name, found)
        return found

    def _remember(self, name: str, found: SecretLookup) -> None:
        now = self._clock()
        self._cache.pop(name, None)
        while self._cache:
            oldest, (expires, _) = next(iter(self._cache.items()))
            if expires > now and len(self._cache) < self._max_cached:
                break
            del self._cache[oldest]
        self._cache[name] = (now + self.ttl_seconds, found)

    def forget(self, name: str | None = None) -> None:
        """Drop the cached answer for ``name`` (every name when None): the next request looks up."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    def lookup(self, name: str) -> SecretLookup:
        """One uncached lookup (blocking: database read and decryption)."""
        with self._lock:
            self.lookups += 1
        if self._on_lookup is not None:
            self._on_lookup(name)
        static = self._static.get(name)
        try:
            with self._get_engine().connect() as conn:
                row = connections.get(conn, name)
                token = None
                if row is not None and not row.from_environment and row.status != "disconnected":
                    token = conn.execute(
                        sa.select(connections_table.c.webhook_secret_encrypted).where(
                            connections_table.c.name == name
                        )
                    ).scalar()
        except Exception as exc:
            self._report(
                "database",
                f"the connections table cannot be read ({type(exc).__name__}): deliveries to "
                "connections without a static secret are answered 503 until it can",
            )
            return static or LOOKUP_FAILED
        self._resolved("database")
        if row is None:
            self._resolved(name, announce=False)
            return static or UNKNOWN
        if row.status == "disconnected":
            self._report(
                name,
                f"connection {name!r} is disconnected: its deliveries get 410",
                level=logging.INFO,
            )
            return DISCONNECTED
        if row.from_environment:
            if static is not None:
                self._resolved(name)
                return static
            self._report(
                name,
                f"connection {name!r} takes its webhook secret from WHOP_WEBHOOK_SECRET, which is "
                "not set for the receiver: its deliveries get 503 until it is",
            )
            return NO_SECRET
        if not token:
            self._report(
                name,
                f"connection {name!r} has no webhook secret yet: its deliveries get 503 until one "
                f"is stored (`whop-pipeline connections add {name} ...`)",
            )
            return NO_SECRET
        try:
            secret = self._box_factory().decrypt(
                token, what=f"connection {name!r}'s webhook secret"
            )
            verifier = whop_verifier(secret)
        except (SecretsError, ValueError) as exc:
            # SecretsError names the variable and never holds a key or a secret.
            self._report(name, f"deliveries to {name!r} get 503: {exc}")
            return SECRET_UNAVAILABLE
        self._resolved(name)
        return SecretLookup(verifier=verifier)

    def _get_engine(self) -> sa.Engine:
        return self._engine if self._engine is not None else self._engine_factory()

    def _report(self, key: str, message: str, *, level: int = logging.ERROR) -> None:
        """Log a problem once, not once per lookup, until it changes or clears."""
        with self._lock:
            if self._reported.get(key) == message:
                return
            self._reported[key] = message
        log.log(level, "webhook receiver: %s", message)

    def _resolved(self, key: str, *, announce: bool = True) -> None:
        with self._lock:
            cleared = self._reported.pop(key, None)
        if cleared is not None and announce:
            if key == "database":
                log.info("webhook receiver: the connections table can be read again")
            else:
                log.info("webhook receiver: connection %r takes deliveries again", key)

    def known_names(self) -> list[str]:
        """Every name that may take deliveries: the static ones and every table row not
        disconnected (blocking; nothing is decrypted)."""
        with self._get_engine().connect() as conn:
            rows = conn.execute(
                sa.select(connections_table.c.name).where(
                    connections_table.c.status != "disconnected"
                )
            ).scalars()
            return sorted(set(rows) | set(self._static))


def secret_cache_seconds_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``WHOP_PIPELINE_SECRET_CACHE_SECONDS`` (default 5); ``SettingsError`` when it is not a
    number of seconds between 0 and an hour."""
    env = os.environ if environ is None else environ
    raw = (env.get(CACHE_SECONDS_VAR) or "").strip()
    if not raw:
        return DEFAULT_SECRET_CACHE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_SECRET_CACHE_SECONDS:
        raise SettingsError(
            f"{CACHE_SECONDS_VAR} must be a number of seconds from 0 to "
            f"{MAX_SECRET_CACHE_SECONDS:.0f}, not {raw!r}"
        )
    return seconds


def connection_secrets_from_env(
    environ: Mapping[str, str] | None = None, *, required: bool = True
) -> dict[str, str]:
    """The static secrets: connection name → webhook secret, from the deprecated
    ``WHOP_PIPELINE_CONNECTIONS_FILE`` if set, else from ``WHOP_PIPELINE_CONNECTION`` +
    ``WHOP_WEBHOOK_SECRET``. Without either, ``SettingsError`` when ``required``, else ``{}`` (the
    table may hold every connection). ``SettingsError`` names what is wrong."""
    env = os.environ if environ is None else environ
    path = env.get(CONNECTIONS_FILE_VAR)
    if not path:
        name = env.get("WHOP_PIPELINE_CONNECTION") or DEFAULT_CONNECTION
        secret = env.get("WHOP_WEBHOOK_SECRET")
        if not secret and not required:
            return {}
        if not CONNECTION_NAME.match(name):
            raise SettingsError(
                f"WHOP_PIPELINE_CONNECTION is invalid (must match {CONNECTION_NAME.pattern})"
            )
        if not secret:
            raise SettingsError(
                "WHOP_WEBHOOK_SECRET is not set (the receiver verifies deliveries with it)"
            )
        return {name: secret}
    log.warning(
        "%s is deprecated and will be removed in the next release: add each connection with "
        "`whop-pipeline connections add` (its secret is then stored encrypted in the connections "
        "table, which already wins over the file for a name in both)",
        CONNECTIONS_FILE_VAR,
    )
    where = f"{CONNECTIONS_FILE_VAR} {path!r}"
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

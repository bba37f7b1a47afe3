"""The ``connections`` table: which Whop account syncs into which Twenty workspace, with what.

Secrets go in and come out only through a ``SecretBox``; a ``Connection`` read from here carries
none of them (``ConnectionSecrets`` does, and has no repr). A connection whose ``whop_auth`` is
``environment`` takes its credentials from the environment variables (the single-connection setup
that predates this table); its row only records status and sync history.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.settings import (
    DEFAULT_CONNECTION,
    DEFAULT_WHOP_API_BASE_URL,
    ConnectionSettings,
    load_limits,
    load_settings,
)
from whop_pipeline.store.tables import (
    RAW_TABLES,
    connection_tokens,
    connections,
    crm_builds,
    crm_records,
    health_models,
    mirror_changes,
    oauth_states,
    sync_errors,
    sync_state,
    webhook_inbox,
)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ACCOUNT_PATTERN = re.compile(r"^biz_[A-Za-z0-9]+$")
SECRET_COLUMNS = (
    "whop_credential_encrypted",
    "whop_refresh_token_encrypted",
    "twenty_api_key_encrypted",
    "webhook_secret_encrypted",
)
# Every table holding a connection's data, for --purge: the mirror, the change queue, the built CRM
# records, what was loaded, what failed, the webhook inbox and the fitted health models.
DATA_TABLES = (
    *RAW_TABLES.values(),
    mirror_changes,
    crm_records,
    crm_builds,
    sync_state,
    sync_errors,
    webhook_inbox,
    health_models,
)


class ConnectionProblem(ValueError):
    """A request about a connection that cannot be honoured, worded for the operator."""


class Connection(BaseModel):
    """A ``connections`` row without its secrets."""

    model_config = ConfigDict(frozen=True)

    name: str
    whop_account_id: str
    whop_auth: str
    whop_api_base_url: str
    twenty_api_url: str
    status: str
    has_credentials: bool
    has_webhook_secret: bool
    whop_webhook_id: str | None = None
    whop_account_title: str | None = None
    whop_account_handle: str | None = None
    created_at: dt.datetime
    connected_at: dt.datetime | None = None
    disconnected_at: dt.datetime | None = None
    last_sync_run_id: str | None = None
    last_sync_started_at: dt.datetime | None = None
    last_sync_finished_at: dt.datetime | None = None
    last_sync_outcome: str | None = None
    last_sync_written: int | None = None
    last_success_at: dt.datetime | None = None
    last_error: str | None = None

    @property
    def from_environment(self) -> bool:
        return self.whop_auth == "environment"


@dataclass(frozen=True)
class ConnectionSecrets:
    """Decrypted credentials, held only in memory for the length of a run or a request."""

    whop_credential: str = field(repr=False)
    twenty_api_key: str = field(repr=False)
    webhook_secret: str | None = field(default=None, repr=False)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise ConnectionProblem(
            f"connection name {name!r} is invalid: use lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters"
        )
    return name


def _row_to_connection(row: sa.Row) -> Connection:
    values = dict(row._mapping)
    values["has_credentials"] = values["whop_auth"] == "environment" or bool(
        values["whop_credential_encrypted"] and values["twenty_api_key_encrypted"]
    )
    values["has_webhook_secret"] = bool(values["webhook_secret_encrypted"])
    return Connection.model_validate({k: v for k, v in values.items() if k not in SECRET_COLUMNS})


def get(conn: sa.Connection, name: str) -> Connection | None:
    row = conn.execute(sa.select(connections).where(connections.c.name == name)).first()
    return _row_to_connection(row) if row else None


def require(conn: sa.Connection, name: str) -> Connection:
    found = get(conn, name)
    if found is None:
        raise ConnectionProblem(
            f"no connection named {name!r} (see `whop-pipeline connections list`)"
        )
    return found


def list_all(conn: sa.Connection, statuses: tuple[str, ...] | None = None) -> list[Connection]:
    query = sa.select(connections).order_by(connections.c.name)
    if statuses:
        query = query.where(connections.c.status.in_(statuses))
    return [_row_to_connection(row) for row in conn.execute(query)]


def secrets(conn: sa.Connection, box: SecretBox, name: str) -> ConnectionSecrets:
    """The decrypted credentials of a connection stored with its own (not environment) secrets."""
    row = conn.execute(sa.select(connections).where(connections.c.name == name)).first()
    if row is None:
        raise ConnectionProblem(f"no connection named {name!r}")
    if row.status == "disconnected" or not (
        row.whop_credential_encrypted and row.twenty_api_key_encrypted
    ):
        raise ConnectionProblem(
            f"connection {name!r} is {row.status} and holds no credentials; "
            f"reconnect it with `whop-pipeline connections add {name} ...`"
        )
    return ConnectionSecrets(
        whop_credential=box.decrypt(
            row.whop_credential_encrypted, what=f"connection {name!r}'s Whop credential"
        ),
        twenty_api_key=box.decrypt(
            row.twenty_api_key_encrypted, what=f"connection {name!r}'s Twenty API key"
        ),
        webhook_secret=box.decrypt(
            row.webhook_secret_encrypted, what=f"connection {name!r}'s webhook secret"
        )
        if row.webhook_secret_encrypted
        else None,
    )


def save(
    conn: sa.Connection,
    box: SecretBox,
    *,
    name: str,
    whop_account_id: str,
    twenty_api_url: str,
    whop_api_key: str,
    twenty_api_key: str,
    webhook_secret: str | None = None,
    whop_api_base_url: str = DEFAULT_WHOP_API_BASE_URL,
    whop_account_title: str | None = None,
    now: dt.datetime,
) -> Connection:
    """Add a connection, or reconnect a disconnected one with the same name (its history, mirror
    and sync state are kept, so the next sync writes only what changed meanwhile)."""
    check_name(name)
    if not ACCOUNT_PATTERN.match(whop_account_id):
        raise ConnectionProblem(f"Whop account id {whop_account_id!r} must look like biz_...")
    existing = get(conn, name)
    # A disconnected connection is reconnected; one whose key was refused gets its new key.
    if (
        existing
        and existing.status not in ("disconnected", "needs_reauth")
        and not existing.from_environment
    ):
        raise ConnectionProblem(
            f"connection {name!r} already exists ({existing.status}); disconnect it first"
        )
    if existing and existing.whop_account_id != whop_account_id and not existing.from_environment:
        raise ConnectionProblem(
            f"connection {name!r} was made for Whop account {existing.whop_account_id}; its "
            f"mirror belongs to that account, so reconnecting it to {whop_account_id} would mix "
            "two accounts. Use another name, or `connections remove` it first."
        )
    values = {
        "whop_account_id": whop_account_id,
        "whop_auth": "api_key",
        "whop_api_base_url": whop_api_base_url.rstrip("/"),
        "whop_credential_encrypted": box.encrypt(whop_api_key),
        "whop_refresh_token_encrypted": None,
        "whop_token_expires_at": None,
        "twenty_api_url": twenty_api_url.rstrip("/"),
        "twenty_api_key_encrypted": box.encrypt(twenty_api_key),
        "webhook_secret_encrypted": box.encrypt(webhook_secret) if webhook_secret else None,
        "status": "active",
        "connected_at": now,
        "disconnected_at": None,
        "last_error": None,
    }
    if whop_account_title:
        values["whop_account_title"] = whop_account_title
    if existing:
        conn.execute(sa.update(connections).where(connections.c.name == name).values(**values))
    else:
        conn.execute(sa.insert(connections).values(name=name, created_at=now, **values))
    return require(conn, name)


def ensure_environment_row(
    conn: sa.Connection, settings: ConnectionSettings, now: dt.datetime
) -> None:
    """Record the environment-defined connection, so its status and history have a home (a
    connection from the table has its row already)."""
    if settings.source != "environment" or get(conn, settings.name) is not None:
        return
    conn.execute(
        sa.insert(connections).values(
            name=settings.name,
            whop_account_id=settings.whop_account_id,
            whop_auth="environment",
            whop_api_base_url=settings.whop_api_base_url,
            twenty_api_url=settings.twenty_api_url,
            status="active",
            created_at=now,
            connected_at=now,
        )
    )


REAUTH_HINT = "; give it a working key with `whop-pipeline connections add {name} ...`"
ENVIRONMENT_REAUTH_HINT = (
    "; fix the environment variable, then `whop-pipeline connections resume {name}`"
)


def set_status(conn: sa.Connection, name: str, status: str, *, error: str | None = None) -> None:
    values: dict[str, object] = {"status": status}
    if error is not None:
        row = get(conn, name) if status == "needs_reauth" else None
        hint = (
            (ENVIRONMENT_REAUTH_HINT if row and row.from_environment else REAUTH_HINT).format(
                name=name
            )
            if row
            else ""
        )
        values["last_error"] = (error + hint)[:2000]
    result = conn.execute(sa.update(connections).where(connections.c.name == name).values(values))
    if result.rowcount == 0:
        raise ConnectionProblem(f"no connection named {name!r}")


def set_webhook(
    conn: sa.Connection,
    name: str,
    webhook_id: str | None,
    *,
    secret: str | None = None,
    box: SecretBox | None = None,
) -> None:
    """The Whop webhook the pipeline registered, and its secret (encrypted) when given."""
    values: dict[str, object] = {"whop_webhook_id": webhook_id}
    if secret is not None:
        assert box is not None, "a webhook secret is stored encrypted"
        values["webhook_secret_encrypted"] = box.encrypt(secret)
    conn.execute(sa.update(connections).where(connections.c.name == name).values(values))


def disconnect(conn: sa.Connection, name: str, *, now: dt.datetime) -> None:
    """Erase the stored credentials and stop the connection; its records stay."""
    conn.execute(
        sa.update(connections)
        .where(connections.c.name == name)
        .values(
            status="disconnected",
            disconnected_at=now,
            whop_webhook_id=None,
            **dict.fromkeys(SECRET_COLUMNS),
            whop_token_expires_at=None,
        )
    )


def purge(conn: sa.Connection, name: str) -> dict[str, int]:
    """Delete the connection's mirror, CRM records, sync state, errors and inbox (one transaction:
    the caller's)."""
    deleted = {}
    for table in DATA_TABLES:
        result = conn.execute(sa.delete(table).where(table.c.connection == name))
        deleted[table.name] = result.rowcount
    return deleted


def remove(conn: sa.Connection, name: str) -> None:
    """Forget the connection: its row, its API token and its OAuth authorizations in flight."""
    for table in (connection_tokens, oauth_states):
        conn.execute(sa.delete(table).where(table.c.connection == name))
    conn.execute(sa.delete(connections).where(connections.c.name == name))


def rotate_keys(conn: sa.Connection, box: SecretBox) -> int:
    """Re-encrypt every stored secret with the first key; returns how many were re-encrypted."""
    count = 0
    for row in conn.execute(sa.select(connections)).all():
        values = {}
        for column in SECRET_COLUMNS:
            token = getattr(row, column)
            if token:
                values[column] = box.rotate(token, what=f"connection {row.name!r}'s {column}")
        if values:
            conn.execute(
                sa.update(connections).where(connections.c.name == row.name).values(values)
            )
            count += len(values)
    return count


def environment_connection(environ: Mapping[str, str]) -> str | None:
    """The name of the environment-defined connection, when its variables are set."""
    if environ.get("WHOP_API_KEY") and environ.get("TWENTY_API_KEY"):
        return environ.get("WHOP_PIPELINE_CONNECTION") or "default"
    return None


def resolve(
    conn: sa.Connection,
    name: str,
    environ: Mapping[str, str] | None = None,
    box: SecretBox | None = None,
) -> ConnectionSettings:
    """The named connection with its credentials: from the table, or from the environment
    variables when they define it and the table holds no credentials of its own for it."""
    env = os.environ if environ is None else environ
    row = get(conn, name)
    if row is None or row.from_environment:
        if environment_connection(env) == name:
            return load_settings(env).connection
        if row is None:
            raise ConnectionProblem(
                f"no connection named {name!r}: add it with `whop-pipeline connections add "
                f"{name} ...`"
                + (
                    " or set WHOP_API_KEY, TWENTY_API_KEY, ... for the environment connection"
                    if name == DEFAULT_CONNECTION
                    else ""
                )
            )
        raise ConnectionProblem(
            f"connection {name!r} takes its credentials from WHOP_API_KEY and TWENTY_API_KEY, "
            "which are not set here"
        )
    if row.status == "disconnected":
        raise ConnectionProblem(
            f"connection {name!r} is disconnected; reconnect it with "
            f"`whop-pipeline connections add {name} ...`"
        )
    stored = secrets(conn, box or SecretBox.from_env(env), name)
    limits = load_limits(env)
    return ConnectionSettings(
        name=name,
        whop_api_key=stored.whop_credential,
        whop_account_id=row.whop_account_id,
        whop_api_base_url=row.whop_api_base_url,
        twenty_api_url=row.twenty_api_url,
        twenty_api_key=stored.twenty_api_key,
        whop_webhook_secret=stored.webhook_secret,
        source="table",
        whop_auth=row.whop_auth,
        **limits,
    )


def schedulable(conn: sa.Connection, environ: Mapping[str, str] | None = None) -> list[str]:
    """Connections the schedules and the webhook sensor work for now: active ones with their
    credentials, and the environment connection when its variables are set. Read at every tick,
    so an added, paused or disconnected connection counts from the next tick on."""
    env = os.environ if environ is None else environ
    from_env = environment_connection(env)
    names = []
    seen = set()
    for row in list_all(conn):
        seen.add(row.name)
        if row.status != "active":
            continue
        if row.from_environment and row.name != from_env:
            continue
        if row.has_credentials:
            names.append(row.name)
    if from_env and from_env not in seen:
        names.append(from_env)
    return sorted(names)

"""A connection's Whop OAuth tokens: stored encrypted, refreshed under a lease.

Whop rotates refresh tokens: spending one returns a new one and retires the old. Two processes of
one connection (a run and the web app, say) that refreshed at the same time would each spend the
same token, and the loser's answer would be ``invalid_grant``. So a process first takes a short
lease on the row (a conditional UPDATE: works the same on SQLite and Postgres), re-reads the
tokens (another process may have just refreshed them), and only then spends the refresh token and
stores the new pair in the same row it leased.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store.connections import ConnectionProblem, check_name, get
from whop_pipeline.store.tables import connections

LEASE = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class StoredTokens:
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: dt.datetime | None
    status: str


def save_pending(
    conn: sa.Connection,
    box: SecretBox,
    *,
    name: str,
    whop_account_id: str,
    twenty_api_url: str,
    twenty_api_key: str,
    whop_api_base_url: str,
    now: dt.datetime,
) -> None:
    """A connection whose Twenty side is set and whose Whop side waits for OAuth consent."""
    check_name(name)
    existing = get(conn, name)
    if existing and existing.status not in ("disconnected", "needs_reauth"):
        raise ConnectionProblem(f"connection {name!r} already exists ({existing.status})")
    values = {
        "whop_account_id": whop_account_id,
        "whop_auth": "oauth",
        "whop_api_base_url": whop_api_base_url.rstrip("/"),
        "whop_credential_encrypted": None,
        "whop_refresh_token_encrypted": None,
        "whop_token_expires_at": None,
        "twenty_api_url": twenty_api_url.rstrip("/"),
        "twenty_api_key_encrypted": box.encrypt(twenty_api_key),
        "status": "needs_reauth",
        "last_error": "waiting for Whop authorization (Connect Whop)",
    }
    if existing:
        conn.execute(sa.update(connections).where(connections.c.name == name).values(**values))
    else:
        conn.execute(sa.insert(connections).values(name=name, created_at=now, **values))


def save_authorized(
    conn: sa.Connection,
    box: SecretBox,
    name: str,
    *,
    access_token: str,
    refresh_token: str | None,
    expires_at: dt.datetime | None,
    handle: str | None,
    now: dt.datetime,
) -> None:
    """The tokens of a completed authorization: the connection becomes active."""
    result = conn.execute(
        sa.update(connections)
        .where(connections.c.name == name)
        .values(
            whop_auth="oauth",
            whop_credential_encrypted=box.encrypt(access_token),
            whop_refresh_token_encrypted=box.encrypt(refresh_token) if refresh_token else None,
            whop_token_expires_at=expires_at,
            whop_account_handle=handle,
            status="active",
            connected_at=now,
            disconnected_at=None,
            last_error=None,
            refresh_lease_until=None,
        )
    )
    if result.rowcount != 1:
        raise ConnectionProblem(f"no connection named {name!r}")


def read(conn: sa.Connection, box: SecretBox, name: str) -> StoredTokens:
    row = conn.execute(sa.select(connections).where(connections.c.name == name)).first()
    if row is None:
        raise ConnectionProblem(f"no connection named {name!r}")

    def open_(token: str | None, what: str) -> str | None:
        return box.decrypt(token, what=f"connection {name!r}'s {what}") if token else None

    return StoredTokens(
        access_token=open_(row.whop_credential_encrypted, "Whop access token"),
        refresh_token=open_(row.whop_refresh_token_encrypted, "Whop refresh token"),
        expires_at=row.whop_token_expires_at,
        status=row.status,
    )


def take_lease(conn: sa.Connection, name: str, now: dt.datetime) -> bool:
    """True when this caller may spend the refresh token for the next ``LEASE``."""
    result = conn.execute(
        sa.update(connections)
        .where(
            connections.c.name == name,
            sa.or_(
                connections.c.refresh_lease_until.is_(None),
                connections.c.refresh_lease_until < now,
            ),
        )
        .values(refresh_lease_until=now + LEASE)
    )
    return result.rowcount == 1


def store_refreshed(
    conn: sa.Connection,
    box: SecretBox,
    name: str,
    *,
    access_token: str,
    refresh_token: str | None,
    expires_at: dt.datetime | None,
) -> None:
    """The new pair, written together; the lease ends."""
    conn.execute(
        sa.update(connections)
        .where(connections.c.name == name)
        .values(
            whop_credential_encrypted=box.encrypt(access_token),
            whop_refresh_token_encrypted=box.encrypt(refresh_token) if refresh_token else None,
            whop_token_expires_at=expires_at,
            refresh_lease_until=None,
        )
    )


def release_lease(conn: sa.Connection, name: str) -> None:
    conn.execute(
        sa.update(connections).where(connections.c.name == name).values(refresh_lease_until=None)
    )

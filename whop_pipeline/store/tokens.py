"""API tokens of connections: issued once, stored as SHA-256, looked up by hash.

A token names one connection and acts on it alone; the admin token (``WHOP_PIPELINE_ADMIN_TOKEN``,
never stored) may act on any. Tokens carry a prefix so a leaked one is recognisable in a scan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

import sqlalchemy as sa

from whop_pipeline.store.database import upsert_statement
from whop_pipeline.store.tables import connection_tokens

TOKEN_PREFIX = "wpc_"
ADMIN_TOKEN_VAR = "WHOP_PIPELINE_ADMIN_TOKEN"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(conn: sa.Connection, connection: str, now: dt.datetime | None = None) -> str:
    """A new token for ``connection`` (the previous one stops working); shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    statement = upsert_statement(conn, connection_tokens).values(
        connection=connection,
        token_hash=token_hash(token),
        created_at=now or dt.datetime.now(dt.UTC),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["connection"],
        set_={
            "token_hash": statement.excluded.token_hash,
            "created_at": statement.excluded.created_at,
        },
    )
    conn.execute(statement)
    return token


def connection_of(conn: sa.Connection, token: str) -> str | None:
    """The connection a token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return conn.execute(
        sa.select(connection_tokens.c.connection).where(
            connection_tokens.c.token_hash == token_hash(token)
        )
    ).scalar_one_or_none()


def revoke(conn: sa.Connection, connection: str) -> None:
    conn.execute(sa.delete(connection_tokens).where(connection_tokens.c.connection == connection))


def is_admin(token: str, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    admin = env.get(ADMIN_TOKEN_VAR, "")
    return bool(admin) and hmac.compare_digest(token.encode(), admin.encode())


def has_token(conn: sa.Connection, connection: str) -> bool:
    return (
        conn.execute(
            sa.select(connection_tokens.c.connection).where(
                connection_tokens.c.connection == connection
            )
        ).first()
        is not None
    )

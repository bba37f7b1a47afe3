"""Test helpers: connections added to a database, and the `connections add` command for a sandbox
account."""

from __future__ import annotations

import datetime as dt

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def add_connection(
    db_url: str,
    name: str,
    *,
    account: str = "biz_test",
    whop_key: str | None = None,
    twenty_key: str | None = None,
    twenty_url: str = "http://127.0.0.1:9",
    whop_url: str = "http://127.0.0.1:9/api/v1",
    webhook_secret: str | None = None,
    status: str = "active",
) -> connections.Connection:
    """Add ``name`` (encrypted with the environment's key) and set its status."""
    with get_engine(db_url).begin() as conn:
        connections.save(
            conn,
            SecretBox.from_env(),
            name=name,
            whop_account_id=account,
            twenty_api_url=twenty_url,
            whop_api_key=whop_key or f"whop-key-of-{name}",
            twenty_api_key=twenty_key or f"twenty-key-of-{name}",
            webhook_secret=webhook_secret,
            whop_api_base_url=whop_url,
            now=NOW,
        )
        if status == "disconnected":
            connections.disconnect(conn, name, now=NOW)
        elif status != "active":
            connections.set_status(conn, name, status)
        return connections.require(conn, name)


def add_argv(sandbox, name: str, index: int, *extra: str) -> list[str]:
    """``connections add NAME`` for the sandbox's account ``index``, its keys read from
    ``NAME_WHOP_KEY`` and ``NAME_TWENTY_KEY`` (never argv)."""
    account = sandbox.account(index)
    return [
        "connections",
        "add",
        name,
        "--whop-account",
        account.account_id,
        "--whop-api-base-url",
        sandbox.whop_base_url,
        "--twenty-url",
        sandbox.twenty_url,
        "--whop-api-key-env",
        f"{name.upper()}_WHOP_KEY",
        "--twenty-api-key-env",
        f"{name.upper()}_TWENTY_KEY",
        *extra,
    ]

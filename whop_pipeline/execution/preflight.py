"""The commands' first step: resolve the connection and make one cheap call to each API, so a
wrong URL, an unknown host or a refused key stops the command within seconds, in one line."""

from __future__ import annotations

import os

from whop_pipeline.settings import ConnectionSettings, db_url_from_env
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.whop import tokens
from whop_pipeline.whop.client import WhopClient
from whop_pipeline.whop.oauth import OAuthSettings


def check_connection(settings: ConnectionSettings) -> None:
    """``PreflightError`` naming the connection, the setting and the cause, or nothing. An OAuth
    connection whose token Whop refuses gets one refresh first."""
    reauthorize = None
    if settings.whop_auth == "oauth":
        engine = get_engine(db_url_from_env())

        def reauthorize() -> str:
            return _oauth_token(engine, settings.name, force=True)

    with WhopClient(
        base_url=settings.whop_api_base_url,
        api_key=settings.whop_api_key,
        account_id=settings.whop_account_id,
        setting_name=settings.setting,
        reauthorize=reauthorize,
    ) as whop:
        whop.check(settings.name)
    with TwentyClient(
        base_url=settings.twenty_api_url,
        api_key=settings.twenty_api_key,
        setting_name=settings.setting,
    ) as twenty:
        twenty.check(settings.name)


def default_connection_name() -> str:
    """``sync`` without ``--connection``: the environment connection's name, else ``default``."""
    return connections.environment_connection(os.environ) or "default"


def resolve(name: str) -> ConnectionSettings:
    """The connection with usable credentials: an OAuth connection's token refreshed if due."""
    engine = get_engine(db_url_from_env())
    with engine.connect() as conn:
        settings = connections.resolve(conn, name)
    if settings.whop_auth != "oauth":
        return settings
    return settings.model_copy(update={"whop_api_key": _oauth_token(engine, name)})


def _oauth_token(engine, name: str, *, force: bool = False) -> str:
    try:
        return tokens.access_token(engine, name, OAuthSettings.from_env(), force=force)
    except tokens.NeedsReauthorization as exc:
        raise connections.ConnectionProblem(str(exc)) from None


def schedulable() -> list[str]:
    with get_engine(db_url_from_env()).connect() as conn:
        return connections.schedulable(conn)

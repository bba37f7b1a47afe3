"""A usable Whop access token for an OAuth connection: refreshed before it expires, and once more
when Whop answers 401, with the rotated refresh token saved under a lease (store/oauth_tokens.py).

A refresh answered ``invalid_grant`` (the grant was revoked, or the refresh token was spent) ends in
``needs_reauth``: the connection's syncs stop and its status says what to do, instead of a run
retrying forever.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import sqlalchemy as sa

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections, oauth_tokens
from whop_pipeline.whop.oauth import OAuthFailure, OAuthSettings, refresh

# Refresh this long before expiry, so a token does not lapse in the middle of a page of calls.
REFRESH_MARGIN = dt.timedelta(minutes=5)
LEASE_POLL_SECONDS = 0.2


class NeedsReauthorization(RuntimeError):
    """The connection's grant no longer works; someone must connect Whop again."""


def access_token(
    engine: sa.Engine,
    name: str,
    settings: OAuthSettings,
    *,
    box: SecretBox | None = None,
    force: bool = False,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    refresher: Callable[[OAuthSettings, str], object] = refresh,
) -> str:
    """The connection's access token, refreshed first when it expires within ``REFRESH_MARGIN``
    (or when ``force``: Whop just refused it)."""
    box = box or SecretBox.from_env()
    with engine.connect() as conn:
        before = oauth_tokens.read(conn, box, name)
    if before.status == "needs_reauth" and before.access_token is None:
        raise NeedsReauthorization(f"connection {name!r} has not been authorized on Whop yet")
    if not force and _fresh(before, now()):
        return before.access_token  # type: ignore[return-value]
    deadline = time.monotonic() + oauth_tokens.LEASE.total_seconds() + 5
    while True:
        with engine.begin() as conn:
            leased = oauth_tokens.take_lease(conn, name, now())
        if leased:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"connection {name!r}: a token refresh elsewhere did not finish")
        time.sleep(LEASE_POLL_SECONDS)
    try:
        with engine.connect() as conn:
            current = oauth_tokens.read(conn, box, name)
        # Another process refreshed while this one waited: its token is the one to use.
        if current.access_token != before.access_token and _fresh(current, now()):
            with engine.begin() as conn:
                oauth_tokens.release_lease(conn, name)
            return current.access_token  # type: ignore[return-value]
        if not current.refresh_token:
            raise _needs_reauth(engine, name, "no refresh token is stored")
        try:
            tokens = refresher(settings, current.refresh_token)
        except OAuthFailure as exc:
            if exc.code in ("invalid_grant", "invalid_client", "unauthorized_client"):
                raise _needs_reauth(engine, name, f"Whop refused the refresh ({exc})") from None
            raise
        with engine.begin() as conn:
            oauth_tokens.store_refreshed(
                conn,
                box,
                name,
                access_token=tokens.access_token,  # type: ignore[attr-defined]
                refresh_token=tokens.refresh_token,  # type: ignore[attr-defined]
                expires_at=tokens.expires_at,  # type: ignore[attr-defined]
            )
        return tokens.access_token  # type: ignore[attr-defined]
    except BaseException:
        with engine.begin() as conn:
            oauth_tokens.release_lease(conn, name)
        raise


def _fresh(tokens: oauth_tokens.StoredTokens, now: dt.datetime) -> bool:
    if not tokens.access_token:
        return False
    return tokens.expires_at is None or tokens.expires_at - now > REFRESH_MARGIN


def _needs_reauth(engine: sa.Engine, name: str, why: str) -> NeedsReauthorization:
    message = f"connection {name!r}: {why}; connect Whop again (settings page or /auth/whop)"
    with engine.begin() as conn:
        connections.set_status(conn, name, "needs_reauth", error=message)
    return NeedsReauthorization(message)

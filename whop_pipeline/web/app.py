"""``create_web_app``: the receiver, Whop OAuth, GraphQL and the settings page, in one app.

Routes: ``POST /webhooks/whop/{connection}`` and ``GET /healthz`` (the receiver, unchanged),
``GET /auth/whop`` and ``GET /auth/whop/callback`` (OAuth), ``/graphql`` (the API), ``/`` (the
settings page). Sessions are signed cookies (HttpOnly, SameSite=Lax so the OAuth redirect back
from Whop still carries them, Secure when the public URL is https).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping

import dagster as dg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount, Route

from whop_pipeline.inbox.receiver import create_receiver_app
from whop_pipeline.inbox.webhook_secrets import secret_cache_seconds_from_env
from whop_pipeline.settings import SettingsError, db_url_from_env
from whop_pipeline.store.database import get_engine
from whop_pipeline.web import auth, graphql_api, oauth_routes, pages
from whop_pipeline.web.launcher import SyncLauncher

SESSION_MAX_AGE = 8 * 3600


def create_web_app(
    *,
    db_url: str,
    secrets: Mapping[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    public_url: str | None = None,
    extra_routes: list[BaseRoute] | None = None,
    secret_cache_seconds: float | None = None,
) -> Starlette:
    """The whole web app on ``db_url``; ``secrets`` are the receiver's static webhook secrets
    (the environment connection), ``instance`` the Dagster instance runs are launched on.

    The syncs it launches run the pipeline's own resources, which read ``WHOP_PIPELINE_DB_URL``:
    ``db_url`` must be that database, or two databases would each hold half of a connection."""
    configured = db_url_from_env()
    if db_url != configured:
        raise SettingsError(
            "the web app's database must be WHOP_PIPELINE_DB_URL's (the syncs it starts read "
            "that variable); set it to the same URL"
        )
    receiver = create_receiver_app(
        db_url=db_url,
        secrets=secrets,
        secret_cache_seconds=(
            secret_cache_seconds
            if secret_cache_seconds is not None
            else secret_cache_seconds_from_env()
        ),
    )
    launcher = SyncLauncher(instance)
    public = public_url or os.environ.get("WHOP_PIPELINE_PUBLIC_URL", "")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with receiver.router.lifespan_context(receiver):
            try:
                yield
            finally:
                await run_in_threadpool(launcher.close)

    routes: list[BaseRoute] = [
        Route("/auth/whop", oauth_routes.start, methods=["GET"]),
        Route("/auth/whop/callback", oauth_routes.callback, methods=["GET"]),
        *graphql_api.routes(),
        *(extra_routes or []),
        *pages.routes(),
        Mount("/", app=receiver),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=auth.session_secret(),
                session_cookie="whop_pipeline_session",
                max_age=SESSION_MAX_AGE,
                same_site="lax",
                https_only=public.startswith("https://"),
            )
        ],
    )
    app.state.engine = get_engine(db_url)
    app.state.db_url = db_url
    app.state.launcher = launcher
    app.state.receiver = receiver
    app.state.public_url = public
    return app

"""``whop-pipeline serve``: the web app (receiver, Whop OAuth, GraphQL, settings page)."""

from __future__ import annotations

import argparse
import logging
import os

import sqlalchemy as sa
import uvicorn

from whop_pipeline.inbox.receiver import connection_secrets_from_env
from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tokens import ADMIN_TOKEN_VAR
from whop_pipeline.web.app import create_web_app


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    db_url = db_url_from_env()
    get_engine(db_url)  # connect and migrate now: a wrong URL fails at start
    app = create_web_app(db_url=db_url, secrets=connection_secrets_from_env(required=False))
    base = f"http://{args.host}:{args.port}"
    shown = sa.make_url(db_url).render_as_string(hide_password=True)
    print(f"whop-pipeline: settings page {base}/ , GraphQL {base}/graphql", flush=True)
    print(f"whop-pipeline: Whop webhooks on {base}/webhooks/whop/<connection>; database {shown}")
    if not os.environ.get(ADMIN_TOKEN_VAR):
        print(f"whop-pipeline: {ADMIN_TOKEN_VAR} is not set: only connection tokens sign in")
    uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="info",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    ).run()
    return 0

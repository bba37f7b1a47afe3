"""``whop-pipeline webhooks serve``: the signed-webhook receiver in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys

import sqlalchemy as sa
import uvicorn

from whop_pipeline.inbox.receiver import connection_secrets_from_env, create_receiver_app
from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store.database import get_engine


def main(args: argparse.Namespace) -> int:
    """``whop-pipeline webhooks serve``: the receiver in the foreground until Ctrl-C."""
    secrets = connection_secrets_from_env()
    db_url = db_url_from_env()
    shown_url = sa.make_url(db_url).render_as_string(hide_password=True)
    try:
        get_engine(db_url)  # connect and migrate now: a wrong URL fails at start, not per delivery
    except Exception as exc:
        print(
            f"whop-pipeline: cannot open the pipeline database {shown_url}: {type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    app = create_receiver_app(db_url=db_url, secrets=secrets)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in secrets:
        print(
            f"whop-pipeline: receiving Whop webhooks on http://{args.host}:{args.port}/webhooks/whop/{name}"
        )
    print(f"whop-pipeline: storing them in {shown_url}; Ctrl-C stops", flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,  # rejections are logged by the receiver itself; 200s would drown them
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0

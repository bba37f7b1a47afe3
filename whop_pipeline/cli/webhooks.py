"""``whop-pipeline webhooks serve``: the signed-webhook receiver in the foreground."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

import sqlalchemy as sa
import uvicorn

from whop_pipeline.execution import connection_ops
from whop_pipeline.inbox.receiver import (
    ConnectionSecretsResolver,
    connection_secrets_from_env,
    create_receiver_app,
)
from whop_pipeline.inbox.store import inbox
from whop_pipeline.inbox.webhook_secrets import secret_cache_seconds_from_env
from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine
from whop_pipeline.whop import webhooks_api


def main(args: argparse.Namespace) -> int:
    """``whop-pipeline webhooks serve``: the receiver in the foreground until Ctrl-C."""
    # Before the configuration is read, so its warnings (the deprecated file) are shown.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Connections may all live in the table, and may be added while the receiver runs: no static
    # secret is required to start.
    static = connection_secrets_from_env(required=False)
    ttl = secret_cache_seconds_from_env()
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
    resolver = ConnectionSecretsResolver(lambda: get_engine(db_url), static=static, ttl_seconds=ttl)
    app = create_receiver_app(db_url=db_url, resolver=resolver)
    # The same lookup as a delivery's (problems such as an undecryptable secret are logged by it);
    # only names are printed.
    serving = [name for name in resolver.known_names() if resolver.lookup(name).verifier]
    base = f"http://{args.host}:{args.port}/webhooks/whop"
    for name in serving:
        print(f"whop-pipeline: receiving Whop webhooks on {base}/{name}")
    if not serving:
        print(
            f"whop-pipeline: no connection has a webhook secret yet; deliveries to {base}/<name> "
            "are accepted once one does (`whop-pipeline connections add`)"
        )
    print(
        "whop-pipeline: the connections table is read per delivery (each answer reused for "
        f"{ttl:g} s), so connections added, rotated or disconnected meanwhile take effect"
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


def replay_main(args: argparse.Namespace) -> int:
    """``whop-pipeline webhooks replay``: ask Whop to send again what the receiver missed."""
    db_url = db_url_from_env()
    engine = get_engine(db_url)
    with engine.connect() as conn:
        row = connections.require(conn, args.connection)
        newest = conn.execute(
            sa.select(sa.func.max(inbox.c.received_at)).where(inbox.c.connection == args.connection)
        ).scalar_one()
    if not row.whop_webhook_id:
        print(
            f"connection {args.connection!r} has no webhook registered by the pipeline: replay it "
            "from the Whop dashboard (Developer → Webhooks → deliveries)"
        )
        return 1
    since = dt.datetime.fromisoformat(args.since) if args.since else newest
    if since is None:
        print("the inbox holds no delivery of this connection yet: give --since")
        return 1
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    with connection_ops.whop_client(args.connection) as client:
        webhooks_api.replay(client, row.whop_webhook_id, sent_after=since, failed_only=True)
    print(
        f"asked Whop to replay the failed deliveries of webhook {row.whop_webhook_id} sent after "
        f"{since.isoformat()}; they keep their webhook-id, so the inbox stores each event once"
    )
    return 0

"""What the command line, the GraphQL API and the settings page do to a connection, written once."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.execution.preflight import resolve
from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store import connections
from whop_pipeline.whop import webhooks_api
from whop_pipeline.whop.client import WhopApiError, WhopClient

log = logging.getLogger(__name__)


@dataclass
class Disconnected:
    name: str
    webhook_deleted: bool | None = None  # None: the pipeline had registered none
    webhook_note: str | None = None
    purged: dict[str, int] = field(default_factory=dict)


def whop_client(name: str) -> WhopClient:
    settings = resolve(name)
    return WhopClient(
        base_url=settings.whop_api_base_url,
        api_key=settings.whop_api_key,
        account_id=settings.whop_account_id,
        setting_name=settings.setting,
    )


def disconnect(engine: sa.Engine, name: str, *, purge: bool = False) -> Disconnected:
    """Delete the Whop webhook the pipeline registered (when it did), erase the credentials and
    stop the connection; ``purge`` also deletes its pipeline data in the same transaction. Records
    in Twenty are kept."""
    with engine.connect() as conn:
        row = connections.require(conn, name)
    report = Disconnected(name)
    if row.whop_webhook_id and row.status != "disconnected":
        try:
            with whop_client(name) as client:
                report.webhook_deleted = webhooks_api.delete(client, row.whop_webhook_id)
        except (WhopApiError, connections.ConnectionProblem) as exc:
            # The credentials go regardless; the operator learns what is left to remove by hand.
            report.webhook_deleted = False
            report.webhook_note = (
                f"Whop webhook {row.whop_webhook_id} could not be deleted ({exc}); "
                "remove it in the Whop dashboard"
            )
            log.warning("connection %s: %s", name, report.webhook_note)
    with engine.begin() as conn:
        if purge:
            report.purged = connections.purge(conn, name)
        if row.from_environment:
            connections.set_status(conn, name, "disconnected")
        else:
            connections.disconnect(conn, name, now=dt.datetime.now(dt.UTC))
    return report


def register_webhook(engine: sa.Engine, name: str, public_url: str, box: SecretBox) -> str:
    """Create the connection's v1 webhook at ``public_url/webhooks/whop/NAME`` (replacing one the
    pipeline made before) and store its secret encrypted; returns the webhook id."""
    with engine.connect() as conn:
        row = connections.require(conn, name)
    url = f"{public_url.rstrip('/')}/webhooks/whop/{name}"
    with whop_client(name) as client:
        if row.whop_webhook_id:
            webhooks_api.delete(client, row.whop_webhook_id)
        hook = webhooks_api.create(client, url)
    with engine.begin() as conn:
        connections.set_webhook(conn, name, hook.id, secret=hook.secret, box=box)
    return hook.id

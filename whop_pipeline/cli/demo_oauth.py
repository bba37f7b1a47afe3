"""The demo's last act: a second Whop account connected with OAuth, as "Connect Whop" on the
settings page does it (the browser's redirects followed in-process)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import httpx

from whop_pipeline.sandbox.readings import live_records

ADMIN_TOKEN = "demo-admin-token"
CONNECTION = "second-account"


def oauth_environment(app_url: str, whop_root: str, sandbox: Any) -> dict[str, str]:
    config = sandbox.oauth.snapshot()
    return {
        "WHOP_PIPELINE_ADMIN_TOKEN": ADMIN_TOKEN,
        "WHOP_OAUTH_CLIENT_ID": config["client_id"],
        "WHOP_OAUTH_CLIENT_SECRET": sandbox.oauth.config.client_secret,
        "WHOP_OAUTH_REDIRECT_URI": f"{app_url}/auth/whop/callback",
        "WHOP_OAUTH_BASE_URL": whop_root,
        "WHOP_PIPELINE_PUBLIC_URL": app_url,
    }


def connect_with_oauth(app: Any, app_url: str, sandbox: Any, say: Callable[[str], None]) -> bool:
    from whop_pipeline.lib.secrets import SecretBox
    from whop_pipeline.store import connections, oauth_tokens

    account = sandbox.account(2)
    engine = app.state.engine
    with engine.begin() as conn:
        oauth_tokens.save_pending(
            conn,
            SecretBox.from_env(),
            name=CONNECTION,
            whop_account_id=account.account_id,
            twenty_api_url=sandbox.twenty_url,
            twenty_api_key=account.twenty_api_key,
            whop_api_base_url=sandbox.whop_base_url,
            now=dt.datetime.now(dt.UTC),
        )
    say(f"  connection {CONNECTION!r}: Whop {account.account_id} → Twenty workspace 2, waiting")
    httpx.post(f"{sandbox.whop_server.url}/_sandbox/oauth/consent", json={"decision": "approve"})
    with httpx.Client(follow_redirects=True, timeout=60) as browser:
        answer = browser.get(
            f"{app_url}/auth/whop",
            params={"connection": CONNECTION},
            headers={"Authorization": f"Bearer {os.environ['WHOP_PIPELINE_ADMIN_TOKEN']}"},
        )
    hops = " → ".join(str(r.url.copy_with(query=None)) for r in [*answer.history, answer])
    say(f"  {hops}")
    launcher = app.state.launcher
    for run_id in launcher.launched(CONNECTION):
        launcher.wait(run_id, timeout=600)
    with engine.connect() as conn:
        row = connections.require(conn, CONNECTION)
    say(
        f"  status {row.status}, Whop handle {row.whop_account_handle}, auth {row.whop_auth}, "
        f"webhook {row.whop_webhook_id or 'none'}; first sync: {row.last_sync_outcome}"
    )
    dump = account.twenty.dump()
    say(
        f"  workspace 2 now holds {len(live_records(dump, 'people'))} people and "
        f"{len(live_records(dump, 'opportunities'))} opportunities of account 2"
    )
    return row.status == "active" and row.last_sync_outcome == "success"

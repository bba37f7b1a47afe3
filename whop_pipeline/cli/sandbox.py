"""``whop-pipeline sandbox``: the Whop and Twenty emulators in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading

from whop_pipeline.sandbox.dataset import check_scale
from whop_pipeline.sandbox.runner import check_accounts, describe, start_sandbox
from whop_pipeline.sandbox.whop.oauth import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    DEFAULT_TOKEN_LIFETIME,
)


def main(args: argparse.Namespace) -> int:
    if bool(args.webhook_url) != bool(args.webhook_secret):
        print("whop-pipeline sandbox: --webhook-url and --webhook-secret go together")
        return 2
    try:
        scale = check_scale(getattr(args, "scale", 1))
        accounts = check_accounts(getattr(args, "accounts", 1))
    except ValueError as exc:
        print(f"whop-pipeline sandbox: --{exc}")
        return 2
    lifetime = getattr(args, "oauth_token_lifetime", DEFAULT_TOKEN_LIFETIME)
    if lifetime <= 0:
        print("whop-pipeline sandbox: --oauth-token-lifetime must be a positive number of seconds")
        return 2
    sandbox = start_sandbox(
        args.dataset,
        seed=args.seed,
        scale=scale,
        churn=getattr(args, "churn", "learnable"),
        whop_port=args.whop_port,
        twenty_port=args.twenty_port,
        whop_api_key=args.whop_api_key,
        twenty_api_key=args.twenty_api_key,
        twenty_rate_limit=args.twenty_rate_limit,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        accounts=accounts,
        oauth_client_id=getattr(args, "oauth_client_id", DEFAULT_CLIENT_ID),
        oauth_client_secret=getattr(args, "oauth_client_secret", DEFAULT_CLIENT_SECRET) or None,
        oauth_redirect_uri=getattr(args, "oauth_redirect_uri", DEFAULT_REDIRECT_URI),
        oauth_token_lifetime=lifetime,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(describe(sandbox, args.dataset), flush=True)
        stop.wait()
    finally:
        sandbox.stop()
        print("sandbox stopped", flush=True)
    return 0

"""Serve the Whop API v1 emulator in the foreground.

    uv run python -m whop_pipeline.sandbox.whop --size small --port 8100 --api-key sandbox-key \\
        --webhook-url http://127.0.0.1:8000/webhooks/whop --webhook-secret ws_...

The API base is ``http://HOST:PORT/api/v1``; control endpoints live under ``/_sandbox``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import uvicorn

from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.sandbox.whop.app import create_whop_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whop_pipeline.sandbox.whop", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=("tiny", "small", "large"), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-date", type=date.fromisoformat, default=date(2025, 1, 1))
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None, help="ISO time; default: this hour"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=None)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None, help="default: a random ws_ secret")
    args = parser.parse_args(argv)

    now = args.now.replace(tzinfo=args.now.tzinfo or UTC) if args.now else None
    dataset = generate_dataset(args.size, seed=args.seed, start_date=args.start_date, now=now)
    emulator = create_whop_app(
        dataset,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )
    counts = ", ".join(f"{k} {v}" for k, v in dataset.counts().items())
    print(
        f"Whop emulator: http://{args.host}:{args.port}/api/v1  account {emulator.account_id}  ({counts})"
    )
    if emulator.webhook_secret:
        print(f"webhooks → {args.webhook_url}  secret {emulator.webhook_secret}")
    try:
        uvicorn.run(
            emulator.app, host=args.host, port=args.port, log_level="warning", lifespan="off"
        )
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

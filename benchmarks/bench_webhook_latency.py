"""Webhook → CRM latency with the Dagster daemon: a membership changes in the Whop emulator, Whop
signs and delivers the webhook, the receiver stores it, the sensor launches a run, the run writes
to Twenty. Measured per change: from the change until the opportunity's new stage is readable in
Twenty.

    uv run python -m benchmarks.bench_webhook_latency [--changes 20] [--interval 1.5] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import common

SECRET = "ws_benchmark_secret"
HISTORY_DAYS = 40


def run(changes: int, interval: float, timeout: float) -> dict:
    os.environ["WHOP_SYNC_START_DATE"] = (
        dt.date.today() - dt.timedelta(days=HISTORY_DAYS)
    ).isoformat()
    from whop_pipeline.crm.mapping import opportunity_id
    from whop_pipeline.inbox.receiver import create_receiver_app
    from whop_pipeline.sandbox.common import BackgroundServer
    from whop_pipeline.sandbox.runner import start_sandbox
    from whop_pipeline.sync import run_sync
    from whop_pipeline_tests.daemon import Daemon

    work = Path(tempfile.mkdtemp(prefix="whop-latency-"))
    db_url = f"sqlite:///{work / 'pipeline.db'}"
    receiver = BackgroundServer(
        create_receiver_app(db_url=db_url, secrets={"default": SECRET})
    ).start()
    sandbox = start_sandbox(
        "small",
        start_date=dt.date.today() - dt.timedelta(days=HISTORY_DAYS),
        twenty_rate_limit=1_000_000,
        webhook_url=f"{receiver.url}/webhooks/whop/default",
        webhook_secret=SECRET,
    )
    env = sandbox.env(
        WHOP_PIPELINE_DB_URL=db_url,
        WHOP_WEBHOOK_SECRET=SECRET,
        TWENTY_MAX_CALLS_PER_MINUTE="1000000",
        WHOP_SYNC_START_DATE=os.environ["WHOP_SYNC_START_DATE"],
    )
    os.environ.update(env)
    headers = {"Authorization": f"Bearer {sandbox.twenty_api_key}"}
    latencies: list[float] = []
    try:
        assert run_sync("full", printer=lambda _line: None).success
        candidates = [
            m
            for m in sandbox.whop.dataset.rendered("memberships")
            if m["status"] == "active" and not m["cancel_at_period_end"]
        ][: changes + 1]
        with (
            Daemon(work / "dagster_home", env),
            httpx.Client(base_url=sandbox.twenty_url, headers=headers) as http,
        ):

            def stage(membership_id: str) -> str | None:
                response = http.get(
                    f"/rest/opportunities/{opportunity_id('default', membership_id)}"
                )
                return (
                    response.json()["data"]["opportunity"]["stage"] if response.is_success else None
                )

            pending: dict[str, float] = {}

            def collect() -> None:
                """Record the latency of every pending change now visible in Twenty."""
                for membership_id, started in list(pending.items()):
                    if stage(membership_id) == "LOST":
                        latencies.append(time.monotonic() - started)
                        pending.pop(membership_id)

            for index, membership in enumerate(candidates):
                sandbox.whop.update_membership(membership["id"], status="canceled")
                pending[membership["id"]] = time.monotonic()
                if index == 0:  # warm-up: the daemon's first launch also starts its code server
                    deadline = time.monotonic() + timeout
                    while stage(membership["id"]) != "LOST" and time.monotonic() < deadline:
                        time.sleep(0.2)
                    pending.pop(membership["id"])
                    continue
                time.sleep(interval)
                collect()
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                collect()
                time.sleep(0.2)
        deliveries = [d for d in sandbox.whop.deliveries() if d.get("status") == 200]
    finally:
        sandbox.stop()
        receiver.stop()
    return {
        "changes": changes,
        "landed": len(latencies),
        "lost": changes - len(latencies),
        "acknowledged_deliveries": len(deliveries),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(common.percentile(latencies, 0.95), 2) if latencies else None,
        "max_s": round(max(latencies), 2) if latencies else None,
        "interval_s": interval,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.5, help="seconds between changes")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.changes, args.interval, args.timeout)
    if args.json:
        print(json.dumps(result))
        return
    print("webhook → CRM latency with the daemon (sensor every 5 s, one run per batch)")
    for key, value in result.items():
        print(f"  {key:<26}{value}")


if __name__ == "__main__":
    main()

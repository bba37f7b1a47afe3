"""Webhook → CRM latency with the Dagster daemon: a membership changes in the Whop emulator, Whop
signs and delivers the webhook, the receiver stores it, the sensor launches a run, the run writes
to Twenty. Measured per change: from the change until the opportunity's new stage is readable in
Twenty, and where the seconds go: delivery (change → inbox row), sensor (inbox row → run created),
launch (run created → run started: queue, process start, definitions import), run (start → end),
and the rest (run end → the poll that saw the stage).

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
    from whop_pipeline.cli.sync import run_sync
    from whop_pipeline.crm.mapping import opportunity_id
    from whop_pipeline.inbox.receiver import create_receiver_app
    from whop_pipeline.sandbox.common import BackgroundServer
    from whop_pipeline.sandbox.runner import start_sandbox
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
        changed_at: dict[str, float] = {}
        seen: dict[str, float] = {}
        with (
            Daemon(work / "dagster_home", env) as daemon,
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
                        seen[membership_id] = time.time()
                        pending.pop(membership_id)

            for index, membership in enumerate(candidates):
                changed_at[membership["id"]] = time.time()
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
            breakdown = stages(daemon.instance(), db_url, changed_at, seen)
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
        "breakdown_p50_s": {k: round(statistics.median(v), 2) for k, v in breakdown.items() if v},
        "breakdown_p95_s": {
            k: round(common.percentile(v, 0.95), 2) for k, v in breakdown.items() if v
        },
    }


STAGES = ("delivery", "sensor", "launch", "run", "rest")


def stages(
    instance, db_url: str, changed_at: dict[str, float], seen: dict[str, float]
) -> dict[str, list[float]]:
    """Per landed change, the seconds of each stage, from the inbox row that carried it and the
    Dagster run that applied it."""
    import sqlalchemy as sa

    from whop_pipeline.inbox.store import inbox
    from whop_pipeline.store.database import get_engine

    with get_engine(db_url).connect() as conn:
        rows = conn.execute(
            sa.select(inbox.c.object_id, inbox.c.received_at, inbox.c.run_id)
            .where(inbox.c.object_id.in_(list(seen)), inbox.c.event_type.like("membership.%"))
            .order_by(inbox.c.id)
        ).all()
    first_row: dict[str, sa.Row] = {}
    for row in rows:
        first_row.setdefault(row.object_id, row)
    result: dict[str, list[float]] = {name: [] for name in STAGES}
    for membership_id, row in first_row.items():
        record = instance.get_run_record_by_id(row.run_id) if row.run_id else None
        if record is None or record.start_time is None or record.end_time is None:
            continue
        created = record.create_timestamp.timestamp()
        received = row.received_at.timestamp()
        values = (
            received - changed_at[membership_id],
            created - received,
            record.start_time - created,
            record.end_time - record.start_time,
            seen[membership_id] - record.end_time,
        )
        for name, value in zip(STAGES, values, strict=True):
            result[name].append(max(0.0, value))
    return result


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
        if not key.startswith("breakdown"):
            print(f"  {key:<26}{value}")
    print("  where the seconds go (p50 / p95 per stage):")
    for name in STAGES:
        p50 = result["breakdown_p50_s"].get(name)
        p95 = result["breakdown_p95_s"].get(name)
        print(f"    {name:<10}{p50!s:>8} {p95!s:>8}")


if __name__ == "__main__":
    main()

"""``whop-pipeline demo``: the whole product on the embedded default, with no configuration.

Starts the Whop and Twenty emulators and the webhook receiver in this process, runs a full sync,
changes a few memberships and payments in Whop (which sends signed webhooks to the receiver),
applies the inbox through the same job the sensor launches, syncs again, scores customer health
(models learned from the account, scores written to Twenty), and prints what landed.
Everything it writes goes to ``data/demo/``; the user's own configuration is never read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from collections import Counter
from typing import Any

import httpx

from whop_pipeline.sandbox.readings import live_records, write_requests
from whop_pipeline.settings import DATA_DIR

DEMO_DIR = DATA_DIR / "demo"
HISTORY_DAYS = 90
SECRET = "ws_demo_webhook_secret"
TWENTY_CALLS_PER_MINUTE = 100  # the real server's default: the demo pays Twenty's real price


def _say(text: str = "") -> None:
    print(text, flush=True)


def _heading(text: str) -> None:
    _say()
    _say(f"== {text} " + "=" * max(0, 72 - len(text)))


def _changes(whop: Any) -> tuple[list[str], list[str]]:
    """A few realistic changes: cancellations, a cancel-at-period-end, a refund, a failed charge.
    Returns the membership ids and the payment ids changed."""
    memberships = whop.dataset.rendered("memberships")
    payments = whop.dataset.rendered("payments")
    active = [m for m in memberships if m["status"] == "active" and not m["cancel_at_period_end"]]
    paid = [p for p in payments if p["substatus"] == "succeeded" and p["membership_id"]]
    for membership in active[:2]:
        whop.update_membership(membership["id"], status="canceled")
        _say(f"  membership {membership['id']}: canceled")
    whop.update_membership(active[2]["id"], cancel_at_period_end=True)
    _say(f"  membership {active[2]['id']}: set to cancel at period end")
    whop.update_payment(paid[0]["id"], substatus="refunded")
    _say(f"  payment {paid[0]['id']}: refunded")
    whop.update_payment(paid[1]["id"], status="open", substatus="failed")
    _say(f"  payment {paid[1]['id']}: failed")
    return [m["id"] for m in active[:3]], [p["id"] for p in paid[:2]]


def _changed_records(
    before: dict[str, list[dict]],
    after: dict[str, list[dict]],
    memberships: list[str],
    payments: list[str],
) -> None:
    def by(dump: dict, plural: str, key: str) -> dict[str, dict]:
        return {r[key]: r for r in live_records(dump, plural)}

    old_opps, new_opps = (
        by(before, "opportunities", "whopMembershipId"),
        by(after, "opportunities", "whopMembershipId"),
    )
    for membership_id in memberships:
        old, new = old_opps[membership_id], new_opps[membership_id]
        _say(f"  Opportunity {new['name']}: {old['stage']} → {new['stage']}")
    old_notes, new_notes = by(before, "notes", "whopPaymentId"), by(after, "notes", "whopPaymentId")
    for payment_id in payments:
        _say(f"  Note {old_notes[payment_id]['title']!r} → {new_notes[payment_id]['title']!r}")


def _summary(dump: dict[str, list[dict]]) -> None:
    people = live_records(dump, "people")
    opportunities = live_records(dump, "opportunities")
    notes = live_records(dump, "notes")
    for plural in ("people", "opportunities", "notes", "noteTargets", "whopProducts"):
        _say(f"  {plural:<14}{len(live_records(dump, plural)):>6}")
    stages = Counter(o["stage"] for o in opportunities)
    _say("  stages        " + ", ".join(f"{k} {v}" for k, v in sorted(stages.items())))
    by_id = {p["id"]: p for p in people}
    _say()
    _say("  a few records:")
    with_email = sorted(
        (p for p in people if p["emails"]["primaryEmail"]),
        key=lambda p: p["emails"]["primaryEmail"],
    )
    for person in with_email[:3]:
        name = f"{person['name']['firstName']} {person['name']['lastName']}".strip()
        _say(
            f"    Person       {name or '(no name)'} <{person['emails']['primaryEmail']}> "
            f"whopUserId={person['whopUserId']}"
        )
    for opp in sorted(opportunities, key=lambda o: o["whopMembershipId"])[:3]:
        contact = by_id.get(opp.get("pointOfContactId") or "", {}).get("whopUserId")
        amount = opp["amount"]
        money = (
            f"{int(amount['amountMicros']) / 1_000_000:.2f} {amount['currencyCode']}"
            if amount.get("amountMicros") is not None
            else "no amount"
        )
        _say(f"    Opportunity  {opp['name']} [{opp['stage']}] {money} contact={contact}")
    for note in sorted(notes, key=lambda n: n["whopPaymentId"])[:3]:
        _say(f"    Note         {note['title']}")


def _at_risk(dump: dict[str, list[dict]]) -> None:
    """The people most at risk, as a seller would see them in Twenty."""
    people = [p for p in live_records(dump, "people") if p.get("whopChurnRisk") is not None]
    people.sort(key=lambda p: (-p["whopChurnRisk"], p["whopUserId"]))
    _say(f"  {len(people)} people carry a churn risk; the three highest:")
    for person in people[:3]:
        name = f"{person['name']['firstName']} {person['name']['lastName']}".strip()
        value = person["whopLifetimeValue"]["amountMicros"] or 0
        _say(
            f"    {person['whopChurnRisk']:>3}  {name or person['whopUserId']} "
            f"(lifetime ${value / 1_000_000:,.2f}): {person['whopChurnRiskReasons']}"
        )


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    db_url = f"sqlite:///{DEMO_DIR / 'whop_pipeline.db'}"
    start_date = dt.date.today() - dt.timedelta(days=HISTORY_DAYS)
    # Before any pipeline module loads: the partitions start where the demo's history does.
    os.environ["WHOP_SYNC_START_DATE"] = start_date.isoformat()

    from whop_pipeline.cli.demo_oauth import connect_with_oauth, oauth_environment
    from whop_pipeline.cli.health import summary as health_summary
    from whop_pipeline.cli.inbox import process_pending
    from whop_pipeline.cli.sync import run_sync
    from whop_pipeline.execution.health import run_health
    from whop_pipeline.inbox import store
    from whop_pipeline.lib.secrets import KEYS_VAR, generate_key
    from whop_pipeline.sandbox.common import BackgroundServer
    from whop_pipeline.sandbox.runner import start_sandbox
    from whop_pipeline.store.database import get_engine
    from whop_pipeline.web.app import create_web_app

    _heading("1. Sandbox: Whop API v1 (two accounts) and Twenty emulators, the web app")
    os.environ[KEYS_VAR] = generate_key()  # the demo's own key: its database is thrown away
    os.environ["WHOP_PIPELINE_DB_URL"] = db_url
    app = create_web_app(db_url=db_url, secrets={"default": SECRET})
    receiver = BackgroundServer(app)
    receiver.start()
    sandbox = start_sandbox(
        args.dataset,
        seed=args.seed,
        start_date=start_date,
        twenty_rate_limit=TWENTY_CALLS_PER_MINUTE,
        webhook_url=f"{receiver.url}/webhooks/whop/default",
        webhook_secret=SECRET,
        accounts=2,
        oauth_redirect_uri=f"{receiver.url}/auth/whop/callback",
    )
    os.environ.update(oauth_environment(receiver.url, sandbox.whop_server.url, sandbox))
    try:
        counts = sandbox.whop.dataset.counts()
        _say(
            f"  Whop    {sandbox.whop_base_url}  ({', '.join(f'{v} {k}' for k, v in counts.items())})"
        )
        _say(
            f"  Twenty  {sandbox.twenty_url}  ({TWENTY_CALLS_PER_MINUTE} calls/min, like the real one)"
        )
        _say(f"  inbox   {receiver.url}/webhooks/whop/default")
        _say(f"  data    {DEMO_DIR}")
        os.environ.update(
            sandbox.env(
                WHOP_PIPELINE_DB_URL=db_url,
                WHOP_WEBHOOK_SECRET=SECRET,
                TWENTY_MAX_CALLS_PER_MINUTE=str(TWENTY_CALLS_PER_MINUTE),
                WHOP_PIPELINE_CONNECTION="default",
            )
        )

        _heading(f"2. Full sync ({HISTORY_DAYS} daily partitions)")
        report = run_sync("full")
        if not report.success:
            _say(f"sync failed: {report.error}")
            return 1
        _say()
        _say(report.table())
        full_calls = httpx.get(f"{sandbox.twenty_url}/_sandbox/stats").json()

        _heading("3. Changes in Whop, delivered as signed webhooks")
        before = httpx.get(f"{sandbox.twenty_url}/_sandbox/dump", timeout=60).json()
        changed_memberships, changed_payments = _changes(sandbox.whop)
        sandbox.whop.wait_for_webhooks(15)
        engine = get_engine(db_url)
        with engine.connect() as conn:
            inbox = store.status_counts(conn, "default")
        delivered = [d for d in sandbox.whop.deliveries() if d.get("status") == 200]
        _say(f"  {len(delivered)} deliveries acknowledged; inbox: {inbox}")

        _heading("4. Inbox → raw mirror → Twenty (the job the sensor launches)")
        httpx.post(f"{sandbox.twenty_url}/_sandbox/reset")
        applied = process_pending(printer=lambda line: _say(f"  {line}"))
        with engine.connect() as conn:
            inbox = store.status_counts(conn, "default")
        stats = httpx.get(f"{sandbox.twenty_url}/_sandbox/stats").json()
        _say(f"  {applied} events applied; inbox: {inbox}")
        _say(f"  Twenty writes for them: {write_requests(stats)}")
        after = httpx.get(f"{sandbox.twenty_url}/_sandbox/dump", timeout=60).json()
        _changed_records(before, after, changed_memberships, changed_payments)

        _heading("5. Incremental sync: the webhooks already did the work")
        httpx.post(f"{sandbox.twenty_url}/_sandbox/reset")
        report = run_sync("incremental")
        stats = httpx.get(f"{sandbox.twenty_url}/_sandbox/stats").json()
        _say()
        _say(report.table())
        _say(f"  Twenty writes: {write_requests(stats) or 'none'}")

        _heading("6. Customer health: models learned from this account, scores into Twenty")
        httpx.post(f"{sandbox.twenty_url}/_sandbox/reset")
        health = run_health(train=True, printer=lambda line: _say(f"  {line}"))
        for line in health_summary(health):
            _say(line)
        if not health.success:
            _say(f"health failed: {health.error}")
            return 1
        _at_risk(httpx.get(f"{sandbox.twenty_url}/_sandbox/dump", timeout=60).json())
        httpx.post(f"{sandbox.twenty_url}/_sandbox/reset")
        again = run_health(printer=lambda _line: None)
        stats = httpx.get(f"{sandbox.twenty_url}/_sandbox/stats").json()
        _say(
            f"  re-scored with nothing new: "
            f"{again.metadata['customer_health']['people_changed']} people changed, "
            f"Twenty writes: {write_requests(stats) or 'none'}"
        )

        _heading("7. What landed in the CRM")
        dump = httpx.get(f"{sandbox.twenty_url}/_sandbox/dump", timeout=60).json()
        _summary(dump)
        _say()
        total = full_calls["total"]
        _say(
            f"  first full sync: {total} Twenty calls "
            f"({sum(write_requests(full_calls).values())} writes) = "
            f"{total / TWENTY_CALLS_PER_MINUTE:.1f} min of a 100 calls/min budget"
        )

        _heading("8. A second Whop account, connected with OAuth (Connect Whop)")
        if not connect_with_oauth(app, receiver.url, sandbox, _say):
            return 1
        _say(f"  demo finished in {time.monotonic() - started:.0f}s")
    finally:
        receiver.stop()
        app.state.launcher.close()
        app.state.receiver.state.writer.close()
        sandbox.stop()
    return 0

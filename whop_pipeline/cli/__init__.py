"""``whop-pipeline``: the command line. Each subcommand imports its implementation lazily, so
``--help`` answers instantly and a missing setting is reported before anything heavy loads."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from whop_pipeline.settings import SettingsError

DESCRIPTION = """\
Keep a Twenty CRM workspace in step with a Whop business.

Configuration comes from environment variables (see .env.example); `demo` and `sandbox` need none.
"""


def _add_sandbox(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sandbox",
        help="serve the local Whop and Twenty emulators in the foreground",
        description="Serve the Whop API v1 emulator and the Twenty emulator on 127.0.0.1 until "
        "Ctrl-C. Prints their base URLs and API keys.",
    )
    p.add_argument("--dataset", choices=["tiny", "small", "large"], default="small")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--scale", type=int, default=1, help="multiply members/memberships/payments")
    p.add_argument("--whop-port", type=int, default=8810)
    p.add_argument("--twenty-port", type=int, default=8820)
    p.add_argument("--whop-api-key", default="sandbox-whop-key")
    p.add_argument("--twenty-api-key", default="sandbox-twenty-key")
    p.add_argument(
        "--twenty-rate-limit",
        type=float,
        default=100.0,
        metavar="CALLS_PER_MIN",
        help="Twenty calls allowed per minute (default 100, like the real server)",
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
    p.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of API calls answered with a 500, a 429 or a dropped connection",
    )
    p.add_argument("--webhook-url", help="deliver signed Whop webhooks here on every change")
    p.add_argument("--webhook-secret", help="the webhook secret (ws_...) to sign them with")
    p.set_defaults(handler="whop_pipeline.cli.sandbox:main")


def _add_sync(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="run the sync in-process (for cron users without the Dagster daemon)",
        description="Read Whop, update the raw mirror, and push what changed to Twenty, through "
        "the same Dagster assets the schedules run. Plain `sync` is incremental (members, "
        "products and the last two days of memberships and payments).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--full", action="store_true", help="re-read everything since WHOP_SYNC_START_DATE"
    )
    mode.add_argument("--since", metavar="YYYY-MM-DD", help="re-read from this day on")
    p.add_argument(
        "--dry-run", action="store_true", help="extract and plan; write nothing to Twenty"
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild every CRM record from the mirror (a new mapping version does this itself)",
    )
    p.set_defaults(handler="whop_pipeline.cli.sync:main")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="sandbox + full sync + changes + webhooks, then print what landed in the CRM",
        description="Start the Whop and Twenty emulators in-process (small dataset), run a full "
        "sync, change a few memberships and payments, deliver their signed webhooks through the "
        "receiver and the inbox, sync again, and print what landed in the CRM. Uses a "
        "throwaway database and Dagster instance; needs no configuration.",
    )
    p.add_argument("--dataset", choices=["tiny", "small"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler="whop_pipeline.cli.demo:main")


def _add_webhooks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("webhooks", help="the signed-webhook receiver")
    wsub = p.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    serve = wsub.add_parser(
        "serve",
        help="serve POST /webhooks/whop/{connection}",
        description="Verify Whop's Standard Webhooks signatures and store each event in the "
        "webhook inbox before acknowledging it; the sensor (or `inbox process`) applies them.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8830)
    serve.set_defaults(handler="whop_pipeline.cli.webhooks:main")


def _add_inbox(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inbox", help="the webhook inbox")
    isub = p.add_subparsers(dest="inbox_command", required=True, metavar="COMMAND")
    process = isub.add_parser(
        "process",
        help="apply pending webhook events now, in-process (no daemon needed)",
        description="Apply pending inbox events to the raw mirror and push the affected people, "
        "opportunities and notes to Twenty, through the same job the sensor launches.",
    )
    process.add_argument("--batch-size", type=int, default=500)
    process.set_defaults(handler="whop_pipeline.cli.inbox:main")
    status = isub.add_parser("status", help="count inbox rows by status")
    status.set_defaults(handler="whop_pipeline.cli.inbox:status_main")


def _add_db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the pipeline database")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = dsub.add_parser(
        "upgrade", help="apply pending migrations to WHOP_PIPELINE_DB_URL (idempotent)"
    )
    upgrade.set_defaults(handler="whop_pipeline.cli.db:upgrade_main")
    status = dsub.add_parser("status", help="show the schema revision and row counts")
    status.set_defaults(handler="whop_pipeline.cli.db:status_main")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whop-pipeline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_sync, _add_sandbox, _add_webhooks, _add_inbox, _add_db):
        add(sub)
    return parser


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function = handler.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _resolve(args.handler)(args) or 0
    except SettingsError as exc:
        print(f"whop-pipeline: configuration error: {exc} (see .env.example)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``whop-pipeline``: the command line. Each subcommand imports its implementation lazily, so
``--help`` answers instantly and a missing setting is reported before anything heavy loads."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from whop_pipeline.settings import DEFAULT_WHOP_API_BASE_URL, SettingsError

DESCRIPTION = """\
Keep a Twenty CRM workspace in step with a Whop business.

Configuration comes from environment variables (see .env.example); `demo` and `sandbox` need none.
"""


def _add_sandbox(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sandbox",
        help="serve the local Whop and Twenty emulators in the foreground",
        description="Serve the Whop API v1 emulator and the Twenty emulator on 127.0.0.1 until "
        "Ctrl-C. Prints their base URLs and API keys (every account's, with --accounts).",
    )
    p.add_argument("--dataset", choices=["tiny", "small", "large"], default="small")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--scale", type=int, default=1, help="multiply members/memberships/payments")
    p.add_argument(
        "--churn",
        choices=["learnable", "random"],
        default="learnable",
        help="how memberships end and who comes back: 'learnable' (failed payments, short "
        "tenure and cancel_at_period_end raise the hazard, and recently lapsed members win back "
        "new memberships; the default) or 'random' (ends independent of them, at about the same "
        "rate, and new memberships go to random members); see docs/sandbox.md#churn and "
        "docs/sandbox.md#win-back",
    )
    p.add_argument(
        "--accounts",
        type=int,
        default=1,
        metavar="N",
        help="serve N Whop accounts and N Twenty workspaces on the same ports (default 1); "
        "account i uses seed SEED+i-1 and the keys KEY-i (account 1 keeps the keys as given)",
    )
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
    p.add_argument(
        "--oauth-client-id", default="app_sandbox", help="the OAuth app's client id (app_...)"
    )
    p.add_argument(
        "--oauth-client-secret",
        default="sandbox-oauth-secret",
        help="the OAuth app's client secret (an empty value registers a public client)",
    )
    p.add_argument(
        "--oauth-redirect-uri",
        default="http://127.0.0.1:8830/auth/whop/callback",
        metavar="URL",
        help="the app's one registered redirect URI (matched exactly)",
    )
    p.add_argument(
        "--oauth-token-lifetime",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="how long OAuth access tokens last (default 3600)",
    )
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
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--connection",
        metavar="NAME",
        help="the connection to sync (default: the environment's, WHOP_PIPELINE_CONNECTION or "
        "'default')",
    )
    which.add_argument(
        "--all", action="store_true", help="every active connection, one after another"
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
    replay = wsub.add_parser(
        "replay",
        help="ask Whop to send again the deliveries the receiver missed",
        description="POST /webhooks/{id}/replay with failed_only for the webhook the pipeline "
        "registered; by default from the newest delivery the inbox holds. Replays keep their "
        "webhook-id, so nothing is stored twice.",
    )
    replay.add_argument("--connection", required=True, metavar="NAME")
    replay.add_argument("--since", metavar="ISO-8601", help="default: the newest stored delivery")
    replay.set_defaults(handler="whop_pipeline.cli.webhooks:replay_main")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the web app: webhook receiver, Whop OAuth, GraphQL API and settings page",
        description="Serve POST /webhooks/whop/{connection}, GET /auth/whop (OAuth), /graphql and "
        "the settings page at /. Sign in with WHOP_PIPELINE_ADMIN_TOKEN or a connection's token.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8830)
    p.set_defaults(handler="whop_pipeline.cli.serve:main")


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
    process.add_argument("--connection", metavar="NAME", help="default: the environment's")
    process.set_defaults(handler="whop_pipeline.cli.inbox:main")
    status = isub.add_parser("status", help="count inbox rows by status")
    status.add_argument("--connection", metavar="NAME", help="default: the environment's")
    status.set_defaults(handler="whop_pipeline.cli.inbox:status_main")


def _add_health(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="score every customer's health (churn risk, lead score, lifetime value) in-process",
        description="Run the customer health jobs the health schedules launch, for one "
        "connection: score every customer with the newest models and write what changed to "
        "Twenty; with --train, retrain the churn and lead models first (README.md#customer-health).",
    )
    p.add_argument("--connection", metavar="NAME", help="default: the environment's connection")
    p.add_argument("--train", action="store_true", help="retrain both models before scoring")
    p.set_defaults(handler="whop_pipeline.cli.health:main")


def _add_db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the pipeline database")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = dsub.add_parser(
        "upgrade", help="apply pending migrations to WHOP_PIPELINE_DB_URL (idempotent)"
    )
    upgrade.set_defaults(handler="whop_pipeline.cli.db:upgrade_main")
    status = dsub.add_parser("status", help="show the schema revision and row counts")
    status.set_defaults(handler="whop_pipeline.cli.db:status_main")


def _add_connections(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "connections",
        help="Whop accounts and the Twenty workspaces they sync into",
        description="Each connection syncs one Whop account into one Twenty workspace, with its "
        "own credentials, encrypted with WHOP_PIPELINE_ENCRYPTION_KEYS.",
    )
    csub = p.add_subparsers(dest="connections_command", required=True, metavar="COMMAND")
    add = csub.add_parser(
        "add",
        help="add (or reconnect) a connection after checking both credentials",
        description="Secrets come from the environment variables named here, or from standard "
        "input when the value is '-' (one line each: whop, twenty, webhook); never from argv.",
    )
    add.add_argument("name", help="lowercase letters, digits and '-' (e.g. acme)")
    add.add_argument("--whop-account", required=True, metavar="biz_...")
    add.add_argument("--twenty-url", required=True, metavar="URL", help="without /rest")
    add.add_argument(
        "--whop-api-key-env", metavar="VAR", help="the Whop account API key (or --whop-oauth)"
    )
    add.add_argument(
        "--whop-oauth",
        action="store_true",
        help="authorize Whop in the browser instead (the web app's Connect Whop)",
    )
    add.add_argument("--twenty-api-key-env", required=True, metavar="VAR")
    add.add_argument("--webhook-secret-env", metavar="VAR")
    add.add_argument("--whop-api-base-url", default=DEFAULT_WHOP_API_BASE_URL, metavar="URL")
    add.add_argument(
        "--skip-check", action="store_true", help="save without calling Whop and Twenty first"
    )
    add.set_defaults(handler="whop_pipeline.cli.connections:add_main")
    listing = csub.add_parser("list", help="every connection, its status and last sync")
    listing.set_defaults(handler="whop_pipeline.cli.connections:list_main")
    for name, text in (
        ("show", "one connection in full (never its secrets)"),
        ("pause", "stop its schedules and webhook processing (events still stored)"),
        ("resume", "start them again"),
    ):
        command = csub.add_parser(name, help=text)
        command.add_argument("name")
        command.set_defaults(handler=f"whop_pipeline.cli.connections:{name}_main")
    disconnect = csub.add_parser(
        "disconnect", help="erase its credentials and stop it; Twenty keeps its records"
    )
    disconnect.add_argument("name")
    disconnect.add_argument(
        "--purge", action="store_true", help="also delete its mirror, CRM records and sync state"
    )
    disconnect.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    disconnect.set_defaults(handler="whop_pipeline.cli.connections:disconnect_main")
    remove = csub.add_parser("remove", help="forget a disconnected connection and its data")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler="whop_pipeline.cli.connections:remove_main")
    rotate = csub.add_parser(
        "rotate-key",
        help="re-encrypt every secret with the first key of WHOP_PIPELINE_ENCRYPTION_KEYS",
    )
    rotate.set_defaults(handler="whop_pipeline.cli.connections:rotate_key_main")
    generate = csub.add_parser(
        "generate-key", help="print a new key for WHOP_PIPELINE_ENCRYPTION_KEYS"
    )
    generate.set_defaults(handler="whop_pipeline.cli.connections:generate_key_main")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whop-pipeline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.add_argument(
        "--verbose", action="store_true", help="show stack traces of errors (off: one line)"
    )
    for add in (
        _add_demo,
        _add_sync,
        _add_health,
        _add_sandbox,
        _add_serve,
        _add_webhooks,
        _add_inbox,
        _add_db,
    ):
        add(sub)
    _add_connections(sub)
    _accept_verbose_everywhere(parser)
    return parser


def _accept_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` after any command too (``sync --verbose``), not only before it."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for child in getattr(action, "choices", {}).values():
            child.add_argument(
                "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
            _accept_verbose_everywhere(child)


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function = handler.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _resolve(args.handler)(args) or 0
    except SettingsError as exc:
        if args.verbose:
            raise
        print(f"whop-pipeline: configuration error: {exc} (see .env.example)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        status = _operator_error(exc)
        if status is None or args.verbose:
            raise
        print(f"whop-pipeline: {exc}", file=sys.stderr)
        return status


def _operator_error(exc: Exception) -> int | None:
    """Exit status for an error worded for the operator (one line, no trace), else None.
    Imported here, not at the top, so ``--help`` does not load the database and HTTP stacks."""
    from whop_pipeline.lib.preflight import PreflightError
    from whop_pipeline.lib.secrets import SecretsError
    from whop_pipeline.store.connections import ConnectionProblem

    if isinstance(exc, PreflightError):
        return 1
    if isinstance(exc, SecretsError | ConnectionProblem):
        return 2
    return None


if __name__ == "__main__":
    sys.exit(main())

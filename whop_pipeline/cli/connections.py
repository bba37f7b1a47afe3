"""``whop-pipeline connections``: add, list, show, pause, resume, disconnect, remove, rotate-key.

Secrets are read from the environment variables the options name, or from standard input when the
option's value is ``-`` (one line per secret, in the order whop, twenty, webhook): never from argv,
which any user of the machine can read with ``ps``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from whop_pipeline.execution import connection_ops
from whop_pipeline.execution.preflight import check_connection
from whop_pipeline.lib.preflight import PreflightError
from whop_pipeline.lib.secrets import KEYS_VAR, SecretBox, generate_key
from whop_pipeline.settings import (
    ConnectionSettings,
    SettingsError,
    db_url_from_env,
    load_limits,
    load_settings,
)
from whop_pipeline.store import connections, oauth_tokens, tokens
from whop_pipeline.store.database import get_engine
from whop_pipeline.twenty.freshness import freshness_of


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _engine():
    return get_engine(db_url_from_env())


def read_secret(option: str, value: str | None, *, required: bool = True) -> str | None:
    """The secret an ``--...-env`` option names: ``-`` reads a line of standard input."""
    if value is None:
        if required:
            raise SettingsError(f"{option} is required")
        return None
    if value == "-":
        line = sys.stdin.readline().strip()
        if not line:
            raise SettingsError(f"{option} -: standard input gave an empty line")
        return line
    secret = os.environ.get(value)
    if not secret:
        raise SettingsError(f"{option} names {value}, which is not set (or empty)")
    return secret


def _add_oauth(args: argparse.Namespace, box: SecretBox) -> int:
    """A connection whose Whop side is authorized in the browser: its Twenty side now."""
    if args.whop_api_key_env:
        raise SettingsError("--whop-oauth and --whop-api-key-env exclude each other")
    twenty_key = read_secret("--twenty-api-key-env", args.twenty_api_key_env)
    with _engine().begin() as conn:
        oauth_tokens.save_pending(
            conn,
            box,
            name=args.name,
            whop_account_id=args.whop_account,
            twenty_api_url=args.twenty_url,
            twenty_api_key=twenty_key,
            whop_api_base_url=args.whop_api_base_url,
            now=_now(),
        )
        token = tokens.issue(conn, args.name)
    print(f"added connection {args.name!r}, waiting for Whop authorization:")
    print(f"  open <public url>/auth/whop?connection={args.name} (or Connect Whop on the page)")
    print(f"API token of {args.name!r} (shown once; GraphQL and the settings page): {token}")
    return 0


def add_main(args: argparse.Namespace) -> int:
    box = SecretBox.from_env()
    connections.check_name(args.name)
    if args.whop_oauth:
        return _add_oauth(args, box)
    whop_key = read_secret("--whop-api-key-env", args.whop_api_key_env)
    twenty_key = read_secret("--twenty-api-key-env", args.twenty_api_key_env)
    webhook_secret = read_secret("--webhook-secret-env", args.webhook_secret_env, required=False)
    settings = ConnectionSettings(
        name=args.name,
        whop_api_key=whop_key,
        whop_account_id=args.whop_account,
        whop_api_base_url=args.whop_api_base_url,
        twenty_api_url=args.twenty_url,
        twenty_api_key=twenty_key,
        whop_webhook_secret=webhook_secret,
        source="arguments",
        **load_limits(),
    )
    if not args.skip_check:
        try:
            check_connection(settings)
        except PreflightError as exc:
            print(f"not saved: {exc}")
            return 1
        print(f"checked: Whop account {args.whop_account} and the Twenty workspace answer")
    with _engine().begin() as conn:
        existing = connections.get(conn, args.name)
        connections.save(
            conn,
            box,
            name=args.name,
            whop_account_id=args.whop_account,
            twenty_api_url=args.twenty_url,
            whop_api_key=whop_key,
            twenty_api_key=twenty_key,
            webhook_secret=webhook_secret,
            whop_api_base_url=args.whop_api_base_url,
            now=_now(),
        )
        token = None if existing else tokens.issue(conn, args.name)
    verb = {"disconnected": "reconnected", "needs_reauth": "re-authenticated"}.get(
        existing.status if existing else "", "added"
    )
    print(f"{verb} connection {args.name!r}: Whop {args.whop_account} -> {args.twenty_url}")
    if webhook_secret:
        print(f"webhooks: point Whop at <receiver>/webhooks/whop/{args.name}")
    if token:
        print(f"API token of {args.name!r} (shown once; GraphQL and the settings page): {token}")
    return 0


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _rows(conn) -> list[connections.Connection]:
    rows = connections.list_all(conn)
    from_env = connections.environment_connection(os.environ)
    if from_env and not any(r.name == from_env for r in rows):
        # The environment connection before its first sync recorded it.
        try:
            env = load_settings().connection
        except SettingsError:
            return rows
        rows.append(
            connections.Connection(
                name=from_env,
                whop_account_id=env.whop_account_id,
                whop_auth="environment",
                whop_api_base_url=env.whop_api_base_url,
                twenty_api_url=env.twenty_api_url,
                status="active",
                has_credentials=True,
                has_webhook_secret=bool(env.whop_webhook_secret),
                created_at=_now(),
            )
        )
    return sorted(rows, key=lambda r: r.name)


def list_main(args: argparse.Namespace) -> int:
    del args
    with _engine().connect() as conn:
        rows = _rows(conn)
    if not rows:
        print("no connections yet: `whop-pipeline connections add NAME ...` adds one")
        return 0
    now = _now()
    header = (
        f"{'name':<16} {'status':<13} {'whop account':<18} {'twenty url':<28} "
        f"{'last sync':<16} {'outcome':<8} {'written':>7} {'fresh':<5}  last error"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        fresh = freshness_of(row, now).fresh if row.status == "active" else None
        source = " (env)" if row.from_environment else ""
        last = _when(row.last_sync_finished_at or row.last_sync_started_at)
        print(
            f"{row.name + source:<16} {row.status:<13} {row.whop_account_id:<18} "
            f"{row.twenty_api_url[:28]:<28} {last:<16} "
            f"{row.last_sync_outcome or '-':<8} {row.last_sync_written or 0:>7} "
            f"{'-' if fresh is None else 'yes' if fresh else 'NO':<5}  "
            f"{(row.last_error or '')[:80]}"
        )
    return 0


def show_main(args: argparse.Namespace) -> int:
    with _engine().connect() as conn:
        found = next((r for r in _rows(conn) if r.name == args.name), None)
    if found is None:
        raise connections.ConnectionProblem(f"no connection named {args.name!r}")
    stored = "stored encrypted" if found.has_credentials else "none"
    if found.from_environment:
        stored = "from WHOP_API_KEY / TWENTY_API_KEY"
    fields = {
        "name": found.name,
        "status": found.status,
        "whop account": found.whop_account_id,
        "whop auth": found.whop_auth,
        "whop api base url": found.whop_api_base_url,
        "twenty url": found.twenty_api_url,
        "credentials": stored,
        "webhook secret": "set" if found.has_webhook_secret else "none",
        "whop webhook id": found.whop_webhook_id or "-",
        "created": _when(found.created_at),
        "connected": _when(found.connected_at),
        "disconnected": _when(found.disconnected_at),
        "last sync run": found.last_sync_run_id or "-",
        "last sync started": _when(found.last_sync_started_at),
        "last sync finished": _when(found.last_sync_finished_at),
        "last sync outcome": found.last_sync_outcome or "-",
        "last sync written": found.last_sync_written or 0,
        "last success": _when(found.last_success_at),
        "last error": found.last_error or "-",
    }
    for label, value in fields.items():
        print(f"{label + ':':<20} {value}")
    return 0


def _set_status(name: str, status: str, allowed_from: tuple[str, ...]) -> int:
    with _engine().begin() as conn:
        row = connections.require(conn, name)
        if row.status not in allowed_from:
            print(f"connection {name!r} is {row.status}; nothing to do")
            return 1
        connections.set_status(conn, name, status)
    print(f"connection {name!r} is {status}")
    return 0


def pause_main(args: argparse.Namespace) -> int:
    return _set_status(args.name, "paused", ("active", "needs_reauth"))


def resume_main(args: argparse.Namespace) -> int:
    return _set_status(args.name, "active", ("paused", "needs_reauth"))


def _confirm(name: str, what: str, yes: bool) -> bool:
    if yes:
        return True
    print(f"{what}\nType the connection's name ({name}) to confirm: ", end="", flush=True)
    return sys.stdin.readline().strip() == name


def disconnect_main(args: argparse.Namespace) -> int:
    with _engine().connect() as conn:
        row = connections.require(conn, args.name)
    if row.status == "disconnected" and not args.purge:
        print(f"connection {args.name!r} is already disconnected")
        return 0
    if args.purge and not _confirm(
        args.name,
        f"--purge deletes {args.name!r}'s mirror, CRM records, sync state, errors and inbox "
        "(Twenty keeps every record).",
        args.yes,
    ):
        print("not confirmed; nothing changed")
        return 1
    report = connection_ops.disconnect(_engine(), args.name, purge=args.purge)
    if report.webhook_deleted:
        print(f"deleted the Whop webhook the pipeline had registered ({row.whop_webhook_id})")
    elif report.webhook_note:
        print(report.webhook_note)
    deleted = report.purged
    print(
        f"connection {args.name!r} disconnected: credentials erased, schedules and webhook "
        "processing stopped; records in Twenty are kept"
    )
    if deleted:
        print("purged: " + ", ".join(f"{n} {t}" for t, n in deleted.items() if n))
    return 0


def remove_main(args: argparse.Namespace) -> int:
    with _engine().connect() as conn:
        row = connections.require(conn, args.name)
    if row.status != "disconnected":
        print(f"connection {args.name!r} is {row.status}: disconnect it first")
        return 1
    if not _confirm(
        args.name,
        f"remove deletes {args.name!r} and all its pipeline data (Twenty keeps every record).",
        args.yes,
    ):
        print("not confirmed; nothing changed")
        return 1
    with _engine().begin() as conn:
        deleted = connections.purge(conn, args.name)
        connections.remove(conn, args.name)
    print(f"connection {args.name!r} removed ({sum(deleted.values())} rows of its data deleted)")
    return 0


def rotate_key_main(args: argparse.Namespace) -> int:
    del args
    box = SecretBox.from_env()
    with _engine().begin() as conn:
        count = connections.rotate_keys(conn, box)
        names = [r.name for r in connections.list_all(conn) if r.has_credentials]
        for name in names:  # each must still decrypt before the old key may go
            if not connections.get(conn, name).from_environment:
                connections.secrets(conn, box, name)
    print(
        f"re-encrypted {count} secrets of {len(names)} connections with the first key of "
        f"{KEYS_VAR}; the other keys can now be removed from it"
    )
    return 0


def generate_key_main(args: argparse.Namespace) -> int:
    del args
    print(generate_key())
    return 0

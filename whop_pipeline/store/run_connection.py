"""A run's connection: its name from the run's tag, its credentials from the table, and the one
preflight call per API per run.

Resources call these from ``setup_for_execution``, so every step (in whatever process the executor
starts it) works for the run's connection and no other.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa

from whop_pipeline.lib.preflight import PreflightError
from whop_pipeline.settings import CONNECTION_TAG, DEFAULT_DB_URL, ConnectionSettings
from whop_pipeline.store import connections
from whop_pipeline.store.database import get_engine

log = logging.getLogger(__name__)

# Set on the run once an API answered its preflight, so later steps (other processes) skip it.
CHECKED_TAG_PREFIX = "whop/checked-"


def run_connection_name(context: dg.InitResourceContext, fallback: str) -> str:
    run = context.run
    return (run.tags.get(CONNECTION_TAG) if run is not None else None) or fallback


def name_run(context: dg.InitResourceContext, name: str) -> None:
    """Tag a run that named no connection (an untagged backfill, say) with the one it works for,
    so the UI's filter by connection finds it."""
    run = context.run
    if run is not None and CONNECTION_TAG not in run.tags and context.instance is not None:
        context.instance.add_run_tags(run.run_id, {CONNECTION_TAG: name})


def engine_for(db_url: str | None) -> sa.Engine:
    return get_engine(db_url or DEFAULT_DB_URL)


def stored_settings(db_url: str | None, name: str, fallback: str) -> ConnectionSettings | None:
    """The connection's own credentials from the table; None for the environment connection
    (``fallback``, configured on the resource). ``ConnectionProblem`` for anything else."""
    with engine_for(db_url).connect() as conn:
        row = connections.get(conn, name)
        if (row is None or row.from_environment) and name == fallback:
            return None
        return connections.resolve(conn, name)


def needs_check(context: dg.InitResourceContext, api: str) -> bool:
    run = context.run
    if run is None:
        return False
    current = context.instance.get_run_by_id(run.run_id) if context.instance else None
    return CHECKED_TAG_PREFIX + api not in (current.tags if current else run.tags)


def mark_checked(context: dg.InitResourceContext, api: str) -> None:
    run = context.run
    if run is not None and context.instance is not None:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        context.instance.add_run_tags(run.run_id, {CHECKED_TAG_PREFIX + api: stamp})


def record_check_failure(db_url: str | None, name: str, error: PreflightError) -> None:
    """The connection's last error (and ``needs_reauth`` when the key was refused), so the
    operator sees it in `connections list` before opening the run."""
    try:
        with engine_for(db_url).begin() as conn:
            if connections.get(conn, name) is None:
                return
            connections.set_status(
                conn,
                name,
                "needs_reauth" if error.auth else connections.require(conn, name).status,
                error=str(error),
            )
    except sa.exc.SQLAlchemyError:  # the run fails on the preflight error either way
        log.exception("could not record connection %s's failed check", name)


def resolve_for_run(
    context: dg.InitResourceContext, db_url: str | None, fallback: str
) -> tuple[str, ConnectionSettings | None]:
    """The run's connection name, and its stored settings (None: the environment connection)."""
    name = run_connection_name(context, fallback)
    return name, stored_settings(db_url, name, fallback)


def check_once(
    context: dg.InitResourceContext,
    api: str,
    db_url: str | None,
    name: str,
    check: Callable[[], None],
) -> None:
    """Run ``check`` (one cheap call) unless a step of this run already did; a failure is recorded
    on the connection and fails the step in one line, without retries."""
    if not needs_check(context, api):
        return
    try:
        check()
    except PreflightError as exc:
        record_check_failure(db_url, name, exc)
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    mark_checked(context, api)

"""Engines and migrations for the pipeline database (SQLite by default, Postgres in production)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

# Alembic is imported where migrations run, not here: every run process imports this module, and
# most never migrate (the schema is current), so they skip Alembic's import time.

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration: a process whose database is at it never imports Alembic (a test checks it
# matches the migrations' head).
SCHEMA_REVISION = "0005"
# Values per IN list (and rows per multi-row statement): SQLite caps bound parameters per statement,
# and a huge IN list helps no planner.
IN_CHUNK = 500


def in_chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most ``size``, for IN lists and batched statements."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def upsert_statement(conn: sa.Connection, table: sa.Table):
    """``INSERT`` with ``ON CONFLICT`` support for the connection's backend (SQLite or Postgres)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the pipeline database supports SQLite and Postgres, not {dialect}")


# Rows a bulk write must add before the planner's statistics are refreshed (see ``analyze``).
ANALYZE_AFTER_ROWS = 1_000


def analyze(conn: sa.Connection, *tables: str) -> None:
    """Refresh Postgres's planner statistics for ``tables`` after a bulk write (SQLite plans by
    its indexes). A table that grew from empty to thousands of rows in one run is otherwise joined
    as if still empty: a membership check went from 0.2 s to 18.5 s that way on 25,000 rows."""
    if conn.dialect.name == "postgresql" and tables:
        conn.execute(sa.text(f"ANALYZE {', '.join(tables)}"))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the webhook receiver write while a run reads; FULL fsyncs every commit, because a
    # webhook is acknowledged only once its row is durable.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_db_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite files get their folder created and concurrency-safe pragmas."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _alembic_config(connection: sa.Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply pending migrations. Safe to call on every start: a current schema is left alone."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)


def _stored_revision(engine: sa.Engine) -> str | None:
    """The schema revision in ``alembic_version``, read with plain SQL (no Alembic import)."""
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:  # no table yet: an empty database
        return None


def _migrated_engine(url: str) -> sa.Engine:
    engine = create_db_engine(url)
    if _stored_revision(engine) != SCHEMA_REVISION:
        upgrade(engine)
    return engine


_ENGINE_LOCK = threading.Lock()
_ENGINES: dict[str, sa.Engine] = {}


def get_engine(url: str) -> sa.Engine:
    """A process-wide engine for ``url`` whose schema is at the latest migration. Thread-safe: the
    first call migrates, and threads starting together (the receiver's writer and its health check,
    a run's steps) must not migrate twice at once."""
    with _ENGINE_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _migrated_engine(url)
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of ``url``'s engine and forget it (a database about to be
    dropped, or a process done with it)."""
    with _ENGINE_LOCK:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()

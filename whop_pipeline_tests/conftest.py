"""Shared fixtures: throwaway pipeline databases on SQLite and on Postgres.

Postgres tests use ``WHOP_PIPELINE_TEST_PG_URL`` (default: the local server, database ``test``), each
in a schema of its own that is dropped afterwards. Without a server they skip with the reason, except
under ``CI=true``, where a missing Postgres fails the run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from whop_pipeline.lib.secrets import KEYS_VAR
from whop_pipeline_tests.postgres import scratch_schema

# The daily partitions start a few weeks back: Dagster records an event per partition, and two years
# of them would dominate the suite's time. Set before any pipeline module reads it.
TEST_START_DATE = dt.date.today() - dt.timedelta(days=35)
os.environ.setdefault("WHOP_SYNC_START_DATE", TEST_START_DATE.isoformat())
# Tests never touch a real Dagster instance: each makes a throwaway one.
os.environ.pop("DAGSTER_HOME", None)

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    return os.environ.get("WHOP_PIPELINE_TEST_PG_URL", DEFAULT_PG_URL)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_postgres() -> sa.Engine:
    engine = sa.create_engine(pg_admin_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {sa.make_url(pg_admin_url()).render_as_string()}"
        if _in_ci():
            pytest.fail(f"{reason} and CI=true requires it: {exc.orig}")
        pytest.skip(f"{reason} (set WHOP_PIPELINE_TEST_PG_URL to run these tests)")
    return engine


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh, empty schema."""
    require_postgres().dispose()
    with scratch_schema(pg_admin_url(), "wp_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pipeline.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """Runs a test once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sandbox():
    """The Whop and Twenty emulators (tiny dataset over the test partitions), in-process."""
    from whop_pipeline_tests.pipeline import start_test_sandbox

    sandbox = start_test_sandbox()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def two_accounts():
    """Two Whop accounts and two Twenty workspaces (account 2 on the next seed), in-process."""
    from whop_pipeline_tests.pipeline import start_test_sandbox

    sandbox = start_test_sandbox(accounts=2)
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def pipeline(sandbox, db_url):
    """Real resources pointed at the sandbox, on SQLite and on Postgres."""
    from whop_pipeline_tests.pipeline import Pipeline

    return Pipeline(sandbox, db_url)


@pytest.fixture
def sqlite_pipeline(sandbox, sqlite_url):
    from whop_pipeline_tests.pipeline import Pipeline

    return Pipeline(sandbox, sqlite_url)


@pytest.fixture
def encryption_key(monkeypatch) -> str:
    """A fresh Fernet key in WHOP_PIPELINE_ENCRYPTION_KEYS, for tests that store connections."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEYS_VAR, key)
    return key

"""Migrations build the same schema on SQLite and Postgres, and that schema is ``tables.py``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from whop_pipeline.store.database import (
    SCHEMA_REVISION,
    create_db_engine,
    current_revision,
    head_revision,
    upgrade,
)
from whop_pipeline.store.tables import metadata

GENERIC_TYPES = {
    "VARCHAR": "string",
    "TEXT": "text",
    "INTEGER": "integer",
    "DATETIME": "datetime",
    "TIMESTAMP": "datetime",
    "TIMESTAMP WITH TIME ZONE": "datetime",
    "JSON": "json",
    "BOOLEAN": "boolean",
    "BLOB": "binary",
    "BYTEA": "binary",
}


def describe_schema(engine: sa.Engine) -> dict:
    """A backend-neutral description: columns (generic type, length, nullability), keys, indexes."""
    inspector = sa.inspect(engine)
    schema = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        columns = {}
        for column in inspector.get_columns(table):
            type_name = str(column["type"]).split("(")[0].upper()
            columns[column["name"]] = (
                GENERIC_TYPES.get(type_name, type_name),
                getattr(column["type"], "length", None),
                column["nullable"],
            )
        schema[table] = {
            "columns": columns,
            "primary_key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
            # Postgres also reports each unique constraint as an index: count it once, as a constraint.
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]))
                for ix in inspector.get_indexes(table)
                if "duplicates_constraint" not in ix
            ),
            "unique": sorted(
                tuple(uq["column_names"]) for uq in inspector.get_unique_constraints(table)
            ),
        }
    return schema


def migrated(url: str) -> sa.Engine:
    engine = create_db_engine(url)
    upgrade(engine)
    return engine


@pytest.mark.postgres
def test_sqlite_and_postgres_get_the_same_schema(sqlite_url, pg_url):
    sqlite_schema = describe_schema(migrated(sqlite_url))
    postgres_schema = describe_schema(migrated(pg_url))
    assert set(sqlite_schema) == {
        "raw_members",
        "raw_products",
        "raw_plans",
        "raw_memberships",
        "raw_payments",
        "sync_state",
        "sync_errors",
        "webhook_inbox",
        "mirror_changes",
        "crm_records",
        "crm_builds",
        "connections",
        "connection_tokens",
        "oauth_states",
        "health_models",
    }
    assert sqlite_schema == postgres_schema


def test_migrations_match_the_table_definitions(db_url):
    engine = migrated(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_upgrade_is_idempotent(db_url):
    engine = migrated(db_url)
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # a second run at head changes nothing and does not fail
    assert current_revision(engine) == head_revision()


def test_every_table_carries_the_connection(db_url):
    """Every data table is keyed by connection; ``connections`` is keyed by its name."""
    inspector = sa.inspect(migrated(db_url))
    for table in inspector.get_table_names():
        if table not in ("alembic_version", "connections"):
            names = {c["name"] for c in inspector.get_columns(table)}
            assert "connection" in names, table
    assert inspector.get_pk_constraint("connections")["constrained_columns"] == ["name"]


def test_the_schema_revision_constant_is_the_migrations_head():
    assert head_revision() == SCHEMA_REVISION

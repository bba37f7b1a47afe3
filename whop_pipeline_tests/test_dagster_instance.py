"""The documented Dagster instance configs work: SQLite by default, Postgres in production."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from whop_pipeline_tests.conftest import pg_admin_url, require_postgres

ROOT = Path(__file__).resolve().parents[1]


@dg.asset
def probe() -> int:
    return 1


def _without_storage(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    config.pop("storage", None)
    return config


def test_postgres_config_differs_from_the_default_only_in_storage():
    assert _without_storage(ROOT / "dagster.yaml") == _without_storage(
        ROOT / "deploy" / "dagster.postgres.yaml"
    )


@pytest.mark.postgres
def test_an_instance_on_postgres_materializes(tmp_path, monkeypatch):
    admin = require_postgres()
    database = f"wp_dagster_{uuid.uuid4().hex[:10]}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    url = sa.make_url(pg_admin_url())
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", database)
    (tmp_path / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    try:
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            result = dg.materialize([probe], instance=instance)
            assert result.success
            assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

"""``whop-pipeline db upgrade|status``."""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store.database import create_db_engine, current_revision, head_revision, upgrade
from whop_pipeline.store.tables import RAW_TABLES, sync_errors, sync_state, webhook_inbox


def _safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def upgrade_main(_args: argparse.Namespace) -> int:
    url = db_url_from_env()
    engine = create_db_engine(url)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    print(f"{_safe_url(url)}: {before or 'empty'} → {after} (head {head_revision()})")
    return 0


def status_main(_args: argparse.Namespace) -> int:
    url = db_url_from_env()
    engine = create_db_engine(url)
    revision = current_revision(engine)
    print(f"database  {_safe_url(url)}")
    print(
        f"revision  {revision or 'none (run `whop-pipeline db upgrade`)'}; head {head_revision()}"
    )
    if revision is None:
        return 1
    with engine.connect() as conn:
        for table in [*RAW_TABLES.values(), sync_state, sync_errors, webhook_inbox]:
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            print(f"{table.name:<16}{count:>10}")
    return 0

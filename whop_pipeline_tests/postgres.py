"""A throwaway schema on a Postgres server, for tests and benchmarks that need an empty database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from whop_pipeline.store.database import dispose_engine


@contextlib.contextmanager
def scratch_schema(admin_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A URL for ``admin_url``'s database whose search_path is a new, empty schema, dropped on exit
    unless ``keep``."""
    url = sa.make_url(admin_url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    scoped_url = scoped.render_as_string(hide_password=False)
    try:
        yield scoped_url
    finally:
        dispose_engine(scoped_url)  # its pooled connections go before the schema does
        if not keep:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

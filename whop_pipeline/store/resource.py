"""The pipeline database as a Dagster resource, scoped to the run's connection."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from whop_pipeline.settings import DEFAULT_CONNECTION, DEFAULT_DB_URL
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.run_connection import name_run, run_connection_name


class PipelineDatabase(dg.ConfigurableResource):
    """Raw mirror, CRM records, sync state, sync errors and the webhook inbox.

    ``connection`` is the run's connection (its ``whop/connection`` tag), or ``connection_name``
    outside a run and in runs that name none; every query of an asset filters on it.
    ``url`` may carry a password, so definitions pass it as ``dg.EnvVar("WHOP_PIPELINE_DB_URL")``;
    left empty it means the embedded SQLite file in the project's data folder.
    """

    url: str | None = Field(default=None, description="SQLAlchemy URL; empty = embedded SQLite")
    connection_name: str = Field(
        default=DEFAULT_CONNECTION,
        description="Connection of runs without a whop/connection tag (the environment's)",
    )
    _connection: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._connection = run_connection_name(context, self.connection_name)
        name_run(context, self._connection)

    @property
    def connection(self) -> str:
        return self._connection or self.connection_name

    @property
    def resolved_url(self) -> str:
        return self.url or DEFAULT_DB_URL

    def engine(self) -> sa.Engine:
        return get_engine(self.resolved_url)

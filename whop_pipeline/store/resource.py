"""The pipeline database as a Dagster resource."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from whop_pipeline.settings import DEFAULT_CONNECTION, DEFAULT_DB_URL
from whop_pipeline.store.database import get_engine


class PipelineDatabase(dg.ConfigurableResource):
    """Raw mirror, sync state, sync errors and the webhook inbox, for one connection.

    ``url`` may carry a password, so definitions pass it as ``dg.EnvVar("WHOP_PIPELINE_DB_URL")``;
    left empty it means the embedded SQLite file in the project's data folder.
    """

    url: str | None = Field(default=None, description="SQLAlchemy URL; empty = embedded SQLite")
    connection_name: str = Field(
        default=DEFAULT_CONNECTION, description="Connection these rows belong to"
    )

    @property
    def resolved_url(self) -> str:
        return self.url or DEFAULT_DB_URL

    def engine(self) -> sa.Engine:
        return get_engine(self.resolved_url)

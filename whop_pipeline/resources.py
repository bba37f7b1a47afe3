"""The resources every asset, check, sensor and job uses, wired to environment variables.

Secrets and the database URL (which may hold a password) are ``dg.EnvVar``s, read at run time and
shown in the UI by name only; a connection's own secrets are decrypted from the connections table
at run time and never enter the config. Optional variables fall back to their documented
defaults.
"""

from __future__ import annotations

import os

import dagster as dg

from whop_pipeline.settings import DEFAULT_CONNECTION, DEFAULT_WHOP_API_BASE_URL
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.whop.resource import WhopResource


def _env_or_default(name: str, default: str | None) -> str | None:
    return dg.EnvVar(name) if os.environ.get(name) else default


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Each resource resolves the run's connection (tag ``whop/connection``) when a step starts:
    the environment connection from these variables, any other from the connections table."""
    connection = os.environ.get("WHOP_PIPELINE_CONNECTION") or DEFAULT_CONNECTION
    db_url = _env_or_default("WHOP_PIPELINE_DB_URL", None)
    return {
        "pipeline_db": PipelineDatabase(url=db_url, connection_name=connection),
        "whop": WhopResource(
            api_key=_env_or_default("WHOP_API_KEY", None),
            account_id=_env_or_default("WHOP_ACCOUNT_ID", None),
            base_url=_env_or_default("WHOP_API_BASE_URL", DEFAULT_WHOP_API_BASE_URL),
            max_requests_per_second=_number("WHOP_MAX_REQUESTS_PER_SECOND", 10.0),
            db_url=db_url,
            connection_name=connection,
        ),
        "twenty": TwentyResource(
            api_url=_env_or_default("TWENTY_API_URL", None),
            api_key=_env_or_default("TWENTY_API_KEY", None),
            db_url=db_url,
            connection_name=connection,
            max_calls_per_minute=_number("TWENTY_MAX_CALLS_PER_MINUTE", 100.0),
            batch_size=int(_number("TWENTY_BATCH_SIZE", 200)),
        ),
    }

"""Configuration: one place that knows every environment variable the pipeline reads.

Secrets reach Dagster resources through ``dg.EnvVar`` (see ``definitions.py``); this module validates
the same variables for the command line and names the one that is missing or wrong.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB_URL = f"sqlite:///{DATA_DIR / 'whop_pipeline.db'}"
DEFAULT_WHOP_API_BASE_URL = "https://api.whop.com/api/v1"
DEFAULT_START_DATE = dt.date(2025, 1, 1)
DEFAULT_CONNECTION = "default"
# The run tag that names a run's connection: resources resolve credentials from it, the queued run
# coordinator limits runs per value, and the UI filters a connection's history by it.
CONNECTION_TAG = "whop/connection"


class SettingsError(RuntimeError):
    """A configuration problem, worded for the person who has to fix it."""


class EnvVarSpec(BaseModel):
    name: str
    description: str
    secret: bool = False
    default: str | None = None


# The documented configuration. README's table and .env.example are checked against this list.
ENV_VARS: tuple[EnvVarSpec, ...] = (
    EnvVarSpec(name="WHOP_API_KEY", description="Whop account API key (Bearer)", secret=True),
    EnvVarSpec(name="WHOP_ACCOUNT_ID", description="Whop account (company) id, `biz_...`"),
    EnvVarSpec(
        name="WHOP_API_BASE_URL",
        description="Whop API base URL, including /api/v1",
        default=DEFAULT_WHOP_API_BASE_URL,
    ),
    EnvVarSpec(
        name="TWENTY_API_URL",
        description="Twenty server base URL, without /rest (e.g. http://localhost:3000)",
    ),
    EnvVarSpec(name="TWENTY_API_KEY", description="Twenty API key (Bearer)", secret=True),
    EnvVarSpec(
        name="WHOP_WEBHOOK_SECRET",
        description="Whop webhook secret (`ws_...`), used to verify deliveries",
        secret=True,
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_DB_URL",
        description="SQLAlchemy URL of the pipeline database",
        default="sqlite:///data/whop_pipeline.db (in the project folder)",
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_CONNECTION",
        description="Name of the connection these variables describe (the environment one)",
        default=DEFAULT_CONNECTION,
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_ENCRYPTION_KEYS",
        description="Comma-separated Fernet keys for stored connection secrets; the first "
        "encrypts, all decrypt (`whop-pipeline connections generate-key`)",
        secret=True,
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_SECRET_CACHE_SECONDS",
        description="Seconds the webhook receiver reuses a connection's secret from the table",
        default="5",
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_ADMIN_TOKEN",
        description="Token that signs in to the web app and GraphQL as admin (all connections)",
        secret=True,
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_SESSION_SECRET",
        description="Key that signs the web app's session cookies (default: derived from the "
        "first encryption key)",
        secret=True,
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_PUBLIC_URL",
        description="Public base URL of `whop-pipeline serve` (webhooks registered at "
        "URL/webhooks/whop/NAME)",
    ),
    EnvVarSpec(name="WHOP_OAUTH_CLIENT_ID", description="Whop app id, `app_...` (OAuth)"),
    EnvVarSpec(name="WHOP_OAUTH_CLIENT_SECRET", description="Whop app secret", secret=True),
    EnvVarSpec(
        name="WHOP_OAUTH_REDIRECT_URI",
        description="The app's registered redirect URI: PUBLIC_URL/auth/whop/callback",
    ),
    EnvVarSpec(
        name="WHOP_OAUTH_SCOPES",
        description="Scopes asked for (default: what the pipeline reads plus webhook management)",
    ),
    EnvVarSpec(
        name="WHOP_OAUTH_BASE_URL",
        description="Whop OAuth server",
        default="https://api.whop.com",
    ),
    EnvVarSpec(
        name="WHOP_PIPELINE_CONNECTIONS_FILE",
        description="Deprecated: JSON file of webhook secret variables per connection; "
        "use `whop-pipeline connections add`",
    ),
    EnvVarSpec(
        name="WHOP_SYNC_START_DATE",
        description="First day of the daily partitions (YYYY-MM-DD)",
        default=DEFAULT_START_DATE.isoformat(),
    ),
    EnvVarSpec(
        name="WHOP_MAX_REQUESTS_PER_SECOND",
        description="Client-side rate limit for Whop calls",
        default="10",
    ),
    EnvVarSpec(
        name="TWENTY_MAX_CALLS_PER_MINUTE",
        description="Client-side rate limit for Twenty calls (the server allows ~100/min)",
        default="100",
    ),
    EnvVarSpec(
        name="TWENTY_BATCH_SIZE",
        description="Records per Twenty batch upsert (shrinks when the server says so)",
        default="200",
    ),
)


class ConnectionSettings(BaseModel):
    """One Whop account synced into one Twenty workspace."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(default=DEFAULT_CONNECTION, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    whop_api_key: str = Field(min_length=1, repr=False)
    whop_account_id: str = Field(min_length=1)
    whop_api_base_url: str = DEFAULT_WHOP_API_BASE_URL
    twenty_api_url: str = Field(min_length=1)
    twenty_api_key: str = Field(min_length=1, repr=False)
    whop_webhook_secret: str | None = Field(default=None, repr=False)
    whop_max_requests_per_second: float = Field(default=10.0, gt=0)
    twenty_max_calls_per_minute: float = Field(default=100.0, gt=0)
    twenty_batch_size: int = Field(default=200, ge=1, le=1000)
    # Where the credentials came from, for messages that say what to fix: "environment" (the
    # variables above) or "table" (`whop-pipeline connections`).
    source: str = "environment"
    # "api_key", or "oauth" when ``whop_api_key`` is an access token that is refreshed.
    whop_auth: str = "api_key"

    def setting(self, field: str) -> str:
        """How the operator names a setting of this connection."""
        if self.source == "environment":
            return env_setting_name(field)
        if self.source == "arguments":
            return OPTION_NAMES.get(field, field)
        return f"{field} of connection {self.name!r}"

    @field_validator("whop_api_base_url", "twenty_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    db_url: str = DEFAULT_DB_URL
    start_date: dt.date = DEFAULT_START_DATE
    connection: ConnectionSettings


# Field name -> environment variable, for error messages that name what the user must set.
ENV_NAMES = {
    "name": "WHOP_PIPELINE_CONNECTION",
    "whop_api_key": "WHOP_API_KEY",
    "whop_account_id": "WHOP_ACCOUNT_ID",
    "whop_api_base_url": "WHOP_API_BASE_URL",
    "twenty_api_url": "TWENTY_API_URL",
    "twenty_api_key": "TWENTY_API_KEY",
    "whop_webhook_secret": "WHOP_WEBHOOK_SECRET",
    "whop_max_requests_per_second": "WHOP_MAX_REQUESTS_PER_SECOND",
    "twenty_max_calls_per_minute": "TWENTY_MAX_CALLS_PER_MINUTE",
    "twenty_batch_size": "TWENTY_BATCH_SIZE",
    "db_url": "WHOP_PIPELINE_DB_URL",
    "start_date": "WHOP_SYNC_START_DATE",
}


def env_setting_name(field: str) -> str:
    """How the environment connection names a setting: its variable."""
    return ENV_NAMES.get(field, field)


# Field name -> `connections add` option, for the checks made before a connection is saved.
OPTION_NAMES = {
    "whop_api_key": "--whop-api-key-env",
    "whop_account_id": "--whop-account",
    "whop_api_base_url": "--whop-api-base-url",
    "twenty_api_url": "--twenty-url",
    "twenty_api_key": "--twenty-api-key-env",
}


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = next((str(p) for p in reversed(item["loc"]) if str(p) in ENV_NAMES), None)
        env = ENV_NAMES.get(field or "", ".".join(str(p) for p in item["loc"]))
        # Never echo the input: it may be a secret.
        reason = "is not set" if item["type"] == "missing" else f"is invalid ({item['msg']})"
        lines.append(f"{env} {reason}")
    return "; ".join(lines)


def db_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("WHOP_PIPELINE_DB_URL") or DEFAULT_DB_URL


def start_date_from_env(environ: Mapping[str, str] | None = None) -> dt.date:
    env = os.environ if environ is None else environ
    raw = env.get("WHOP_SYNC_START_DATE")
    if not raw:
        return DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise SettingsError(
            f"WHOP_SYNC_START_DATE is invalid (expected YYYY-MM-DD, got {raw!r})"
        ) from exc


def load_settings(environ: Mapping[str, str] | None = None) -> PipelineSettings:
    """Validate the environment; raise ``SettingsError`` naming every missing or bad variable."""
    env = os.environ if environ is None else environ
    raw_connection = {
        field: env[var]
        for field, var in ENV_NAMES.items()
        if var in env and env[var] != "" and field not in ("db_url", "start_date")
    }
    problems: list[str] = []
    connection = None
    start_date = DEFAULT_START_DATE
    try:
        connection = ConnectionSettings.model_validate(raw_connection)
    except ValidationError as exc:
        problems.append(_describe(exc))
    try:
        start_date = start_date_from_env(env)
    except SettingsError as exc:
        problems.append(str(exc))
    if problems or connection is None:
        raise SettingsError("; ".join(problems))
    return PipelineSettings(
        db_url=db_url_from_env(env), start_date=start_date, connection=connection
    )


_LIMIT_FIELDS = ("whop_max_requests_per_second", "twenty_max_calls_per_minute", "twenty_batch_size")


def load_limits(environ: Mapping[str, str] | None = None) -> dict[str, float | int]:
    """The client limits every connection shares (each connection gets its own limiter)."""
    env = os.environ if environ is None else environ
    values = {f: env[ENV_NAMES[f]] for f in _LIMIT_FIELDS if env.get(ENV_NAMES[f])}
    defaults = ConnectionSettings.model_fields
    try:
        return {
            f: type(defaults[f].default)(values[f]) if f in values else defaults[f].default
            for f in _LIMIT_FIELDS
        }
    except ValueError as exc:
        raise SettingsError(f"a client limit variable is invalid: {exc}") from None

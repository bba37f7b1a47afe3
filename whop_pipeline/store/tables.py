"""Pipeline database schema (SQLAlchemy Core). Alembic migrations create it; this module describes it.

Every table carries ``connection`` so that one database can serve several Whop → Twenty connections
without one tenant ever reading another's rows.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    Postgres stores ``timestamptz``; SQLite stores naive UTC text, which still sorts correctly. Values
    read back are always aware UTC, so comparisons behave the same on both.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r}: the pipeline database stores aware UTC only"
            )
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _connection() -> sa.Column:
    return sa.Column("connection", sa.String(64), nullable=False)


def _raw_table(name: str, *link_columns: sa.Column) -> sa.Table:
    """A raw-mirror table: the latest JSON of each Whop object, keyed by (connection, id).

    ``updated_at`` is the object's own ``updated_at`` (members have none: the time the copy was
    observed stands in), and it decides last-write-wins between list reads and webhook events.
    """
    return sa.Table(
        name,
        metadata,
        _connection(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        *link_columns,
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("extracted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "id"),
        sa.Index(None, "connection", "created_at"),
    )


raw_members = _raw_table(
    "raw_members",
    sa.Column("user_id", sa.String(64)),
    sa.Column("email", sa.String(320)),
    sa.Index(None, "connection", "user_id"),
)
raw_products = _raw_table("raw_products")
raw_plans = _raw_table(
    "raw_plans",
    sa.Column("product_id", sa.String(64)),
)
raw_memberships = _raw_table(
    "raw_memberships",
    sa.Column("member_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("product_id", sa.String(64)),
    sa.Column("status", sa.String(32)),
    # A member's changes reach its opportunities; the incremental sync looks members up from here.
    sa.Index(None, "connection", "member_id"),
    sa.Index(None, "connection", "user_id"),
)
raw_payments = _raw_table(
    "raw_payments",
    sa.Column("membership_id", sa.String(64)),
    sa.Column("member_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("product_id", sa.String(64)),
    sa.Column("status", sa.String(32)),
    # Person, membership and product lookups of the transform (a change touches only its rows).
    sa.Index(None, "connection", "member_id"),
    sa.Index(None, "connection", "user_id"),
    sa.Index(None, "connection", "product_id"),
)

RAW_TABLES: dict[str, sa.Table] = {
    "members": raw_members,
    "products": raw_products,
    "plans": raw_plans,
    "memberships": raw_memberships,
    "payments": raw_payments,
}

# Mirror rows written since the transform last saw them: one row per write, consumed (deleted by id)
# by the transform in the same transaction that stores the rebuilt CRM records. The transform's
# work follows these rows, not the size of the account.
mirror_changes = sa.Table(
    "mirror_changes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _connection(),
    sa.Column("object_name", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(64), nullable=False),
    sa.Index(None, "connection", "id"),
)

# What the transform built for Twenty: one row per (object, source key), the record as it will be
# sent (relations named by source key in ``links``, resolved to Twenty ids at load time) and the
# digest the loader compares with ``sync_state``. ``load_pending`` marks rows whose digest changed
# since they were last loaded, so an incremental load reads only those.
crm_records = sa.Table(
    "crm_records",
    metadata,
    _connection(),
    sa.Column("object_name", sa.String(32), nullable=False),
    sa.Column("record_key", sa.String(128), nullable=False),
    sa.Column("person_key", sa.String(64)),
    sa.Column("email", sa.String(320)),
    sa.Column("day", sa.String(10)),
    sa.Column("record", sa.JSON(), nullable=False),
    sa.Column("links", sa.JSON()),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("load_pending", sa.Boolean(), nullable=False),
    sa.Column("built_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("connection", "object_name", "record_key"),
    sa.Index(None, "connection", "object_name", "load_pending", "record_key"),
    sa.Index(None, "connection", "object_name", "person_key"),
    sa.Index(None, "connection", "object_name", "email"),
)

# The mapping version each connection's CRM records were built with: a new version rebuilds them.
crm_builds = sa.Table(
    "crm_builds",
    metadata,
    _connection(),
    sa.Column("mapping_version", sa.String(32), nullable=False),
    sa.Column("built_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("connection"),
)

# What was last written to Twenty for each source row: the diff base of the loader.
sync_state = sa.Table(
    "sync_state",
    metadata,
    _connection(),
    sa.Column("object_name", sa.String(64), nullable=False),
    sa.Column("source_key", sa.String(128), nullable=False),
    sa.Column("twenty_id", sa.String(36), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("synced_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("connection", "object_name", "source_key"),
    sa.Index(None, "connection", "object_name", "twenty_id"),
)

# Rows Twenty rejected (or that could not be sent yet), with the reason; retried on the next run.
sync_errors = sa.Table(
    "sync_errors",
    metadata,
    _connection(),
    sa.Column("object_name", sa.String(64), nullable=False),
    sa.Column("source_key", sa.String(128), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("payload", sa.JSON()),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("first_failed_at", UTCDateTime(), nullable=False),
    sa.Column("last_failed_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime()),
    sa.PrimaryKeyConstraint("connection", "object_name", "source_key"),
    sa.Index(None, "connection", "resolved_at"),
)

# Verified webhook deliveries, stored before they are acknowledged. The status columns are the
# inbox's own: a Dagster run_key is never reused, so retries are tracked here, not by Dagster.
webhook_inbox = sa.Table(
    "webhook_inbox",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _connection(),
    sa.Column("webhook_id", sa.String(128), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("object_type", sa.String(32)),
    sa.Column("object_id", sa.String(64)),
    sa.Column("object_updated_at", UTCDateTime()),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text()),
    sa.Column("run_key", sa.String(128)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("status_changed_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("connection", "webhook_id"),
    # Every read is "this connection's rows in this status, oldest first".
    sa.Index(None, "connection", "status", "id"),
)

INBOX_STATUSES = ("pending", "processing", "done", "failed", "dead")

CONNECTION_STATUSES = ("active", "paused", "needs_reauth", "disconnected")
WHOP_AUTH_METHODS = ("api_key", "oauth", "environment")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# One Whop account synced into one Twenty workspace. Secrets are stored only as Fernet tokens
# (``lib/secrets.py``); ``whop_auth`` says what ``whop_credential`` is (an API key now, an OAuth
# access token with its refresh token and expiry later). The other tables' ``connection`` column
# holds ``name``.
connections = sa.Table(
    "connections",
    metadata,
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("whop_account_id", sa.String(64), nullable=False),
    sa.Column("whop_auth", sa.String(16), nullable=False),
    sa.Column("whop_api_base_url", sa.String(512), nullable=False),
    sa.Column("whop_credential_encrypted", sa.Text()),
    sa.Column("whop_refresh_token_encrypted", sa.Text()),
    sa.Column("whop_token_expires_at", UTCDateTime()),
    sa.Column("twenty_api_url", sa.String(512), nullable=False),
    sa.Column("twenty_api_key_encrypted", sa.Text()),
    sa.Column("webhook_secret_encrypted", sa.Text()),
    sa.Column("whop_webhook_id", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("whop_account_title", sa.String(256)),
    sa.Column("whop_account_handle", sa.String(128)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("connected_at", UTCDateTime()),
    sa.Column("disconnected_at", UTCDateTime()),
    sa.Column("last_sync_run_id", sa.String(64)),
    sa.Column("last_sync_started_at", UTCDateTime()),
    sa.Column("last_sync_finished_at", UTCDateTime()),
    sa.Column("last_sync_outcome", sa.String(16)),
    sa.Column("last_sync_written", sa.Integer()),
    sa.Column("last_success_at", UTCDateTime()),
    sa.Column("last_error", sa.Text()),
    # Who may spend the OAuth refresh token right now (see whop/tokens.py): refresh tokens rotate,
    # so two processes refreshing at once would leave one of them with a spent token.
    sa.Column("refresh_lease_until", UTCDateTime()),
    sa.PrimaryKeyConstraint("name"),
    sa.CheckConstraint(_one_of("status", CONNECTION_STATUSES), name="ck_connections_status"),
    sa.CheckConstraint(_one_of("whop_auth", WHOP_AUTH_METHODS), name="ck_connections_whop_auth"),
)

# The API token of each connection (GraphQL and the settings page): only its SHA-256 is kept, so a
# copy of the database grants nothing. Tokens are 32 random bytes; a slow hash adds nothing there.
connection_tokens = sa.Table(
    "connection_tokens",
    metadata,
    _connection(),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("connection"),
    sa.UniqueConstraint("token_hash"),
)

# OAuth authorizations in flight: ``state`` → the connection being connected, the PKCE verifier
# (encrypted) and the admin session that started it. Single use, valid for ten minutes.
oauth_states = sa.Table(
    "oauth_states",
    metadata,
    _connection(),
    sa.Column("state_hash", sa.String(64), nullable=False),
    sa.Column("code_verifier_encrypted", sa.Text(), nullable=False),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("session_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime()),
    sa.PrimaryKeyConstraint("state_hash"),
)

# Fitted customer-health models, one row per training: ``kind`` is "churn" or "lead", ``version``
# counts up per connection and kind. ``model`` is the pickled model (docs/health.md#stored-models):
# scores always come from the connection's newest version, and older ones stay for comparison.
health_models = sa.Table(
    "health_models",
    metadata,
    _connection(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("trained_at", UTCDateTime(), nullable=False),
    sa.Column("chosen", sa.String(32), nullable=False),
    sa.Column("no_signal", sa.Boolean, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("model", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("connection", "kind", "version"),
)

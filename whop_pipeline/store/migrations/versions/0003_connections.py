"""Connections: many Whop accounts into many Twenty workspaces, secrets encrypted at rest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from whop_pipeline.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connections",
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
        sa.PrimaryKeyConstraint("name", name="pk_connections"),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'needs_reauth', 'disconnected')",
            name="ck_connections_status",
        ),
        sa.CheckConstraint("whop_auth IN ('api_key', 'oauth', 'environment')", name="ck_connections_whop_auth"),
    )


def downgrade() -> None:
    op.drop_table("connections")

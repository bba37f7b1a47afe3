"""Initial schema: raw mirror, sync_state, sync_errors, webhook_inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from whop_pipeline.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LINK_LENGTHS = {"status": 32, "email": 320}
RAW_LINKS = {
    "raw_members": ["user_id", "email"],
    "raw_products": [],
    "raw_plans": ["product_id"],
    "raw_memberships": ["member_id", "user_id", "product_id", "status"],
    "raw_payments": ["membership_id", "member_id", "user_id", "product_id", "status"],
}


def upgrade() -> None:
    for name, links in RAW_LINKS.items():
        op.create_table(
            name,
            sa.Column("connection", sa.String(64), nullable=False),
            sa.Column("id", sa.String(64), nullable=False),
            sa.Column("created_at", UTCDateTime(), nullable=False),
            sa.Column("updated_at", UTCDateTime(), nullable=False),
            *[sa.Column(link, sa.String(LINK_LENGTHS.get(link, 64))) for link in links],
            sa.Column("payload", sa.JSON(), nullable=False),
            sa.Column("payload_hash", sa.String(64), nullable=False),
            sa.Column("extracted_at", UTCDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("connection", "id", name=f"pk_{name}"),
        )
        op.create_index(f"ix_{name}_connection_created_at", name, ["connection", "created_at"])

    op.create_table(
        "sync_state",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(64), nullable=False),
        sa.Column("source_key", sa.String(128), nullable=False),
        sa.Column("twenty_id", sa.String(36), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "object_name", "source_key", name="pk_sync_state"),
    )
    op.create_index(
        "ix_sync_state_connection_object_name_twenty_id",
        "sync_state",
        ["connection", "object_name", "twenty_id"],
    )

    op.create_table(
        "sync_errors",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(64), nullable=False),
        sa.Column("source_key", sa.String(128), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("first_failed_at", UTCDateTime(), nullable=False),
        sa.Column("last_failed_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("connection", "object_name", "source_key", name="pk_sync_errors"),
    )
    op.create_index(
        "ix_sync_errors_connection_resolved_at", "sync_errors", ["connection", "resolved_at"]
    )

    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(64), nullable=False),
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
        sa.UniqueConstraint("connection", "webhook_id", name="uq_webhook_inbox_connection_webhook_id"),
    )
    op.create_index(
        "ix_webhook_inbox_connection_status_id", "webhook_inbox", ["connection", "status", "id"]
    )


def downgrade() -> None:
    for name in ["webhook_inbox", "sync_errors", "sync_state", *reversed(list(RAW_LINKS))]:
        op.drop_table(name)

"""Connection API tokens (hashed) and OAuth authorizations in flight.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from whop_pipeline.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("refresh_lease_until", UTCDateTime()))
    op.create_table(
        "connection_tokens",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", name="pk_connection_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_connection_tokens_token_hash"),
    )
    op.create_table(
        "oauth_states",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("code_verifier_encrypted", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("state_hash", name="pk_oauth_states"),
    )


def downgrade() -> None:
    op.drop_table("oauth_states")
    op.drop_table("connection_tokens")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("refresh_lease_until")

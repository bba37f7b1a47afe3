"""CRM records as tables, the mirror change queue, and the lookup indexes of incremental transforms.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from whop_pipeline.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LOOKUPS = {
    "raw_members": ["user_id"],
    "raw_memberships": ["member_id", "user_id"],
    "raw_payments": ["member_id", "user_id", "product_id"],
}


def upgrade() -> None:
    for table, columns in LOOKUPS.items():
        for column in columns:
            op.create_index(f"ix_{table}_connection_{column}", table, ["connection", column])
    op.create_table(
        "mirror_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mirror_changes"),
    )
    op.create_index("ix_mirror_changes_connection_id", "mirror_changes", ["connection", "id"])
    op.create_table(
        "crm_records",
        sa.Column("connection", sa.String(64), nullable=False),
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
        sa.PrimaryKeyConstraint(
            "connection", "object_name", "record_key", name="pk_crm_records"
        ),
    )
    for columns in (
        ["load_pending", "record_key"],
        ["person_key"],
        ["email"],
    ):
        op.create_index(
            f"ix_crm_records_connection_object_name_{'_'.join(columns)}",
            "crm_records",
            ["connection", "object_name", *columns],
        )
    op.create_table(
        "crm_builds",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("mapping_version", sa.String(32), nullable=False),
        sa.Column("built_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", name="pk_crm_builds"),
    )


def downgrade() -> None:
    op.drop_table("crm_builds")
    op.drop_table("crm_records")
    op.drop_table("mirror_changes")
    for table, columns in LOOKUPS.items():
        for column in columns:
            op.drop_index(f"ix_{table}_connection_{column}", table)

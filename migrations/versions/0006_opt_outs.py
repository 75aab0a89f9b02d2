"""opt-outs: numbers that must not be messaged, kept as keyed hashes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

One row per number and scope: a client's own, or (``client`` NULL) every
client's. The number itself is never stored, only its pseudonym.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("contact_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client"], ["clients.name"], name=op.f("fk_opt_outs_client_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_outs")),
    )
    op.create_index(
        "uq_opt_outs_client_contact",
        "opt_outs",
        ["client", "contact_pseudonym"],
        unique=True,
        sqlite_where=sa.text("client IS NOT NULL"),
        postgresql_where=sa.text("client IS NOT NULL"),
    )
    op.create_index(
        "uq_opt_outs_global_contact",
        "opt_outs",
        ["contact_pseudonym"],
        unique=True,
        sqlite_where=sa.text("client IS NULL"),
        postgresql_where=sa.text("client IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")

"""clients apart from their keys; the state of fair dispatch

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Until now a key's name was its client. Every name a key, a message or an
Idempotency-Key carries becomes a client of that name, with no limits and
weight 1, and every key belongs to the client named like it: each message's
history stays with its client (a foreign key now holds each message to
its client). A key's name is unique among active keys only,
so a revoked key's name can be used again. The claim index gains the client
(round robin within a lane), and two small tables hold the round robin's place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sender_names", sa.JSON(), nullable=True),
        sa.Column("default_sender", sa.String(length=16), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        sa.Column("high_per_minute", sa.Integer(), nullable=True),
        sa.Column("weight", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_clients")),
    )
    _backfill_clients()
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client", sa.String(length=64), nullable=True))
    op.execute("UPDATE api_keys SET client = name")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("client", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("uq_api_keys_name", type_="unique")
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_client_clients"), "clients", ["client"], ["name"]
        )
        batch_op.create_index("ix_api_keys_client", ["client"], unique=False)
        batch_op.create_index(
            "uq_api_keys_active_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_client_clients"), "clients", ["client"], ["name"]
        )
        batch_op.drop_index("ix_messages_claim")
        batch_op.create_index(
            "ix_messages_claim", ["status", "priority", "client", "next_attempt_at"], unique=False
        )
    op.create_table(
        "dispatch_lanes",
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("virtual_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("priority", name=op.f("pk_dispatch_lanes")),
    )
    op.create_table(
        "dispatch_turns",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("pass_value", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client"], ["clients.name"], name=op.f("fk_dispatch_turns_client_clients")
        ),
        sa.PrimaryKeyConstraint("client", "priority", name=op.f("pk_dispatch_turns")),
    )


def _backfill_clients() -> None:
    """One client per name that keys, messages or Idempotency-Keys carry."""
    op.execute(
        """
        INSERT INTO clients (name, weight, created_at, updated_at)
        SELECT name, 1, MIN(created_at), MIN(created_at) FROM (
            SELECT name, created_at FROM api_keys
            UNION ALL SELECT client, created_at FROM messages
            UNION ALL SELECT client, created_at FROM idempotency_keys
        ) AS named
        GROUP BY name
        """
    )


def downgrade() -> None:
    op.drop_table("dispatch_turns")
    op.drop_table("dispatch_lanes")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_client_clients", type_="foreignkey")
        batch_op.drop_index("ix_messages_claim")
        batch_op.create_index(
            "ix_messages_claim", ["status", "priority", "next_attempt_at"], unique=False
        )
    # A key's name was its client: keep each key's own name (the client is lost).
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_api_keys_active_name")
        batch_op.drop_index("ix_api_keys_client")
        batch_op.drop_constraint("fk_api_keys_client_clients", type_="foreignkey")
        batch_op.drop_column("client")
        batch_op.create_unique_constraint("uq_api_keys_name", ["name"])
    op.drop_table("clients")

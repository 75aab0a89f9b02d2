"""privacy: retention overrides, pseudonymised numbers, the audit log, deleted counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- ``clients.retention_*``: a client's overrides of ``TRACKER_RETENTION_*``.
- ``messages.contact_pseudonym``, ``redacted_at``, ``pseudonymised_at``: what the
  retention job and erasures did to a row, and the keyed hash that stands in for
  a pseudonymised number; partial indexes let the job find each client's oldest
  rows still to do without reading the done ones.
- ``audit_events``: erasures, body reads and retention runs (counts, never numbers).
- ``deleted_message_counts``: per client, day and status, the messages retention
  deleted, so ``/v1/stats`` still counts them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETENTION_INDEXES = {  # as tracker.models.RETENTION_INDEXES, frozen here
    "redaction_due": "final_at IS NOT NULL AND body IS NOT NULL",
    "pseudonymisation_due": "final_at IS NOT NULL AND pseudonymised_at IS NULL",
    "final": "final_at IS NOT NULL",
}
PSEUDONYM_SET = "contact_pseudonym IS NOT NULL"


def upgrade() -> None:
    for name in ("retention_body", "retention_contact", "retention_message"):
        op.add_column("clients", sa.Column(name, sa.String(length=16), nullable=True))
    op.add_column("messages", sa.Column("contact_pseudonym", sa.String(length=64), nullable=True))
    for name in ("redacted_at", "pseudonymised_at"):
        op.add_column("messages", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_contact_pseudonym",
        "messages",
        ["contact_pseudonym"],
        sqlite_where=sa.text(PSEUDONYM_SET),
        postgresql_where=sa.text(PSEUDONYM_SET),
    )
    for name, condition in RETENTION_INDEXES.items():
        op.create_index(
            f"ix_messages_{name}",
            "messages",
            ["client", "final_at"],
            sqlite_where=sa.text(condition),
            postgresql_where=sa.text(condition),
        )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )  # fmt: skip
    op.create_index("ix_audit_events_created", "audit_events", ["created_at", "id"])
    op.create_table(
        "deleted_message_counts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client", "day", "status", name=op.f("pk_deleted_message_counts")),
    )


def downgrade() -> None:
    op.drop_table("deleted_message_counts")
    op.drop_table("audit_events")
    for name in ("ix_messages_contact_pseudonym", *(f"ix_messages_{n}" for n in RETENTION_INDEXES)):
        op.drop_index(name, table_name="messages")
    # ALTER TABLE ... DROP COLUMN on both (SQLite >= 3.35): a batch copy of messages
    # would drop 0005's triggers, and one of clients would trip its foreign keys.
    for table, names in (
        ("messages", ("pseudonymised_at", "redacted_at", "contact_pseudonym")),
        ("clients", ("retention_message", "retention_contact", "retention_body")),
    ):
        for name in names:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")

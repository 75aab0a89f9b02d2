"""the queue snapshot's index: queued and sending rows, every column it reads

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``queries.queue_snapshot`` (the dashboard's queue depth, drain time and oldest
queued tiles, and ``/v1/stats``' queue) read every queued and sending row from the
heap: on 1,000,000 messages with 30,000 of them, 10,000 scattered pages per poll
for an admin key. A partial index holding every column it tests turns that into an
index-only scan of the queue alone, for one client's key or every client's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = "status IN ('queued', 'sending')"


def upgrade() -> None:
    op.create_index(
        "ix_messages_queue",
        "messages",
        ["status", "next_attempt_at", "expires_at", "submitted_at", "lease_until", "client"],
        postgresql_where=sa.text(QUEUED),
        sqlite_where=sa.text(QUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_queue", table_name="messages")

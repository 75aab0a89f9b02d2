"""dispatch attempt outcomes; retry-waiting messages are queued

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``message_events.outcome`` records what each dispatch attempt came to, so
``/v1/stats`` counts a column instead of matching the ``detail`` text. Existing
events are backfilled from that text (the words the dispatcher wrote until now).
Messages left ``sending`` only to wait for a retry (no lease) become ``queued``:
that is what they are, and a sending row now always means a call under a lease.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (outcome, LIKE patterns on detail), first match wins; only the dispatcher's
# events of a real call ("attempt N:" with N > 0; the old sweep wrote "attempt 0:").
BACKFILL = (
    ("accepted", ("%accepted by KIMISMS%",)),
    ("rate_limited", ("%rate limited by KIMISMS%",)),
    ("rejected", ("%refused by KIMISMS:%",)),
    ("no_answer", ("%KIMISMS timed out%", "%cannot reach KIMISMS%")),
    ("account_unavailable", ("%refused our credentials%", "%KIMISMS answered 4%")),
    ("provider_error", ("%; retry at %", "%: gave up: %")),
)


def upgrade() -> None:
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=24), nullable=True))
    events = sa.table(
        "message_events",
        sa.column("source", sa.String),
        sa.column("detail", sa.Text),
        sa.column("outcome", sa.String),
    )
    attempt = sa.and_(
        events.c.source == "dispatcher",
        events.c.detail.like("attempt %"),
        events.c.detail.not_like("attempt 0:%"),
        events.c.outcome.is_(None),
    )
    for outcome, patterns in BACKFILL:
        matches = sa.or_(*(events.c.detail.like(p) for p in patterns))
        op.execute(events.update().where(attempt, matches).values(outcome=outcome))
    messages = sa.table(
        "messages",
        sa.column("status", sa.String),
        sa.column("rank", sa.SmallInteger),
        sa.column("lease_until", sa.DateTime),
    )
    op.execute(
        messages.update()
        .where(messages.c.status == "sending", messages.c.lease_until.is_(None))
        .values(status="queued", rank=0)
    )


def downgrade() -> None:
    # Retry-waiting messages stay queued: the old code claims those the same way.
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_column("outcome")

"""per-hour message counts for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The dashboard (#16) charts 30 days without reading messages: ``message_counts``
holds messages by (client, creation hour, current status) with their billed
units. Triggers on ``messages`` (insert, and an update that changes the status
or makes the message billed) append to ``message_count_deltas`` in the same
transaction, whatever code path made the change; appending takes no row lock,
so concurrent senders, dispatchers and callbacks never wait on one counter row.
``tracker.dashboard.counts.fold`` moves deltas into the counts; readers sum both.
Existing messages are counted here, once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Billed as /v1/stats counts it: the provider's answer was recorded, or a report gave its id.
BILLED = "({row}.accepted_at IS NOT NULL OR {row}.provider_message_id IS NOT NULL)"
SQLITE_HOUR = "substr({row}.created_at, 1, 13) || ':00:00.000000'"
POSTGRESQL_HOUR = "date_trunc('hour', {row}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
CHANGED = (
    "OLD.status IS NOT NEW.status OR "
    + BILLED.format(row="OLD")
    + " IS NOT "
    + BILLED.format(row="NEW")
)


def _delta(row: str, hour: str, sign: str) -> str:
    billed = BILLED.format(row=row)
    units = f"CASE WHEN {billed} THEN {sign}{row}.segments ELSE 0 END"
    values = f"{row}.client, {hour.format(row=row)}, {row}.status, {sign}1, {units}"
    # Only this module's own constants are formatted in: no outside value.
    return f"INSERT INTO message_count_deltas (client, hour, status, messages, units) VALUES ({values})"  # noqa: E501, S608


SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER message_counts_on_insert AFTER INSERT ON messages
BEGIN {_delta("NEW", SQLITE_HOUR, "")}; END""",
    f"""CREATE TRIGGER message_counts_on_update AFTER UPDATE ON messages
WHEN {CHANGED}
BEGIN {_delta("OLD", SQLITE_HOUR, "-")}; {_delta("NEW", SQLITE_HOUR, "")}; END""",
)

POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION message_counts_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        {_delta("OLD", POSTGRESQL_HOUR, "-")};
    END IF;
    {_delta("NEW", POSTGRESQL_HOUR, "")};
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGERS = (
    """CREATE TRIGGER message_counts_on_insert AFTER INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION message_counts_delta()""",
    f"""CREATE TRIGGER message_counts_on_update AFTER UPDATE ON messages
FOR EACH ROW WHEN ({CHANGED.replace(" IS NOT ", " IS DISTINCT FROM ")})
EXECUTE FUNCTION message_counts_delta()""",
)


def _backfill(hour: str) -> str:
    billed = BILLED.format(row="m")
    return f"""
    INSERT INTO message_counts (client, hour, status, messages, units)
    SELECT m.client, {hour.format(row="m")}, m.status, count(*),
        coalesce(sum(CASE WHEN {billed} THEN m.segments ELSE 0 END), 0)
    FROM messages AS m
    GROUP BY 1, 2, 3"""  # noqa: S608 - only this module's constants are formatted in


def upgrade() -> None:
    op.create_table(
        "message_counts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client", "hour", "status", name=op.f("pk_message_counts")),
    )
    op.create_table(
        "message_count_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_count_deltas")),
    )
    op.create_index("ix_message_count_deltas_hour", "message_count_deltas", ["hour"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(_backfill(POSTGRESQL_HOUR if postgresql else SQLITE_HOUR))
    if postgresql:
        op.execute(POSTGRESQL_FUNCTION)
    for statement in POSTGRESQL_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in ("message_counts_on_insert", "message_counts_on_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON messages" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS message_counts_delta()")
    op.drop_table("message_count_deltas")
    op.drop_table("message_counts")

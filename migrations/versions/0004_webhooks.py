"""status webhooks: endpoints, their subscriptions, deliveries and attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

A delivery is written by a trigger on ``message_events``: every status change
writes its event in the transaction that makes it (API, dispatcher, callback
group commit, spool replay, expiry sweep), so the trigger puts one delivery per
subscribed endpoint in that same transaction. No code path can change a status
and forget the webhook, and a crash after the commit loses nothing. The
delivery holds the message's columns as they are right after the change
(``data``; never the body), so a late retry still tells what was true then.

An endpoint that is disabled gets its deliveries as ``failed`` at once, so that
``recover`` can bring them back once it is enabled again. On PostgreSQL the
trigger also sends ``NOTIFY tracker_webhooks`` (delivered at commit) to wake the
deliverers of every process.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The statuses that have an event (webhooks.events.FOR_STATUS), as SQL.
EVENT_STATUSES = "('pending', 'delivered', 'failed', 'rejected', 'expired', 'cancelled')"

# The message's columns a delivery's data holds: what GET /v1/messages/{id} shows.
SNAPSHOT_COLUMNS = (
    "id", "client", "sender_name", "contact", "network", "segments", "encoding",
    "priority", "reference", "status", "provider_message_id", "provider_name",
    "provider_status", "provider_description", "attempts", "error", "created_at",
    "send_at", "expires_at", "submitted_at", "accepted_at", "final_at",
)  # fmt: skip


def _snapshot(build: str, metadata: str) -> str:
    pairs = [f"'{name}', m.{name}" for name in SNAPSHOT_COLUMNS]
    pairs += [f"'metadata', {metadata}", "'previous_status', NEW.from_status"]
    return f"{build}({', '.join(pairs)})"


def _insert(message_hex: str, snapshot: str) -> str:
    # Only this module's own constants are formatted in: no outside value.
    return f"""
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, message_id, sequence,
        data, occurred_at, status, attempts, next_attempt_at, last_error, completed_at,
        created_at)
    SELECT e.id, 'msg_' || {message_hex} || '_' || NEW.id, s.event_type, NEW.message_id,
        NEW.id, {snapshot}, NEW.created_at,
        CASE WHEN e.disabled_at IS NULL THEN 'pending' ELSE 'failed' END, 0,
        CASE WHEN e.disabled_at IS NULL THEN NEW.created_at END,
        CASE WHEN e.disabled_at IS NULL THEN NULL ELSE 'endpoint disabled' END,
        CASE WHEN e.disabled_at IS NULL THEN NULL ELSE NEW.created_at END,
        NEW.created_at
    FROM messages AS m
    JOIN webhook_endpoints AS e ON e.client = m.client
    JOIN webhook_subscriptions AS s
        ON s.endpoint_id = e.id AND s.event_type = 'message.' || NEW.to_status
    WHERE m.id = NEW.message_id"""  # noqa: S608


SQLITE_TRIGGER = f"""
CREATE TRIGGER webhook_deliveries_for_event AFTER INSERT ON message_events
WHEN NEW.to_status IN {EVENT_STATUSES} AND NEW.from_status IS NOT NEW.to_status
BEGIN
{_insert("m.id", _snapshot("json_object", "json(m.metadata)"))};
END
"""

POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION webhook_deliveries_for_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
{_insert("replace(m.id::text, '-', '')", _snapshot("json_build_object", "m.metadata"))};
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM pg_notify('tracker_webhooks', '');
    END IF;
    RETURN NULL;
END
$$
"""

POSTGRESQL_TRIGGER = f"""
CREATE TRIGGER webhook_deliveries_for_event AFTER INSERT ON message_events
FOR EACH ROW WHEN (NEW.to_status IN {EVENT_STATUSES}
    AND NEW.from_status IS DISTINCT FROM NEW.to_status)
EXECUTE FUNCTION webhook_deliveries_for_event()
"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client"], ["clients.name"], name=op.f("fk_webhook_endpoints_client_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("ix_webhook_endpoints_client", "webhook_endpoints", ["client"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_subscriptions_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "event_type", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_webhook_deliveries_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint_id", "status", "id"]
    )
    op.create_index("ix_webhook_deliveries_message_id", "webhook_deliveries", ["message_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS webhook_deliveries_for_event"
        + (" ON message_events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS webhook_deliveries_for_event()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("webhook_endpoints")

"""per-hour message counts for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The dashboard (#16) shows 30 days without reading messages or events:
``message_counts`` holds, per client and hour (``span`` 'hour') and per client
and day (``span`` 'day', the same facts added up, so a 30-day window sums 30
rows per fact, not 720), how many messages there are of each kind of fact,
with their billed units:

- ``status``/STATUS: messages created in the hour, by current status;
- ``ttd``/BIN: delivered ones by time to delivery (``DELIVERY_EDGES`` bins);
- ``failed_description``/TEXT and ``failed_network``/TEXT: failed ones by
  provider description and by network;
- ``provider``/``rate_limited`` or ``error``: dispatch attempts by the hour
  of the attempt (their event), as /v1/stats counts them.

Triggers on ``messages`` (insert; an update that changes any of those facts:
the old row's facts are taken back, the new one's added) and on
``message_events`` (an attempt's outcome) append to ``message_count_deltas``
in the same transaction, whatever code path made the change. Appending takes
no row lock, so concurrent senders, dispatchers and callbacks never wait on
one counter row. ``tracker.dashboard.counts.fold`` moves deltas into the
counts; readers sum both. Existing rows are counted here, once.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Seconds: bin i holds deliveries that took [EDGES[i], EDGES[i + 1]); the last is open.
DELIVERY_EDGES = (
    0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 180, 240,
    300, 400, 500, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 43200,
    86400,
)  # fmt: skip
ERROR_OUTCOMES = "('account_unavailable', 'provider_error', 'no_answer')"
BILLED = "({row}.accepted_at IS NOT NULL OR {row}.provider_message_id IS NOT NULL)"
DIALECTS = {
    "sqlite": {
        "hour": "substr({at}, 1, 13) || ':00:00.000000'",
        "day": "substr({at}, 1, 10) || ' 00:00:00.000000'",
        "seconds": "((julianday({row}.final_at) - julianday({row}.created_at)) * 86400.0)",
        "text": "CAST({value} AS TEXT)",
        "differ": "IS NOT",
    },
    "postgresql": {
        "hour": "date_trunc('hour', {at} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "day": "date_trunc('day', {at} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "seconds": "extract(epoch FROM {row}.final_at - {row}.created_at)",
        "text": "CAST({value} AS TEXT)",
        "differ": "IS DISTINCT FROM",
    },
}
WATCHED = ("status", "network", "provider_description", "final_at")


def _bin(seconds: str) -> str:
    steps = " ".join(
        f"WHEN {seconds} < {edge} THEN {i}" for i, edge in enumerate(DELIVERY_EDGES[1:])
    )
    return f"CASE {steps} ELSE {len(DELIVERY_EDGES) - 1} END"


def _facts(row: str, sign: str, sql: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(kind, label, units, condition) of one message row, as SQL."""
    billed = BILLED.format(row=row)
    delivered_bin = sql["text"].format(value=_bin(sql["seconds"].format(row=row)))
    failed = f"{row}.status = 'failed'"
    return [
        ("'status'", f"{row}.status", f"CASE WHEN {billed} THEN {sign}{row}.segments ELSE 0 END",
         "1 = 1"),
        ("'ttd'", delivered_bin, "0", f"{row}.status = 'delivered' AND {row}.final_at IS NOT NULL"),
        ("'failed_description'", f"coalesce({row}.provider_description, '(none)')", "0", failed),
        ("'failed_network'", f"coalesce({row}.network, '(none)')", "0", failed),
    ]  # fmt: skip


def _deltas(row: str, sign: str, sql: dict[str, str]) -> list[str]:
    hour = sql["hour"].format(at=f"{row}.created_at")
    # Only this module's own constants are formatted in: no outside value.
    return [
        "INSERT INTO message_count_deltas (client, hour, kind, label, messages, units) "
        f"SELECT {row}.client, {hour}, {kind}, {label}, {sign}1, {units} WHERE {condition}"
        for kind, label, units, condition in _facts(row, sign, sql)
    ]


def _changed(sql: dict[str, str]) -> str:
    billed = f"{BILLED.format(row='OLD')} {sql['differ']} {BILLED.format(row='NEW')}"
    return " OR ".join([*(f"OLD.{c} {sql['differ']} NEW.{c}" for c in WATCHED), billed])


def _provider(sql: dict[str, str]) -> str:
    hour = sql["hour"].format(at="NEW.created_at")
    label = "CASE WHEN NEW.outcome = 'rate_limited' THEN 'rate_limited' ELSE 'error' END"
    return (
        "INSERT INTO message_count_deltas (client, hour, kind, label, messages, units) "  # noqa: S608
        f"SELECT m.client, {hour}, 'provider', {label}, 1, 0 FROM messages AS m "
        "WHERE m.id = NEW.message_id"
    )


PROVIDER_WHEN = f"NEW.outcome = 'rate_limited' OR NEW.outcome IN {ERROR_OUTCOMES}"


def _sqlite_statements() -> list[str]:
    sql = DIALECTS["sqlite"]
    insert = "; ".join(_deltas("NEW", "", sql))
    update = "; ".join([*_deltas("OLD", "-", sql), *_deltas("NEW", "", sql)])
    return [
        f"CREATE TRIGGER message_counts_on_insert AFTER INSERT ON messages BEGIN {insert}; END",
        (
            f"CREATE TRIGGER message_counts_on_update AFTER UPDATE ON messages "
            f"WHEN {_changed(sql)} BEGIN {update}; END"
        ),
        (
            f"CREATE TRIGGER message_counts_on_event AFTER INSERT ON message_events "
            f"WHEN {PROVIDER_WHEN} BEGIN {_provider(sql)}; END"
        ),
    ]


def _postgresql_statements() -> list[str]:
    sql = DIALECTS["postgresql"]
    old = ";\n        ".join(_deltas("OLD", "-", sql))
    new = ";\n    ".join(_deltas("NEW", "", sql))
    return [
        f"""CREATE FUNCTION message_counts_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        {old};
    END IF;
    {new};
    RETURN NULL;
END
$$""",
        f"""CREATE FUNCTION message_counts_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_provider(sql)};
    RETURN NULL;
END
$$""",
        (
            "CREATE TRIGGER message_counts_on_insert AFTER INSERT ON messages "
            "FOR EACH ROW EXECUTE FUNCTION message_counts_delta()"
        ),
        (
            f"CREATE TRIGGER message_counts_on_update AFTER UPDATE ON messages "
            f"FOR EACH ROW WHEN ({_changed(sql)}) EXECUTE FUNCTION message_counts_delta()"
        ),
        (
            f"CREATE TRIGGER message_counts_on_event AFTER INSERT ON message_events "
            f"FOR EACH ROW WHEN ({PROVIDER_WHEN}) EXECUTE FUNCTION message_counts_event()"
        ),
    ]


INTO_COUNTS = "INSERT INTO message_counts (client, span, starts_at, kind, label, messages, units) "


def _backfill(sql: dict[str, str]) -> list[str]:
    """Today's rows as counts: the same facts the triggers write, grouped."""
    found = []
    for kind, label, units, condition in _facts("m", "", sql):
        hour = sql["hour"].format(at="m.created_at")
        found.append(
            INTO_COUNTS + f"SELECT m.client, 'hour', {hour}, {kind}, {label}, count(*), "  # noqa: S608
            f"coalesce(sum({units}), 0) "
            f"FROM messages AS m WHERE {condition} GROUP BY 1, 2, 3, 4, 5"
        )
    hour = sql["hour"].format(at="e.created_at")
    found.append(
        INTO_COUNTS + f"SELECT m.client, 'hour', {hour}, 'provider', CASE"  # noqa: S608
        f" WHEN e.outcome = 'rate_limited' "
        "THEN 'rate_limited' ELSE 'error' END, count(*), 0 "
        "FROM message_events AS e JOIN messages AS m ON m.id = e.message_id "
        f"WHERE e.outcome = 'rate_limited' OR e.outcome IN {ERROR_OUTCOMES} GROUP BY 1, 2, 3, 4, 5"
    )
    day = sql["day"].format(at="c.starts_at")
    found.append(
        INTO_COUNTS
        + f"SELECT c.client, 'day', {day}, c.kind, c.label, sum(c.messages), sum(c.units) "  # noqa: S608
        "FROM message_counts AS c WHERE c.span = 'hour' GROUP BY 1, 2, 3, 4, 5"
    )
    return found


def _columns(*, counts: bool) -> list[sa.Column[Any]]:
    when: list[sa.Column[Any]] = (
        [sa.Column("span", sa.String(length=4), nullable=False)] if counts else []
    )
    return [
        sa.Column("client", sa.String(length=64), nullable=False),
        *when,
        sa.Column("starts_at" if counts else "hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "message_counts",
        *_columns(counts=True),
        sa.PrimaryKeyConstraint(
            "client", "span", "starts_at", "kind", "label", name=op.f("pk_message_counts")
        ),
    )
    op.create_table(
        "message_count_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        *_columns(counts=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_count_deltas")),
    )
    # The overdue count, polled by the dashboard: pending rows only, every column it tests.
    op.create_index(
        "ix_messages_pending_since",
        "messages",
        ["accepted_at", "submitted_at", "created_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    sql = DIALECTS["postgresql" if postgresql else "sqlite"]
    for statement in _backfill(sql):
        op.execute(statement)
    for statement in _postgresql_statements() if postgresql else _sqlite_statements():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    triggers = {"message_counts_on_insert": "messages", "message_counts_on_update": "messages",
                "message_counts_on_event": "message_events"}  # fmt: skip
    for name, table in triggers.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS message_counts_delta()")
        op.execute("DROP FUNCTION IF EXISTS message_counts_event()")
    op.drop_table("message_count_deltas")
    op.drop_table("message_counts")
    op.drop_index("ix_messages_pending_since", table_name="messages")

"""Each retention rule finds its rows through its own partial index of 0007 (#17)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.integration import retention_support as rs
from tracker import db, models
from tracker.privacy import retention_batches

Rule = retention_batches.Rule
INDEXES = {
    Rule.BODY: "ix_messages_redaction_due",
    Rule.CONTACT: "ix_messages_pseudonymisation_due",
    Rule.MESSAGE: "ix_messages_final",
}


def _value(value: Any, sqlite: bool) -> Any:
    if sqlite and isinstance(value, dt.datetime):
        return db.sqlite_time(value)
    if sqlite and isinstance(value, uuid.UUID):
        return value.hex
    return value


async def _done_rows(database: db.Database, count: int) -> None:
    """Rows final long ago, redacted and pseudonymised already; then fresh statistics."""
    at = rs.NOW - dt.timedelta(days=200)
    rows = [
        {
            "id": models.new_id(), "client": "app", "sender_name": "KIMISMS", "contact": "",
            "body": None, "segments": 1, "encoding": "gsm7", "priority": 1,
            "status": "delivered", "rank": 3, "next_attempt_at": at, "created_at": at,
            "updated_at": at, "final_at": at, "redacted_at": at, "pseudonymised_at": at,
        }
        for _ in range(count)
    ]  # fmt: skip
    async with database.write() as session:
        await session.execute(insert(models.Message), rows)
        await session.execute(text("ANALYZE"))


async def _plan(database: db.Database, rule: Rule) -> str:
    """The database's plan for the rule's pick, as text."""
    query = retention_batches.due_query(rule, "app", rs.NOW, 1000, sqlite=database.is_sqlite)
    async with database.read() as session:
        connection = await session.connection()
        compiled = query.compile(dialect=connection.dialect)
        values = compiled.construct_params()
        names = compiled.positiontup or []
        params = tuple(_value(values[name], database.is_sqlite) for name in names)
        if database.is_sqlite:
            explain = "EXPLAIN QUERY PLAN "
        else:  # a table of a few rows is read whole if allowed: show what it would use
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN "
        rows = await connection.exec_driver_sql(explain + compiled.string, params)
        return "\n".join(str(row) for row in rows)


@pytest.mark.parametrize("rule", list(Rule))
async def test_each_rule_reads_its_partial_index(database: db.Database, rule: Rule) -> None:
    """Most old rows done already (as after a first run): the plan names the rule's index
    on (client, final_at), so the done rows are never read again."""
    await rs.add(database, final_days_ago=10)
    await _done_rows(database, 3000)
    plan = await _plan(database, rule)
    assert INDEXES[rule] in plan, plan

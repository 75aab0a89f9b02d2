"""The ``to`` filter over pseudonymised messages stays on indexes on both databases (#17)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from tests import factories
from tracker import clock, db
from tracker.ops import numbers, queries

NUMBER = "254712345678"
PSEUDONYM = "ab" * 32
ROWS = 20_000  # enough that PostgreSQL's planner prefers indexes to a scan

POSTGRESQL_ROWS = text(
    "INSERT INTO messages (id, client, sender_name, contact, segments, encoding, priority,"
    " status, rank, attempts, created_at, updated_at, contact_pseudonym)"
    " SELECT gen_random_uuid(), 'app', 'KIMISMS',"
    " CASE WHEN g % 3 = 0 THEN '' ELSE '2547' || lpad(g::text, 8, '0') END,"
    " 1, 'gsm7', 1, 'delivered', 5, 1, now() - g * interval '1 second', now(),"
    " CASE WHEN g % 3 = 0 THEN md5(g::text) || md5(g::text) END"
    " FROM generate_series(1, :rows) g"
)


async def _plan(database: db.Database, wanted: queries.MessageFilter) -> str:
    """The database's own plan of the list query for ``wanted``."""
    conditions = queries._conditions(wanted, clock.utcnow() - dt.timedelta(hours=1))
    query = numbers.newest_first(
        queries.LISTED_COLUMNS, conditions, wanted.contact, wanted.contact_pseudonym, 51
    )
    async with database.read() as session:
        connection = await session.connection()
        compiled = query.compile(dialect=connection.dialect)
        values = tuple(compiled.params[name] for name in compiled.positiontup or ())
        explain = "EXPLAIN QUERY PLAN" if database.is_sqlite else "EXPLAIN"
        rows: Any = await connection.exec_driver_sql(f"{explain} {compiled}", values)
        column = 3 if database.is_sqlite else 0  # SQLite: (id, parent, notused, detail)
        return "\n".join(str(row[column]) for row in rows)


async def test_a_clients_list_by_number_uses_the_contact_and_pseudonym_indexes(
    database: db.Database,
) -> None:
    """Filtered by client and number: one index per half, never a scan, never the
    client's whole index (what one OR made SQLite do)."""
    await factories.add_message(database, contact=NUMBER)
    if not database.is_sqlite:
        async with database.write() as session:
            await session.execute(POSTGRESQL_ROWS, {"rows": ROWS})
            await session.execute(text("ANALYZE messages"))
    wanted = queries.MessageFilter(contact=NUMBER, contact_pseudonym=PSEUDONYM, client="app")
    plan = await _plan(database, wanted)
    assert "ix_messages_contact_created" in plan, plan
    assert "ix_messages_contact_pseudonym" in plan, plan
    assert "ix_messages_client_created" not in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "SCAN messages" not in plan, plan

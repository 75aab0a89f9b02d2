"""Old, final messages in bulk for bench.retention: each with an event and a receipt that
name its number, as a callback leaves them.

One INSERT ... SELECT per table in the database itself (a recursive CTE on SQLite,
generate_series on PostgreSQL), with the secondary indexes and triggers set aside
while it runs and put back after (one sort per index beats a check per row).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import asyncpg

CLIENT = "archive"  # the old messages' client (written out in the SQL); its overrides
# switch retention on
TABLES = ("messages", "message_events", "callback_receipts")

SQLITE_MESSAGES = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
INSERT INTO messages (id, client, sender_name, contact, network, body, segments, encoding,
    priority, status, rank, provider_message_id, attempts, next_attempt_at, created_at,
    updated_at, submitted_at, accepted_at, final_at)
SELECT lower(hex(randomblob(16))), 'archive', 'KIMISMS', '2547' || printf('%08d', i),
    'Safaricom', 'Your code is ' || printf('%06d', i % 1000000), 1, 'gsm7', 1, 'delivered',
    4, 'p-old-' || i, 1, t, t, t, t, t, t
FROM (SELECT i, strftime('%Y-%m-%d %H:%M:%S', 'now', '-100 days', '+' || (i % 864000)
        || ' seconds') || '.000000' AS t FROM n)
"""
SQLITE_EVENTS = """
INSERT INTO message_events (message_id, from_status, to_status, source, detail, payload,
    created_at)
SELECT id, 'pending', 'delivered', 'callback', 'provider reported Delivered',
    json_object('contact', contact, 'status', 'Delivered'), final_at
FROM messages WHERE client = 'archive'
"""
SQLITE_RECEIPTS = """
INSERT INTO callback_receipts (message_id, dedupe_key, body, remote_addr, outcome,
    received_at, applied_at)
SELECT id, id, '{"messageId": "' || provider_message_id || '", "contact": "' || contact
    || '", "status": "Delivered"}', '127.0.0.1', 'applied', final_at, final_at
FROM messages WHERE client = 'archive'
"""
POSTGRES_MESSAGES = """
INSERT INTO messages (id, client, sender_name, contact, network, body, segments, encoding,
    priority, status, rank, provider_message_id, attempts, next_attempt_at, created_at,
    updated_at, submitted_at, accepted_at, final_at)
SELECT gen_random_uuid(), 'archive', 'KIMISMS', '2547' || lpad(i::text, 8, '0'),
    'Safaricom', 'Your code is ' || lpad((i % 1000000)::text, 6, '0'), 1, 'gsm7', 1,
    'delivered', 4, 'p-old-' || i, 1, t, t, t, t, t, t
FROM (SELECT i, now() - interval '100 days' + (i % 864000) * interval '1 second' AS t
      FROM generate_series(0, $1::int - 1) AS i) AS g
"""
POSTGRES_EVENTS = SQLITE_EVENTS.replace("json_object(", "json_build_object(")
POSTGRES_RECEIPTS = SQLITE_RECEIPTS.replace("id, id,", "id, replace(id::text, '-', ''),")


def seed_sqlite(path: Path, count: int) -> float:
    """``count`` old messages with their history; seconds taken."""
    started = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("INSERT OR IGNORE INTO clients (name, weight, created_at, updated_at) "
                           "VALUES ('archive', 1, '2026-01-01 00:00:00.000000', "
                           "'2026-01-01 00:00:00.000000')")  # fmt: skip
        aside = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql "
            "IS NOT NULL AND tbl_name IN ('messages', 'message_events', 'callback_receipts')"
        ).fetchall()
        connection.execute("BEGIN")
        for name, sql in aside:
            kind = "TRIGGER" if sql.upper().startswith("CREATE TRIGGER") else "INDEX"
            connection.execute(f'DROP {kind} "{name}"')
        connection.execute(SQLITE_MESSAGES, {"count": count})
        connection.execute(SQLITE_EVENTS)
        connection.execute(SQLITE_RECEIPTS)
        for _name, sql in aside:
            connection.execute(sql)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    return time.perf_counter() - started


SECONDARY = """
SELECT indexname AS name, indexdef AS definition FROM pg_indexes
WHERE tablename IN ('messages', 'message_events', 'callback_receipts') AND indexname LIKE 'ix_%'
"""


async def seed_postgres(url: str, count: int) -> float:
    """``count`` old messages with their history; seconds taken."""
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET synchronous_commit = off")
        await connection.execute("SET maintenance_work_mem = '512MB'")
        await connection.execute(
            "INSERT INTO clients (name, weight, created_at, updated_at) "
            "VALUES ('archive', 1, now(), now()) ON CONFLICT DO NOTHING"
        )
        indexes = await connection.fetch(SECONDARY)
        for table in TABLES:
            await connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["name"]}"')
        await connection.execute(POSTGRES_MESSAGES, count)
        await connection.execute(POSTGRES_EVENTS)
        await connection.execute(POSTGRES_RECEIPTS)
        for index in indexes:
            await connection.execute(index["definition"])
        for table in TABLES:
            await connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started

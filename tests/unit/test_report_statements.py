"""The receipt statements (issue 13, item 1): named parameters only, on both databases."""

from __future__ import annotations

import re

import pytest

from tracker import db
from tracker.reports import statements

# A positional placeholder outside string literals: sqlite3's ? / ?1, asyncpg's $1.
POSITIONAL = re.compile(r"'(?:[^']|'')*'|(\?\d*|\$\d+)")
SQLITE = [statements._SQLite.READS, statements._SQLite.NOTE, statements._SQLite.MOVE]
SQLITE += [statements._SQLite.RECEIPTS, statements._SQLite.EVENTS]
POSTGRESQL = [statements._PostgreSQL.SNAPSHOTS, statements._PostgreSQL.KNOWN]
POSTGRESQL += [statements._PostgreSQL.WRITE, statements.POSTGRESQL_TIMEOUTS]


@pytest.mark.parametrize("sql", SQLITE)
def test_the_sqlite_statements_use_named_parameters(sql: str) -> None:
    """Item 1: no `?` or `?n` in the SQLite statements, only `:name`."""
    assert not [m.group(1) for m in POSITIONAL.finditer(sql) if m.group(1)]
    assert re.search(r":[a-z_]+", sql)


@pytest.mark.parametrize("statement", POSTGRESQL)
def test_the_postgresql_statements_are_compiled_from_names(statement: db.Named) -> None:
    """Item 1: the PostgreSQL statements are db.Named, so their `$n` come from names."""
    assert isinstance(statement, db.Named)
    assert statement.names


def test_the_write_takes_every_column_of_the_plan_by_name() -> None:
    """Item 1: WRITE's parameters are the plan's row fields, prefixed: a new field is one name."""
    names = set(statements._PostgreSQL.WRITE.names)
    assert {"now", "not_final_rank", "move_rank", "receipt_dedupe_key", "event_payload"} <= names
    assert len(names) == 24

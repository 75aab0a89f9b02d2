"""Parsing callback bodies and judging apply failures (pure code, no database)."""

from __future__ import annotations

import json
import sqlite3

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from tracker import db
from tracker.reports import reading


class FakeDriverError(Exception):
    """Stands for a driver error carrying a SQLSTATE, as asyncpg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def dbapi_error(sqlstate: str) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("UPDATE ...", {}, FakeDriverError(sqlstate))


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "Delivered", "description": "a\\u0000b"}',
        '{"status": "Deliv\\u0000ered"}',
        '{"status": "Delivered", "\\u0000": 1}',
        '{"status": "Delivered", "extra": [[{"x": "\\u0000"}]]}',
        '{"status": "Delivered", "description": "\\ud800"}',
        '{"status": "Delivered", "description": "\\uDFFF"}',
        '{"status": "Delivered"}\x00',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_a_body_holding_unstorable_text_is_not_a_report(body: str) -> None:
    """NUL, lone surrogates and runaway nesting make a body malformed."""
    assert reading.parse_report(body) is None


@pytest.mark.parametrize(
    "description",
    ["Message delivered", "Ujumbe umefika \u2713", "emoji \U0001f600", "a\\u0000b as text"],
)
def test_escapes_of_storable_text_still_parse(description: str) -> None:
    """Non-ASCII text (and a surrogate pair) escaped by the sender is a normal report."""
    body = json.dumps({"status": "Delivered", "description": description})
    parsed = reading.parse_report(body)
    assert parsed is not None
    assert parsed.description == description


def test_storable_text_escapes_nul_and_leaves_the_rest() -> None:
    """NUL is written as JSON writes it; other text is returned unchanged."""
    assert reading.storable_text('{"a": 1}\x00\x00') == '{"a": 1}\\u0000\\u0000'
    plain = '{"status": "Delivered"}'
    assert reading.storable_text(plain) is plain


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        sa_exc.OperationalError("BEGIN", {}, Exception("database is locked")),
        sa_exc.InterfaceError("SELECT", {}, Exception("connection is closed")),
        dbapi_error("57014"),  # statement timeout
        dbapi_error("55P03"),  # lock not available
        dbapi_error("08006"),  # connection failure
        dbapi_error("40P01"),  # deadlock
        dbapi_error("42P01"),  # undefined table: an unmigrated schema
    ],
)
def test_failures_of_the_database_are_systemic(error: BaseException) -> None:
    """These say nothing about the receipt: the replay waits and tries again."""
    assert db.is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        dbapi_error("22021"),  # NUL in text
        dbapi_error("22001"),  # value too long
        sa_exc.IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed")),
        sa_exc.StatementError("bind failed", "INSERT", {}, ValueError("naive datetime")),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        KeyError("status"),
    ],
)
def test_failures_caused_by_the_data_are_not_systemic(error: BaseException) -> None:
    """These fail the same way every time: the receipt alone is to blame."""
    assert not db.is_unavailable(error)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_body_with_a_non_json_number_is_not_a_report(constant: str) -> None:
    """Python's json reads NaN and Infinity; the provider's JSON cannot hold them."""
    assert reading.parse_report(f'{{"status": "Delivered", "price": {constant}}}') is None
    assert reading.parse_report('{"status": "Delivered", "price": 1.5}') is not None


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.IntegrityError("UNIQUE constraint failed: messages.provider_message_id"),
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.CheckViolationError("check"),
        sa_exc.IntegrityError("UPDATE", {}, Exception("constraint")),
        dbapi_error("23505"),
    ],
)
def test_item_4_a_constraint_violation_is_an_integrity_failure_not_an_outage(
    error: BaseException,
) -> None:
    """Item 4: a broken constraint blames the batch's data, never the database."""
    assert db.is_integrity_error(error)
    assert not db.is_unavailable(error)


@pytest.mark.parametrize(
    "error", [dbapi_error("57014"), dbapi_error("22021"), ConnectionRefusedError()]
)
def test_other_failures_are_not_integrity_failures(error: BaseException) -> None:
    """Timeouts, unstorable text and refused connections are not constraint violations."""
    assert not db.is_integrity_error(error)

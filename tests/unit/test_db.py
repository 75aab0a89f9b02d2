"""db.Named (issue 13, item 1): `:name` statements compiled once for asyncpg's `$n`."""

from __future__ import annotations

import pytest

from tracker import db


def test_named_parameters_become_numbered_in_order_of_first_use() -> None:
    """Item 1: each name is one `$n`, numbered as it first appears; a repeated name reuses it."""
    statement = db.Named("UPDATE t SET a = :now, b = :rank WHERE c <= :rank AND d = :now")
    assert statement.sql == "UPDATE t SET a = $1, b = $2 WHERE c <= $2 AND d = $1"
    assert statement.names == ("now", "rank")
    assert statement.arguments({"rank": 3, "now": "t0"}) == ["t0", 3]


def test_casts_literals_quoted_names_and_comments_are_kept() -> None:
    """Item 1: `::uuid[]` stays a cast; text in quotes and comments is not a parameter."""
    sql = (
        "SELECT :ids::uuid[], x::text, 'callback', '$[0]', 'it''s :not', \"a:b\"\n"
        "  -- a comment's :word\n"
        "FROM t WHERE y = :y"
    )
    statement = db.Named(sql)
    assert statement.names == ("ids", "y")
    assert statement.sql == (
        "SELECT $1::uuid[], x::text, 'callback', '$[0]', 'it''s :not', \"a:b\"\n"
        "  -- a comment's :word\n"
        "FROM t WHERE y = $2"
    )


def test_a_missing_or_unknown_name_raises() -> None:
    """Item 1: the values must name every parameter and no other, so a typo cannot pass."""
    statement = db.Named("SELECT :a, :b")
    with pytest.raises(KeyError, match=r"missing: \['b'\]"):
        statement.arguments({"a": 1})
    with pytest.raises(KeyError, match=r"not in the statement: \['c'\]"):
        statement.arguments({"a": 1, "b": 2, "c": 3})


def test_a_positional_parameter_is_refused() -> None:
    """Item 1: a `$n` written by hand would silently shift the numbering, so it is refused."""
    with pytest.raises(ValueError, match=r"\$1"):
        db.Named("SELECT :a, $1")

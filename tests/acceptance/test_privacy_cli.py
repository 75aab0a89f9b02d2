"""`tracker privacy erase`, run as an operator runs it, against both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_clients_cli import ok, refused, row_of
from tracker import db
from tracker.privacy import audit

NUMBER = "254712345678"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The test's database (a migrated template's copy), JSON logs."""
    return {
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_LOG_FORMAT": "json",
        "COLUMNS": "80",
    }


async def test_erase_prints_the_counts_plainly_and_records_the_cli(
    env: dict[str, str], database: db.Database
) -> None:
    """The counts per table, plain in a pipe within 80 columns; the rows are erased; the
    audit event's actor is ``cli``."""
    first = await factories.add_message(database, contact=NUMBER)
    await factories.add_message(database, contact=NUMBER, client="billing")
    other = await factories.add_message(database, contact="254722000111")
    printed = ok("privacy", "erase", "--to", "0712 345 678", env=env)
    assert row_of(printed, "messages found") == ["messages found", "2"]
    assert row_of(printed, "messages redacted") == ["messages redacted", "2"]
    assert row_of(printed, "messages pseudonymised") == ["messages pseudonymised", "2"]
    assert row_of(printed, "idempotency keys") == ["idempotency keys", "0"]
    assert "│" not in printed
    assert max(len(line) for line in printed.splitlines()) <= 80
    erased = await factories.fetch_message(database, first)
    assert (erased.contact, erased.body) == ("", None)
    assert (await factories.fetch_message(database, other)).contact == "254722000111"
    async with database.read() as session:
        (event,) = await audit.recent(session)
    assert (event["action"], event["actor"]) == ("erasure", "cli")
    assert event["detail"]["messages_found"] == 2


def test_a_bad_number_is_one_line_naming_the_option(env: dict[str, str]) -> None:
    """Not a Kenyan mobile number: exit 2, one line naming --to; --help says what it does."""
    assert refused("privacy", "erase", "--to", "12", env=env).startswith("error: --to: ")
    helped = ok("privacy", "erase", "--help", env=env)
    assert "Erase a number on request" in helped
    assert "audit event" in helped

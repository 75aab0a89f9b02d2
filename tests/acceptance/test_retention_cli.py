"""`tracker retention run` and the retention options of `tracker clients`, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_clients_cli import ok, refused, row_of
from tests.integration import retention_support as rs
from tracker import db


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """A migrated database of the test's backend; a pipe, as narrow as 80 columns."""
    return {
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_LOG_FORMAT": "json",
        "COLUMNS": "80",
    }


def counts(output: str) -> dict[tuple[str, str], int]:
    """The table's rows: (rule, table) -> count."""
    found = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) == 3 and cells[2].isdigit():
            found[(cells[0], cells[1])] = int(cells[2])
    return found


async def test_a_dry_run_then_a_run_print_their_counts(
    env: dict[str, str], database: db.Database
) -> None:
    """Dry: what is due, nothing changed; then the run's counts per table; 80 columns, plain."""
    message_id = await rs.add(database, final_days_ago=100)
    dry = ok("retention", "run", "--dry-run", env=env)
    assert "retention (dry run)" in dry
    assert counts(dry)[("body", "messages")] == 1
    assert counts(dry)[("contact", "messages")] == 1
    unchanged = await rs.message(database, message_id)
    assert unchanged is not None
    assert unchanged.body == rs.BODY
    done = ok("retention", "run", env=env)
    assert counts(done)[("body", "messages")] == 1
    assert counts(done)[("contact", "receipts")] == 1
    assert counts(done)[("message", "messages")] == 0
    printed = [line for line in done.splitlines() if not line.startswith("{")]  # not the log
    assert all(len(line) <= 80 for line in printed)
    assert "─" not in done  # plain in a pipe: no box drawing
    again = ok("retention", "run", env=env)
    assert set(counts(again).values()) == {0}


def test_clients_take_show_and_list_their_overrides(env: dict[str, str]) -> None:
    """--retention-* set overrides (none: the setting, marked *); a bad one names its option."""
    ok("clients", "create", "billing", "--retention-body", "72h", "--retention-message", "keep",
       env=env)  # fmt: skip
    shown = ok("clients", "show", "billing", env=env)
    assert "keep body        3d" in shown
    assert "keep number      90d*" in shown
    listed = ok("clients", "list", env={**env, "COLUMNS": "200"})
    assert "3d/90d*/keep" in row_of(listed, "billing")
    ok("clients", "update", "billing", "--retention-body", "none", env=env)
    assert "keep body        7d*" in ok("clients", "show", "billing", env=env)
    line = refused("clients", "update", "billing", "--retention-contact", "7x", env=env)
    assert "--retention-contact" in line


def test_retention_run_has_help() -> None:
    """--help names the settings it applies and the dry run."""
    from tests.processes import run_tracker

    result = run_tracker("retention", "run", "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0
    assert "--dry-run" in result.stdout
    assert "TRACKER_RETENTION_BODY" in result.stdout

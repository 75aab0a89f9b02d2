"""`tracker clients ...` and `tracker keys ... --client`, run as a user runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.processes import run_tracker

SENDERS = "KIMISMS,ACME,ALERTS"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """A migrated database of the test's backend (a template's copy) and three senders."""
    return {
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_SENDER_NAMES": SENDERS,
        "COLUMNS": "200",  # rich tables unwrapped, so a row is one line
    }


def ok(*args: str, env: dict[str, str]) -> str:
    """Run a command that must succeed; its stdout."""
    result = run_tracker(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(*args: str, env: dict[str, str]) -> str:
    """Run a command that must fail as a caller's mistake: exit 2, one line, no traceback."""
    result = run_tracker(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def rows(table: str) -> list[list[str]]:
    """The cells of each body row: of a rich table, or of plain text (tables in a pipe)."""
    lines = table.splitlines()
    if not any(line.strip().startswith("│") for line in lines):  # plain: header, then rows
        return [re.split(r" {2,}", line.strip()) for line in lines[1:] if line.strip()]
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in lines
        if line.strip().startswith("│")
    ]


def names_in(table: str) -> list[str]:
    return [cells[0] for cells in rows(table)]


def row_of(table: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is ``name``."""
    for cells in rows(table):
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{table}")


def test_create_list_show_and_update_a_client(env: dict[str, str]) -> None:
    """The settings given at create show in list and show; update changes them, none clears."""
    created = ok(
        "clients", "create", "billing", "--senders", "ACME,ALERTS", "--default-sender",
        "ALERTS", "--rate-per-minute", "30", "--daily-cap", "5000", "--weight", "3", env=env,
    )  # fmt: skip
    assert created.strip() == "created client billing: weight 3; rate/min 30, daily cap 5000"
    ok("clients", "create", "shop", env=env)
    listed = ok("clients", "list", env=env)
    kept = "7d*/90d*/keep*"  # the settings' retention periods (no overrides)
    assert row_of(listed, "billing") == [
        "billing", "3", "30", "5000", "-", "ALERTS*,ACME", kept, "0"
    ]  # fmt: skip
    assert row_of(listed, "shop") == [
        "shop", "1", "-", "-", "-", "KIMISMS*,ACME,ALERTS (all)", kept, "0"
    ]  # fmt: skip

    updated = ok(
        "clients", "update", "billing", "--rate-per-minute", "none", "--high-per-minute", "5",
        env=env,
    )  # fmt: skip
    assert updated.strip() == "updated client billing: weight 3; daily cap 5000, high/min 5"
    shown = ok("clients", "show", "billing", env=env)
    assert "senders          ALERTS*,ACME" in shown
    assert "rate per minute  -" in shown
    assert "high per minute  5" in shown
    assert "messages: none" in shown


BAD_OPTIONS = [  # every rule's wording: tests/unit/test_client_settings.py
    (("--senders", "ACME,NOPE"), "--senders: 'NOPE' not in TRACKER_SENDER_NAMES"),
    (("--senders", "ACME", "--default-sender", "KIMISMS"), "--default-sender: 'KIMISMS'"),
    (("--daily-cap", "lots"), "--daily-cap: must be a whole number, or 'none' to remove it"),
]


def test_a_bad_option_is_one_line_naming_it(env: dict[str, str]) -> None:
    """Rules of clients.schemas, worded for the option, exit 2; nothing is created."""
    for args, line in BAD_OPTIONS:
        assert refused("clients", "create", "billing", *args, env=env).startswith(f"error: {line}")
    assert "billing" not in names_in(ok("clients", "list", env=env))


def test_mistakes_about_names_are_one_line(env: dict[str, str]) -> None:
    """A taken name, an unknown client, an update with nothing to change: exit 2, one line."""
    ok("clients", "create", "billing", env=env)
    assert refused("clients", "create", "billing", env=env) == (
        "error: a client named 'billing' already exists"
    )
    assert refused("clients", "show", "nobody", env=env) == "error: no client named 'nobody'"
    assert refused("clients", "update", "nobody", "--weight", "2", env=env) == (
        "error: no client named 'nobody'"
    )
    assert refused("clients", "update", "billing", env=env).startswith("error: nothing to change")
    assert refused("clients", "create", "bad name", env=env).startswith("error: NAME: ")


def test_keys_of_a_client_rotate_with_the_cli(env: dict[str, str]) -> None:
    """keys create --client, keys list with the client, revoke the old key, reuse its name."""
    ok("clients", "create", "billing", env=env)
    old = ok("keys", "create", "--name", "billing-2025", "--client", "billing", env=env)
    new = ok("keys", "create", "--name", "billing-2026", "--client", "billing", env=env)
    assert old.strip().splitlines()[-1] != new.strip().splitlines()[-1]
    assert refused("keys", "create", "--name", "billing-2026", "--client", "billing", env=env) == (
        "error: an active key named 'billing-2026' already exists"
    )
    assert ok("keys", "revoke", "billing-2025", env=env).strip() == "revoked billing-2025"
    listed = ok("keys", "list", env=env)
    assert row_of(listed, "billing-2026")[1:2] == ["billing"]
    assert row_of(listed, "billing-2025")[-1] == "revoked"
    assert row_of(ok("clients", "list", env=env), "billing")[-1] == "1"
    ok("keys", "create", "--name", "billing-2025", "--client", "billing", env=env)
    shown = ok("clients", "show", "billing", env=env)
    assert shown.count("billing-2025") == 2
    assert row_of(ok("clients", "list", env=env), "billing")[-1] == "2"


def test_a_key_without_client_makes_its_own_and_an_unknown_client_is_refused(
    env: dict[str, str],
) -> None:
    """Without --client the key's name is its client (created); --client nobody: exit 2."""
    ok("keys", "create", "--name", "shop", "--scopes", "send", env=env)
    assert row_of(ok("clients", "list", env=env), "shop")[-1] == "1"
    assert refused("keys", "create", "--name", "x", "--client", "nobody", env=env) == (
        "error: no client named 'nobody': create it first"
    )
    assert names_in(ok("keys", "list", env=env)) == ["shop"]


def test_the_commands_are_listed_in_help() -> None:
    """`tracker --help` names clients, `clients --help` its commands, and `update --help`
    says how to clear a limit."""
    assert "clients" in run_tracker("--help", env={}).stdout
    listed = run_tracker("clients", "--help", env={}).stdout
    for command in ("create", "list", "show", "update"):
        assert command in listed
    update_help = run_tracker("clients", "update", "--help", env={"COLUMNS": "200"}).stdout
    assert "'none' removes the limit" in " ".join(update_help.split())  # however it wraps

"""The `tracker` command, run as a user runs it: a subprocess with TRACKER_* set."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, run_tracker, started
from tracker import __version__


@pytest.fixture
def env(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for a fresh, empty database of the test's backend."""
    values = {"TRACKER_DATA_DIR": str(tmp_path / "data"), "TRACKER_LOG_FORMAT": "json"}
    if backend == "postgresql":
        values["TRACKER_DATABASE_URL"] = request.getfixturevalue("empty_postgres_database")
    return values


@pytest.fixture
def empty_postgres_database(postgres_template: str) -> object:
    import uuid

    from tests.conftest import blocking_admin, postgres_url

    name = f"tracker_cli_{uuid.uuid4().hex[:10]}"
    blocking_admin(f'CREATE DATABASE "{name}"')
    yield postgres_url(name)
    blocking_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_version_and_help() -> None:
    """--version prints the version; --help lists the commands."""
    assert run_tracker("--version", env={}).stdout.strip() == f"tracker {__version__}"
    help_text = run_tracker("--help", env={}).stdout
    for command in ("serve", "db", "keys"):
        assert command in help_text


def test_db_upgrade_then_keys_lifecycle(env: dict[str, str]) -> None:
    """On an empty database: upgrade, create a key (last stdout line), list, revoke."""
    upgraded = run_tracker("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_tracker("db", "upgrade", env=env).returncode == 0  # idempotent

    created = run_tracker("keys", "create", "--name", "billing", "--scopes", "send,read", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("kt_")

    listed = run_tracker("keys", "list", env=env).stdout
    assert "billing" in listed
    assert key not in listed

    assert run_tracker("keys", "revoke", "billing", env=env).returncode == 0
    again = run_tracker("keys", "revoke", "billing", env=env)
    assert again.returncode == 2
    assert again.stderr.strip() == "error: no active key named 'billing'"


def test_mistakes_are_one_line_not_a_traceback(env: dict[str, str]) -> None:
    """A bad setting or argument prints one clear line and exits 2."""
    result = run_tracker("keys", "list", env={**env, "TRACKER_RATE_LIMIT_PER_MINUTE": "x"})
    assert result.returncode == 2
    assert "TRACKER_RATE_LIMIT_PER_MINUTE" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    bad_scope = run_tracker("keys", "create", "--name", "a", "--scopes", "root", env=env)
    assert bad_scope.returncode == 2
    assert "unknown scope 'root'" in bad_scope.stderr


@pytest.mark.parametrize("command", [("serve",), ("worker",)])
def test_sending_without_provider_credentials_is_refused_at_start(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    """No KIMISMS client id or secret: one line naming both, not a failure at the first send."""
    result = run_tracker(*command, env=env)
    assert result.returncode == 2
    assert "TRACKER_KIMISMS_CLIENT_ID and TRACKER_KIMISMS_CLIENT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unmigrated_database_is_one_line_naming_the_fix(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`keys list` on an empty database says to run `tracker db upgrade`, no traceback."""
    empty = {**env, "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = run_tracker("keys", "list", env=empty)
    assert result.returncode == 2
    assert "tracker db upgrade" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_answers_readyz_with_a_key_working_end_to_end(env: dict[str, str]) -> None:
    """`tracker serve` on a migrated database is ready and honours API keys."""
    assert run_tracker("db", "upgrade", env=env).returncode == 0
    key = run_tracker("keys", "create", "--name", "ops", "--scopes", "read", env=env)
    token = key.stdout.strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    credentials = {"TRACKER_KIMISMS_CLIENT_ID": "id", "TRACKER_KIMISMS_CLIENT_SECRET": "s3cret"}
    with started(
        "serve", "--port", str(port), env={**env, **credentials}, ready_url=f"{base}/healthz"
    ) as server:
        assert httpx.get(f"{base}/readyz").status_code == 200
        whoami = httpx.get(f"{base}/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert whoami.json()["client"] == "ops"
    output = server.output()
    assert '"event": "http_request"' in output
    assert token not in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("send", "--to", "0712345678"), "error: Missing option '--message'."),
        (
            ("send", "--message", "x", "--priority", "urgent"),
            "error: Invalid value for '--priority'",
        ),
        (("nope",), "error: No such command 'nope'."),
    ],
)
def test_usage_mistakes_are_one_line_naming_the_help(args: tuple[str, ...], expected: str) -> None:
    """typer's boxed error becomes one line on stderr with the command's --help, exit 2."""
    result = run_tracker(*args, env={"COLUMNS": "80"})
    assert result.returncode == 2
    assert result.stderr.startswith(expected)
    assert result.stderr.rstrip().endswith("--help`)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_is_plain_and_fits_80_columns() -> None:
    """No boxes and no `<bool>` placeholders; every line fits a narrow terminal."""
    for args in (("send", "--help"), ("messages", "list", "--help"), ("serve", "--help")):
        text = run_tracker(*args, env={"COLUMNS": "80"}).stdout
        assert "<bool>" not in text
        assert "╭" not in text
        assert "--json" in text or "--port" in text
        assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("option", ["--port", "--sandbox-port"])
def test_a_busy_port_is_one_line_naming_it(env: dict[str, str], option: str) -> None:
    """`serve` on a taken port says which port and which option, before migrating anything."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = str(taken.getsockname()[1])
        ports = {"--port": str(free_port()), "--sandbox-port": str(free_port()), option: busy}
        args = [item for pair in ports.items() for item in pair]
        result = run_tracker("serve", "--sandbox", *args, env=env)
    assert result.returncode == 2
    expected = (
        f"error: port {busy} on 127.0.0.1 is already in use (another tracker serve?): "
        f"stop it or choose another with {option}"
    )
    assert result.stderr.splitlines() == [expected]  # one line: the first line went to stdout
    assert "Errno" not in result.stderr


def test_serves_first_line_says_where_the_database_is(env: dict[str, str], backend: str) -> None:
    """The SQLite file as an absolute path, or the PostgreSQL URL without a password."""
    assert run_tracker("db", "upgrade", env=env).returncode == 0
    port = free_port()
    with started(
        "serve", "--no-dispatcher", "--port", str(port), env=env,
        ready_url=f"http://127.0.0.1:{port}/healthz",
    ) as server:  # fmt: skip
        first = server.output().splitlines()[0]
    assert first.startswith(f"tracker {__version__} on 127.0.0.1:{port}, database ")
    if backend == "sqlite":
        assert first.endswith(f"database {env['TRACKER_DATA_DIR']}/tracker.db")
    else:
        assert first.endswith(env["TRACKER_DATABASE_URL"].split("@", 1)[1])
        assert first.split("database ", 1)[1].startswith("postgresql://")

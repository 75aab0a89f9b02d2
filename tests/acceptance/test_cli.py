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

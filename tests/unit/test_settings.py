"""Settings are validated once, name the bad variable, and never echo secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SettingsFactory
from tracker import errors
from tracker.settings import Settings, async_database_url, parse_callback_keys


def test_defaults_are_usable_on_a_fresh_machine(make_settings: SettingsFactory) -> None:
    """With nothing set, the service runs on SQLite with the documented defaults."""
    settings = make_settings()
    assert settings.is_sqlite
    assert settings.rate_limit_per_minute == 60
    assert settings.default_sender == "KIMISMS"
    assert settings.kimisms_base_url == "https://app.kimisms.com"


def test_a_bad_value_names_its_variable(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unparsable number fails with the variable's full name."""
    monkeypatch.setenv("TRACKER_RATE_LIMIT_PER_MINUTE", "sixty")
    with pytest.raises(errors.ConfigurationError, match="TRACKER_RATE_LIMIT_PER_MINUTE"):
        make_settings()


@pytest.mark.parametrize("variable", ["TRACKER_KIMISMS_BASE_URL", "TRACKER_PUBLIC_URL"])
def test_plain_http_is_refused_off_loopback(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """Provider and callback URLs must be https unless they point at loopback."""
    monkeypatch.setenv("TRACKER_CALLBACK_SECRETS", "k1:" + "s" * 32)
    monkeypatch.setenv(variable, "http://sms.example.com")
    with pytest.raises(errors.ConfigurationError, match=f"{variable}: .*https"):
        make_settings()
    monkeypatch.setenv(variable, "http://127.0.0.1:8090")
    make_settings()


def test_a_public_url_requires_callback_secrets(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off loopback, callback URLs must be signed with a configured, lasting key."""
    monkeypatch.setenv("TRACKER_PUBLIC_URL", "https://sms.example.com")
    with pytest.raises(errors.ConfigurationError, match="TRACKER_CALLBACK_SECRETS is required"):
        make_settings()


def test_secrets_are_read_from_files_and_never_shown(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """*_FILE variables supply secrets, which repr() and errors never reveal."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("top-secret-value\n")
    monkeypatch.setenv("TRACKER_KIMISMS_CLIENT_SECRET_FILE", str(secret_file))
    settings = make_settings()
    assert settings.kimisms_client_secret.get_secret_value() == "top-secret-value"
    assert "top-secret-value" not in repr(settings)

    monkeypatch.setenv("TRACKER_CALLBACK_SECRETS", "k1:short-secret")
    with pytest.raises(errors.ConfigurationError) as caught:
        make_settings()
    assert "short-secret" not in str(caught.value)


def test_an_unreadable_secret_file_is_a_clear_error(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing *_FILE path is reported, not a traceback."""
    monkeypatch.setenv("TRACKER_KIMISMS_CLIENT_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(errors.ConfigurationError, match="CLIENT_SECRET_FILE"):
        make_settings()


def test_callback_keys_take_ids_or_derive_them() -> None:
    """`id:secret` keeps its id; a bare secret gets a stable derived id."""
    keys = parse_callback_keys("new:" + "a" * 20 + ", " + "b" * 20)
    assert keys[0].key_id == "new"
    assert keys[1].key_id == parse_callback_keys("b" * 20)[0].key_id
    with pytest.raises(ValueError, match="unique"):
        parse_callback_keys("x:" + "a" * 20 + ",x:" + "b" * 20)


def test_sender_names_are_a_comma_separated_allow_list(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first sender name is the default."""
    monkeypatch.setenv("TRACKER_SENDER_NAMES", "ACME, ACME-OTP")
    settings = make_settings()
    assert settings.sender_names == ("ACME", "ACME-OTP")
    assert settings.default_sender == "ACME"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_plain_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    """Operators write ordinary URLs; the tracker picks the async driver."""
    assert async_database_url(given) == expected


def test_an_unsupported_database_is_refused() -> None:
    """Only SQLite and PostgreSQL are supported."""
    with pytest.raises(errors.ConfigurationError, match="TRACKER_DATABASE_URL"):
        Settings.load(database_url="mysql://x/y")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_sqlite_database_without_a_file_is_refused(url: str) -> None:
    """In memory, each connection (the callback writer's too) would see its own database."""
    with pytest.raises(errors.ConfigurationError, match="needs a file"):
        Settings.load(database_url=url)


@pytest.mark.parametrize("names", ["AVERYLONGSENDERNAME", "ACME,<script>"])
def test_a_sender_name_that_is_no_sender_id_is_refused(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, names: str
) -> None:
    """Longer than 11 characters or odd characters: refused at start, naming the variable."""
    monkeypatch.setenv("TRACKER_SENDER_NAMES", names)
    with pytest.raises(errors.ConfigurationError, match="TRACKER_SENDER_NAMES"):
        make_settings()


def test_a_lease_shorter_than_a_send_is_refused(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease must outlast a send and its retry after a token refresh (2 x 20 s here)."""
    monkeypatch.setenv("TRACKER_LEASE_SECONDS", "39")
    with pytest.raises(errors.ConfigurationError, match="TRACKER_LEASE_SECONDS"):
        make_settings()
    monkeypatch.setenv("TRACKER_LEASE_SECONDS", "40")
    assert make_settings().lease_seconds == 40

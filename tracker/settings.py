"""Settings: every ``TRACKER_*`` variable, validated once at start.

Settings are loaded explicitly (``Settings.load()``) and passed around; nothing
reads the environment at import time. A bad value raises ``ConfigurationError``
naming the variable; secret values never appear in that message.
"""

# Over 400 lines, on purpose: every setting and its check in one place, so one
# module answers "what can be configured, and what does it accept".

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import itertools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tracker.domain import durations
from tracker.errors import ConfigurationError

# Alphanumeric Sender IDs are at most 11 characters (the column holds 16).
SENDER_NAME = re.compile(r"[A-Za-z0-9 ._&-]{1,11}")
ENV_PREFIX = "TRACKER_"
SECRET_FIELDS = (
    "database_url", "kimisms_client_secret", "callback_secrets", "session_secret", "pseudonym_key",
)  # fmt: skip
# Webhooks (#15): seconds before each attempt of one delivery, about 3 days in all.
WEBHOOK_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MIN_PSEUDONYM_KEY_CHARS = 32  # 192 bits of a random string, at least
DEVELOPMENT_PSEUDONYM_KEY = b"development-only-pseudonym-key"
WEBHOOK_RETRY_DELAY_MAX_SECONDS = 30 * 86_400  # keeps due times far from datetime's range


@dataclass(frozen=True)
class CallbackKey:
    """One key that signs (the first) or verifies callback URLs."""

    key_id: str
    secret: bytes


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and any address in 127.0.0.0/8 or ::1."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https_unless_loopback(url: str, what: str = "the URL") -> str:
    """Refuse plain http except to loopback (the sandbox and tests)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{what} must use https (plain http is allowed only on loopback)")
    return url.rstrip("/")


def async_database_url(url: str) -> str:
    """Accept plain ``sqlite://`` / ``postgresql://`` URLs and pick the async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a database URL (expected sqlite:///PATH or postgresql://...)")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        if rest.split("?", 1)[0] in {"", "/", "/:memory:"}:
            # Every connection would see its own, empty database (and nothing is kept).
            raise ValueError("an SQLite database needs a file: sqlite:///PATH")
        return f"sqlite+aiosqlite://{rest}"
    if base in {"postgresql", "postgres"}:
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite:// or postgresql://")


@functools.lru_cache(maxsize=16)  # parsed once per process, not per callback
def parse_callback_keys(raw: str) -> tuple[CallbackKey, ...]:
    """``key_id:secret`` items, or bare secrets whose key id is derived from them."""
    keys: list[CallbackKey] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, secret = item.partition(":")
        if not sep:
            secret = item
            key_id = hashlib.sha256(item.encode()).hexdigest()[:8]
        if not key_id.isalnum() or len(key_id) > 16:  # noqa: PLR2004 - the id rides in URLs
            raise ValueError("each key id must be 1-16 letters or digits")
        if len(secret) < 16:  # noqa: PLR2004 - 128 bits of a random string, at least
            raise ValueError("each callback secret must be at least 16 characters")
        keys.append(CallbackKey(key_id=key_id, secret=secret.encode()))
    if len({k.key_id for k in keys}) != len(keys):
        raise ValueError("key ids must be unique")
    return tuple(keys)


def parse_retry_schedule(value: Any) -> tuple[int, ...]:
    """Comma-separated whole seconds (or ints): at least one, none negative, non-decreasing."""
    if isinstance(value, str):
        value = _whole_seconds(value)
    delays = tuple(value) if isinstance(value, list | tuple) else ()
    if not delays or not all(type(delay) is int for delay in delays):  # no bools, no floats
        raise ValueError("needs at least one delay in whole seconds, e.g. 0,5,300")
    if not all(0 <= delay <= WEBHOOK_RETRY_DELAY_MAX_SECONDS for delay in delays):
        raise ValueError(f"each delay must be 0 to {WEBHOOK_RETRY_DELAY_MAX_SECONDS} seconds")
    if any(later < earlier for earlier, later in itertools.pairwise(delays)):
        raise ValueError("the delays must not decrease")
    return delays


def _whole_seconds(raw: str) -> tuple[int, ...]:
    items = [item.strip() for item in raw.split(",")]
    if items == [""]:
        return ()
    if not all(re.fullmatch(r"[0-9]+", item) for item in items):
        raise ValueError("must be whole seconds separated by commas, e.g. 0,5,300")
    # A long run of digits is past the maximum anyway, and int() refuses over 4300 of them.
    digits = [item.lstrip("0") or "0" for item in items]
    too_long = WEBHOOK_RETRY_DELAY_MAX_SECONDS + 1
    return tuple(int(item) if len(item) <= 12 else too_long for item in digits)  # noqa: PLR2004


def default_data_dir() -> Path:
    """Where the data lives without TRACKER_DATA_DIR, whatever the working directory.

    In a checkout's ``.venv`` it is ``var/`` beside that ``.venv`` (``scripts/run``'s
    database); any other install uses the per-user data directory.
    """
    prefix = Path(sys.prefix)
    if sys.prefix != sys.base_prefix and prefix.name == ".venv":
        return prefix.parent / "var"
    user_data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(user_data) / "kimisms-tracker"


class Settings(BaseSettings):
    """The service's configuration. Field ``x`` is read from ``TRACKER_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = Field(default="", repr=False)  # may hold a password
    kimisms_base_url: str = "https://app.kimisms.com"
    kimisms_client_id: str = ""
    kimisms_client_secret: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    callback_secrets: SecretStr = SecretStr("")
    # Signs the dashboard's session cookies; empty: one generated once into data_dir.
    session_secret: SecretStr = SecretStr("")
    # Keys the hashes that stand in for phone numbers (opt-outs, pseudonymised rows).
    pseudonym_key: SecretStr = SecretStr("")
    sender_names: Annotated[tuple[str, ...], NoDecode] = ("KIMISMS",)
    rate_limit_per_minute: int = Field(default=60, ge=1, le=100_000)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_size: int = Field(default=10_000, ge=1)
    max_segments: int = Field(default=10, ge=1, le=255)
    max_metadata_bytes: int = Field(default=4096, ge=2)
    default_validity_seconds: int | None = Field(default=None, ge=1)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)

    max_attempts: int = Field(default=12, ge=1)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    lease_seconds: int = Field(default=60, ge=5)
    # The provider caches Idempotency-Keys for 24 h; a retry after that could
    # send the message twice, so retries stop well before.
    give_up_after_seconds: int = Field(default=23 * 3600, ge=60, le=23 * 3600)
    provider_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    provider_read_timeout_seconds: float = Field(default=15.0, gt=0)
    rate_limit_pause_seconds: float = Field(default=60.0, gt=0)
    # The dispatcher's slow poll beside its wake-ups (None: its FALLBACK_POLL_SECONDS).
    dispatch_fallback_poll_seconds: float | None = Field(default=None, gt=0)

    dlr_overdue_seconds: int = Field(default=86_400, ge=60)
    # Connect, pool wait and statement time of the app's database work (the API,
    # the in-process dispatcher): an outage answers 503 after this, not a hang.
    database_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    callback_db_deadline_seconds: float = Field(default=1.5, gt=0, lt=5)
    callback_max_body_bytes: int = Field(default=16 * 1024, ge=256)
    # Receipts (and events) stored per message from its callback URL; past it only a
    # report that moves the status is stored, so a final report is never lost.
    callback_reports_per_message: int = Field(default=50, ge=1, le=100_000)
    # Webhooks (#15): see tracker.webhooks.schedule and tracker.webhooks.deliverer.
    webhook_retry_schedule: Annotated[tuple[int, ...], NoDecode] = WEBHOOK_RETRY_SCHEDULE
    webhook_disable_after: int = Field(default=5 * 86_400, ge=60)  # in seconds
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # After rotate-secret the old secret signs too for this long (receivers switch over).
    webhook_secret_grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # Deliveries in flight at once per process, and to any one endpoint.
    webhook_concurrency: int = Field(default=64, ge=1, le=1000)
    webhook_endpoint_concurrency: int = Field(default=4, ge=1, le=100)
    # Networks webhooks may reach although private or loopback (e.g. 127.0.0.1/32 in dev).
    # Privacy (#17): how long after a message became final its body is kept, its number
    # is readable (then a keyed hash), and the message is kept at all (None: for ever).
    # Each client may override them; see tracker.privacy.retention.
    retention_body: Annotated[dt.timedelta | None, NoDecode] = dt.timedelta(days=7)
    retention_contact: Annotated[dt.timedelta | None, NoDecode] = dt.timedelta(days=90)
    retention_message: Annotated[dt.timedelta | None, NoDecode] = None
    retention_interval: Annotated[dt.timedelta, NoDecode] = dt.timedelta(hours=1)
    webhook_allowed_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()

    @model_validator(mode="before")
    @classmethod
    def read_secret_files(cls, data: Any) -> Any:
        """``TRACKER_X_FILE`` names a file holding the value of secret ``TRACKER_X``."""
        if not isinstance(data, dict):
            return data
        for field in SECRET_FIELDS:
            path = os.environ.get(f"{ENV_PREFIX}{field.upper()}_FILE")
            if path and not data.get(field):
                try:
                    data[field] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(
                        f"cannot read {ENV_PREFIX}{field.upper()}_FILE: {exc.strerror}"
                    ) from exc
        return data

    @field_validator("retention_body", "retention_contact", "retention_message", mode="before")
    @classmethod
    def parse_period(cls, value: Any) -> Any:
        """``7d``, ``24h``, ``15m``, ``90s``, plain seconds, or ``keep`` (for ever)."""
        return durations.parse_period(value) if isinstance(value, str) else value

    @field_validator("retention_interval", mode="before")
    @classmethod
    def parse_interval(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        interval = durations.parse(value)
        if interval < dt.timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return interval

    @field_validator("sender_names", mode="before")
    @classmethod
    def split_sender_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(name.strip() for name in value.split(",") if name.strip())
        if not value:
            raise ValueError("at least one sender name is required")
        for name in value:
            if not isinstance(name, str) or not SENDER_NAME.fullmatch(name):
                raise ValueError(
                    f"sender name {name!r} is not 1-11 letters, digits, spaces or . _ & -"
                    " (an alphanumeric Sender ID)"
                )
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def check_retry_schedule(cls, value: Any) -> tuple[int, ...]:
        return parse_retry_schedule(value)

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(item.strip() for item in value.split(",") if item.strip())
        networks = []
        for item in value:
            try:
                networks.append(ipaddress.ip_network(item))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not a network in CIDR form (e.g. 127.0.0.1/32, "
                    "with no host bits set)"
                ) from None
        return tuple(networks)

    @field_validator("database_url")
    @classmethod
    def check_database_url(cls, value: str) -> str:
        if value:
            async_database_url(value)
        return value

    @field_validator("kimisms_base_url")
    @classmethod
    def check_provider_url(cls, value: str) -> str:
        return require_https_unless_loopback(value)

    @field_validator("public_url")
    @classmethod
    def check_public_url(cls, value: str) -> str:
        return require_https_unless_loopback(value)

    @field_validator("callback_secrets")
    @classmethod
    def check_callback_secrets(cls, value: SecretStr) -> SecretStr:
        parse_callback_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def require_secrets_off_loopback(self) -> Settings:
        """A public deployment must sign callback URLs with a key that survives restarts."""
        if not self.callback_secrets.get_secret_value() and not is_loopback_host(
            urlsplit(self.public_url).hostname
        ):
            raise ValueError(
                f"{ENV_PREFIX}CALLBACK_SECRETS is required "
                f"when {ENV_PREFIX}PUBLIC_URL is not loopback"
            )
        return self

    @field_validator("pseudonym_key")
    @classmethod
    def check_pseudonym_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < MIN_PSEUDONYM_KEY_CHARS:
            raise ValueError(f"must be at least {MIN_PSEUDONYM_KEY_CHARS} characters")
        return value

    @model_validator(mode="after")
    def require_pseudonym_key_off_loopback(self) -> Settings:
        """Every process of a deployment must hash numbers with one key that stays secret."""
        if not self.pseudonym_key.get_secret_value() and not is_loopback_host(
            urlsplit(self.public_url).hostname
        ):
            raise ValueError(
                f"{ENV_PREFIX}PSEUDONYM_KEY is required when {ENV_PREFIX}PUBLIC_URL is not loopback"
            )
        return self

    @model_validator(mode="after")
    def require_lease_longer_than_a_send(self) -> Settings:
        """A lease that ran out mid-send would let a failover dispatcher send the same
        message alongside it: it must outlast a send and its retry after a token refresh."""
        one_call = self.provider_connect_timeout_seconds + self.provider_read_timeout_seconds
        if self.lease_seconds < 2 * one_call:
            raise ValueError(
                f"{ENV_PREFIX}LEASE_SECONDS ({self.lease_seconds}) must be at least twice "
                f"{ENV_PREFIX}PROVIDER_CONNECT_TIMEOUT_SECONDS + "
                f"{ENV_PREFIX}PROVIDER_READ_TIMEOUT_SECONDS ({2 * one_call:g})"
            )
        return self

    def require_provider_credentials(self) -> None:
        """Checked at start by the commands that send, so a missing credential is
        reported then, not at the first message."""
        missing = [
            f"{ENV_PREFIX}{name.upper()}"
            for name, value in (
                ("kimisms_client_id", self.kimisms_client_id),
                ("kimisms_client_secret", self.kimisms_client_secret.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"invalid configuration: {' and '.join(missing)} required to send"
                " (or run `serve --no-dispatcher`, or `serve --sandbox` for a trial)"
            )

    @property
    def async_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.data_dir / 'tracker.db'}"
        return async_database_url(url)

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")

    @property
    def spool_path(self) -> Path:
        return self.data_dir / "callback-spool.jsonl"

    @property
    def default_sender(self) -> str:
        return self.sender_names[0]

    def callback_keys(self) -> tuple[CallbackKey, ...]:
        """The configured keys; on loopback without any, a fixed development key."""
        keys = parse_callback_keys(self.callback_secrets.get_secret_value())
        return keys or (CallbackKey(key_id="dev", secret=b"development-only-callback-key"),)

    def pseudonym_key_bytes(self) -> bytes:
        """The configured key; on loopback without one, a fixed development key."""
        return self.pseudonym_key.get_secret_value().encode() or DEVELOPMENT_PSEUDONYM_KEY

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment and validate; a bad value raises ConfigurationError."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigurationError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """One line per bad variable, without echoing values (they may be secrets)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(message if not field else f"{name}: {message}")
    return "invalid configuration: " + "; ".join(lines)

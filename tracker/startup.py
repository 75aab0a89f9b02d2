"""What ``tracker serve`` checks and prepares before it binds: one line per refusal."""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

import typer
from pydantic import SecretStr
from sqlalchemy.engine import url as sa_url

import tracker
from tracker import errors
from tracker.settings import Settings, is_loopback_host


def say_where_and_check_ports(
    settings: Settings, host: str, port: int, *, bind: bool, sandbox_port: int | None
) -> None:
    """Say where the database is, then stop with one line if a port to bind is taken."""
    where = database_location(settings)
    # On stdout, with the logs: stderr stays one line when the start is refused.
    typer.echo(f"tracker {tracker.__version__} on {host}:{port}, database {where}")
    if bind:
        require_free_port(host, port, "--port")
    if sandbox_port is not None:
        require_free_port("127.0.0.1", sandbox_port, "--sandbox-port")


def database_location(settings: Settings) -> str:
    """The SQLite file as an absolute path, or the URL without its password."""
    url = sa_url.make_url(settings.async_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return str(Path(url.database).resolve())
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def require_free_port(host: str, port: int, option: str) -> None:
    """A busy port is one line naming it, before any migration or thread starts."""
    try:
        socket.create_server((host, port), family=_family(host)).close()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # anything else (a bad address...) is left to the server's own message
        raise errors.ConfigurationError(
            f"port {port} on {host} is already in use (another tracker serve?): "
            f"stop it or choose another with {option}"
        ) from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def require_callback_secrets_off_loopback(settings: Settings, host: str) -> None:
    """The development key is public: URLs it signs can be forged by anyone who can reach us."""
    if not settings.callback_secrets.get_secret_value() and not is_loopback_host(host):
        raise errors.ConfigurationError(
            f"TRACKER_CALLBACK_SECRETS is not set, so callback URLs would be signed with the "
            f"public development key: set it to listen on {host} (or listen on loopback)"
        )


def with_sandbox(
    settings: Settings, stack: contextlib.ExitStack, host: str, port: int, sandbox_port: int
) -> Settings:
    """Start the sandbox in a thread and point the settings at it (loopback only)."""
    from tracker.sandbox import SandboxConfig, running_sandbox

    client_id = settings.kimisms_client_id or "sandbox-client"
    secret = settings.kimisms_client_secret.get_secret_value() or "sandbox-secret"
    config = SandboxConfig(
        client_id=client_id,
        client_secret=secret,
        sender_names=settings.sender_names,
        rate_limit_per_minute=settings.rate_limit_per_minute,  # so /v1/stats counts true 429s
    )
    sandbox_url = stack.enter_context(running_sandbox(config, port=sandbox_port))
    public_host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host  # noqa: S104
    typer.echo(
        f"sandbox provider at {sandbox_url} (magic numbers: {sandbox_url}/sandbox/magic-numbers)",
        err=True,
    )
    return settings.model_copy(
        update={
            "kimisms_base_url": sandbox_url,
            "kimisms_client_id": client_id,
            "kimisms_client_secret": SecretStr(secret),
            "public_url": f"http://{public_host}:{port}",
        }
    )
